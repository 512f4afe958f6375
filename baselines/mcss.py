"""MCSS (Yang et al. 2024): SpecInfer's token tree with children drawn WITHOUT replacement, and
the proposal updated after each rejection (spec 5). Lossless. A node whose draft distribution
supports fewer tokens than k gets as many children as it supports."""

from __future__ import annotations

from dataclasses import dataclass

from baselines.specinfer import SpecInfer
from mtad.decoding import register


@register
@dataclass
class MCSS(SpecInfer):
    name = "mcss"
    replacement = False
