"""MCSS (Yang et al. 2024): SpecInfer's token tree with children drawn WITHOUT replacement, and
the proposal updated after each rejection (docs/decoders.md#mcss-candidates-without-replacement).
Lossless. A node whose draft distribution supports fewer tokens than k gets as many children as
it supports."""

from __future__ import annotations

from dataclasses import dataclass

from baselines.specinfer import SpecInfer


@dataclass
class MCSS(SpecInfer):
    name = "mcss"
    version = 1
    replacement = False
