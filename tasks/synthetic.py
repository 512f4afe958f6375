"""Random token-id prompts: runs on any pair, tokenizer or not; measures speed only."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mtad.errors import UserError
from mtad.runners.pair import PairInfo
from tasks.base import Example, Task


@dataclass
class Synthetic(Task):
    name = "synthetic"
    version = 1
    limit: int = 5
    prompt_length: int = 8
    seed: int = 0
    metric = None  # speed only: no quality measure

    def __post_init__(self):
        if self.limit < 1 or self.prompt_length < 1:
            raise UserError(f"synthetic: limit and prompt_length must be >= 1, got {self.limit}, {self.prompt_length}")

    def examples(self, pair: PairInfo) -> list[Example]:
        gen = torch.Generator().manual_seed(self.seed)
        prompts = torch.randint(0, pair.vocab_size, (self.limit, self.prompt_length), generator=gen)
        return [Example(f"synthetic/{i}", row.tolist()) for i, row in enumerate(prompts)]
