"""Runners: models and their KV caches, the only code that calls a model.

``base`` (the ``Runner`` contract), ``eager`` and ``static`` (the backends), ``pair`` (target +
draft), ``load`` (a ``PairConfig`` into a ``Pair``), ``prepare`` (the embedded pair from GGUF
parts), ``cache``, ``quant``, ``matmul`` (what the backends share), ``toy_models`` (test pairs).
"""
