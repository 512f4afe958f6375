"""MCSS (Yang et al. 2024): SpecInfer's token tree with children drawn WITHOUT replacement, and
the proposal updated after each rejection (docs/decoders.md#mcss-candidates-without-replacement).
Lossless. A node whose draft distribution supports fewer tokens than k still gets k children (the
tree's shape is fixed, so a round need not read the device): the draws beyond the support have
q = 0 and are never accepted nor counted in the updates."""

from __future__ import annotations

from dataclasses import dataclass

from baselines.specinfer import SpecInfer


@dataclass
class MCSS(SpecInfer):
    name = "mcss"
    version = 2  # 2: fixed tree shape pruned to its alive nodes, the round on the device (issue 35)
    replacement = False
