"""Decoding: the generation loop and the parts decoders are made of.

``base`` (``Decoder``, ``Block``, ``Context``, ``generate``), ``sampling`` (the processed
distribution and draws from it), ``chain`` and ``tree`` (drafting and verifying), ``mtad`` (the
paper's decoder; the baselines live in ``baselines/``). Names -> decoders: ``mtad/catalogue.py``.
"""
