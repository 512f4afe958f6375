"""Baseline decoders; importing the package registers them."""

from baselines import ar, spd  # noqa: F401
