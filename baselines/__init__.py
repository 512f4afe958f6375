"""Baseline decoders. ``mtad/catalogue.py`` lists them by name."""
