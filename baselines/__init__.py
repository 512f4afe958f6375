"""Baseline decoders; importing the package registers them."""

from baselines import ar, mcss, spd, specinfer, spectr  # noqa: F401
