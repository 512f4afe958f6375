"""Runners: models and their KV caches, the only code that calls a model.

``base`` (the ``Runner`` contract and capabilities; docs/backends.md), ``catalogue`` (the backends
by ``pair.backend`` name, with versions), ``eager`` and ``static`` (the two backends' runners),
``hf`` (what the transformers backends share: their runners' base and model loading), ``pair``
(target + draft), ``load`` (a ``PairConfig`` into a ``Pair``, through its backend), ``prepare``
(the embedded pair from GGUF parts), ``cache``, ``quant``, ``matmul`` (what the backends share),
``toy_models`` (test pairs).
"""
