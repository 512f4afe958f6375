"""Random token-id prompts: runs on any pair, tokenizer or not; measures speed only."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mtad.ranges import SEED, Int, ranged
from mtad.runners.pair import PairInfo
from tasks.base import Example, Task


@dataclass
class Synthetic(Task):
    name = "synthetic"
    version = 1
    limit: int = ranged(5, Int(min=1))
    prompt_length: int = ranged(8, Int(min=1, note="tokens"))
    seed: int = ranged(0, SEED)
    metric = None  # speed only: no quality measure

    def examples(self, pair: PairInfo) -> list[Example]:
        gen = torch.Generator().manual_seed(self.seed)
        prompts = torch.randint(0, pair.vocab_size, (self.limit, self.prompt_length), generator=gen)
        return [Example(f"synthetic/{i}", row.tolist()) for i, row in enumerate(prompts)]
