"""A toy backend defined only in the tests (registered by conftest.py): a runner that keeps no KV
cache and runs the whole sequence through the model at every forward. It declares no capability,
so it shows that a backend with only the base contract (one row, causal feeds, crop) runs the
decoders that need nothing more, greedy-identical to the target's own decoding, and that the
others are refused before anything runs (tests/test_backends.py)."""

from __future__ import annotations

import torch

from mtad.runners.base import ForwardCounter, Runner
from mtad.runners.catalogue import Backend
from mtad.runners.hf import load_models
from mtad.runners.pair import Pair


class RecomputeRunner(Runner):
    """The tokens fed so far, and a model run on all of them at each forward (quadratic, exact)."""

    def __init__(self, model, head_rows: int | None = None):
        super().__init__()
        self.model = model.eval()  # for the tests' reference logits; decoders never see it
        self.device = next(model.parameters()).device
        self.vocab_size = model.get_output_embeddings().out_features
        self.head_rows = head_rows
        self.tokens: list[int] = []

    def reset(self) -> None:
        self.tokens = []
        self.counter = ForwardCounter()

    @property
    def length(self) -> int:
        return len(self.tokens)

    def _forward(self, tokens, positions, mask, keep):
        # Runner.feed lets through only one row and no tree mask (no capabilities declared)
        n = tokens.shape[1]
        expected = torch.arange(self.length, self.length + n, device=self.device)
        if not torch.equal(positions[0], expected):
            raise ValueError("a recompute runner numbers positions itself: no explicit positions")
        self.tokens += tokens[0].tolist()
        logits = self.model(torch.tensor([self.tokens], device=self.device)).logits[:, -keep:]
        if self.head_rows is not None:
            logits[..., self.head_rows:] = float("-inf")
        return logits

    def crop(self, length: int) -> None:
        del self.tokens[length:]


class Recompute(Backend):
    name = "recompute"
    version = 1
    runner_class = RecomputeRunner

    @classmethod
    def load(cls, cfg) -> Pair:
        models = load_models(cfg)  # the transformers loading code is shared; the runners are ours
        return Pair(cls.runner(models.target), cls.runner(models.draft, head_rows=cfg.draft_head_rows),
                    name=cfg.label, stop_ids=models.stop_ids, tokenizer=models.tokenizer,
                    chat_template=cfg.chat_template)

    @classmethod
    def runner(cls, model, head_rows: int | None = None, **options) -> Runner:
        return RecomputeRunner(model, head_rows=head_rows, **options)
