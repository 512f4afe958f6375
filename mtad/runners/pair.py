"""A model pair, loaded: the target and draft runners and what they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from mtad.errors import UserError
from mtad.runners.base import Runner, require_capabilities

DRAFT_ROOM = 64  # cache positions a round may feed beyond the committed tokens (drafts, trees)


@dataclass(frozen=True)
class PairInfo:
    """What a task may know of a pair: its name and text side, none of the models or caches."""

    name: str
    tokenizer: Any            # None for the token-level test pairs
    chat_template: bool       # whether text prompts go through the tokenizer's chat template
    vocab_size: int


@dataclass
class Pair:
    """A loaded model pair: target and draft runners, their stop ids and shared tokenizer."""

    target: Runner
    draft: Runner
    name: str = ""
    stop_ids: tuple[int, ...] = field(default_factory=tuple)
    tokenizer: Any = None  # shared by both models; None for the token-level test pairs
    chat_template: bool = False  # whether text prompts go through the tokenizer's chat template

    def __post_init__(self):
        if self.target.vocab_size != self.draft.vocab_size:
            raise UserError(f"draft and target vocabularies differ: target has {self.target.vocab_size} ids, "
                            f"draft has {self.draft.vocab_size}")

    @property
    def device(self) -> torch.device:
        return self.target.device

    @property
    def info(self) -> PairInfo:
        return PairInfo(self.name, self.tokenizer, self.chat_template, self.target.vocab_size)

    @property
    def capabilities(self) -> frozenset[str]:
        """What both runners can do (mtad/runners/base.py)."""
        return self.target.capabilities & self.draft.capabilities

    def require(self, needs, user: str) -> None:
        """One ``UserError`` unless both runners can do all that ``user`` (a decoder) needs."""
        require_capabilities(needs, self.capabilities, user, f"pair {self.name!r}")

    def reset(self) -> None:
        self.target.reset()
        self.draft.reset()

    def check_fits(self, prompt_tokens: int, new_tokens: int) -> None:
        """One ``UserError`` unless a generation of ``new_tokens`` after ``prompt_tokens`` fits the
        caches, with ``DRAFT_ROOM`` positions for drafts and trees fed beyond the output."""
        capacities = [r.capacity for r in (self.target, self.draft) if r.capacity is not None]
        if capacities and prompt_tokens + new_tokens + DRAFT_ROOM > min(capacities):
            raise UserError(f"a prompt of {prompt_tokens} tokens plus {new_tokens} new tokens (and {DRAFT_ROOM} for "
                            f"drafts) exceeds the static KV cache of {min(capacities)} positions: raise "
                            "pair.max_length or lower max_new_tokens")
