"""Baseline decoders; importing the package registers them."""

from baselines import ar, bild, mcss, mtjd, spd, specinfer, spectr, typical  # noqa: F401
