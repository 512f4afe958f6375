"""LLM judges: text in, text out. Two kinds, chosen by the ``judge`` config:
- ``openai``: any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, SGLang, llama.cpp
  servers); the key comes from an environment variable;
- ``local``: a transformers chat model, greedy.

What a judge is asked, and how its replies become ratings, is ``mtad/judging/fastchat.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path


from mtad.errors import UserError, refuse_unknown
from mtad.ranges import Int, OneOf, Real, check_ranges, ranged
from mtad.runners.load import DTYPE_NAMES


class JudgeUnavailable(UserError):
    """The judge cannot be reached or refuses to answer."""


class Judge(ABC):
    name: str
    batch_size: int = 1  # grading prompts handed to ``complete_many`` at once
    deterministic: bool = False  # same prompt, same reply: asking again for a missing rating cannot help

    def __post_init__(self):
        # each setting's range is stated beside its default (mtad/ranges.py), checked before a
        # judge model loads or an endpoint is asked; a sub-class with work of its own calls this first
        check_ranges(self, "judge")

    @abstractmethod
    def complete(self, system: str, user: str) -> str:
        """The judge's reply to one grading prompt."""

    def complete_many(self, requests: list[tuple[str, str]]) -> list[str]:
        """Replies to several (system, user) grading prompts."""
        return [self.complete(system, user) for system, user in requests]

    def prompt_length(self, system: str, user: str) -> int:
        """What batches are sorted by, so that a batch holds prompts of like length: characters
        here; a local model counts its tokens, the unit its padding is paid in."""
        return len(system) + len(user)


@dataclass
class OpenAIJudge(Judge):
    """POST {base_url}/chat/completions, temperature 0 (FastChat's settings)."""

    model: str
    base_url: str = "https://api.openai.com/v1"
    api_key_env: str = "OPENAI_API_KEY"
    max_tokens: int = ranged(2048, Int(min=1))
    timeout: float = ranged(120.0, Real(above=0, note="seconds per request"))

    @property
    def name(self) -> str:
        return self.model

    def complete(self, system: str, user: str) -> str:
        body = {"model": self.model, "temperature": 0, "max_tokens": self.max_tokens,
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]}
        request = urllib.request.Request(f"{self.base_url.rstrip('/')}/chat/completions", method="POST",
                                         data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        key = os.environ.get(self.api_key_env)
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                reply = json.loads(response.read())
        except urllib.error.HTTPError as err:
            raise JudgeUnavailable(f"judge endpoint {self.base_url} answered HTTP {err.code}: "
                                   f"{err.read()[:200].decode(errors='replace')}") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise JudgeUnavailable(f"judge endpoint {self.base_url} is unreachable: {reason}") from None
        try:
            return reply["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise JudgeUnavailable(f"judge endpoint {self.base_url} sent no chat completion: {str(reply)[:200]}") from None


@dataclass
class LocalJudge(Judge):
    """A transformers chat model on this machine, greedy decoding, ``batch_size`` prompts at a
    time (left-padded). Why 16: a one-token step of the 1.5B judge in bf16 on the 2-core EPYC
    (after 100 prompt tokens, median of 7) took 1.09 s for 8 rows, 1.00 s for 16, 1.45 s for 32:
    its narrow float32 products run at about the same time up to 16 rows (``mtad/runners/matmul.py``),
    and a larger batch waits longer for its longest reply. Padding can flip a near-tie of a
    greedy step, so a batch's replies may differ in rare tokens from one-by-one ones."""

    model: str
    dtype: str = ranged("auto", OneOf(DTYPE_NAMES))
    device: str = "auto"
    max_new_tokens: int = ranged(1024, Int(min=1))
    batch_size: int = ranged(16, Int(min=1, note="prompts per generate"))
    # stop a reply whose last this-many tokens it already wrote twice
    loop_window: int = ranged(16, Int(min=0, note="0: never"))
    deterministic = True  # greedy: a retry repeats the reply (a 1024-token one costs minutes on a CPU)

    def __post_init__(self):
        super().__post_init__()
        from mtad.runners.hf import load_causal_lm, load_tokenizer
        from mtad.runners.load import PairConfig
        from mtad.runners.prepare import resolve_source

        source = resolve_source(self.model)
        spec = PairConfig(name="judge", target=source, draft=source, dtype=self.dtype, device=self.device)
        self.tokenizer = load_tokenizer(source)
        self._model = load_causal_lm(source, spec.resolved_dtype(), "sdpa").to(spec.resolved_device())

    @property
    def name(self) -> str:
        return Path(self.model).name

    def complete(self, system: str, user: str) -> str:
        return self.complete_many([(system, user)])[0]

    def _chat_ids(self, system: str, user: str) -> list[int]:
        return list(self.tokenizer.apply_chat_template([{"role": "system", "content": system},
                                                        {"role": "user", "content": user}],
                                                       add_generation_prompt=True, tokenize=True, return_dict=False))

    def prompt_length(self, system: str, user: str) -> int:
        # A batch's prompts are all padded to its longest: sorted by characters, tokens per
        # character vary enough (code, math) that a third of a batch's prefill was padding.
        return len(self._chat_ids(system, user))

    def complete_many(self, requests: list[tuple[str, str]]) -> list[str]:
        return [self.tokenizer.decode(reply, skip_special_tokens=True) for reply in self.reply_ids(requests)]

    def reply_ids(self, requests: list[tuple[str, str]]) -> list[list[int]]:
        """The greedy reply tokens to several (system, user) prompts, generated as one batch."""
        import torch

        prompts = [self._chat_ids(system, user) for system, user in requests]
        width = max(map(len, prompts))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts], device=self._model.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self._model.device)
        loops = LoopStop(start=width, window=self.loop_window) if self.loop_window else None
        from mtad.runners.matmul import wide_matmuls

        with torch.inference_mode(), wide_matmuls(self._model.dtype, self._model.device):
            out = self._model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=self.max_new_tokens,
                                       pad_token_id=pad, stopping_criteria=[loops] if loops else [])
        # a row that stopped early stays in the batch until all stop: padded when the model has an
        # EOS (decode drops pads), generating on when it has none, so each row is cut where it stopped
        ends = loops.ends if loops else [None] * len(prompts)
        return [row[:end] for row, end in zip(out[:, width:].tolist(), ends)]


class LoopStop:
    """A ``generate`` stopping criterion: a row stops once the last ``window`` tokens of its
    reply occur there for the ``repeats``-th time.

    Why: a weak greedy judge falls into loops (the 1.5B local judge wrote the same sentences
    until ``max_new_tokens`` in 4 of its first 16 MT-Bench judgments, none of which ever gave a
    rating), and a batch lasts as long as its longest reply, so one loop held 7 finished replies
    for 1024 steps. A greedy model that has written the same 16 tokens three times is in a
    cycle it does not leave; the text so far is kept and parsed as usual. Over those 16
    judgments the rule fires only on the 4 loops (after 170-320 tokens), never on a rated one.
    """

    def __init__(self, start: int, window: int, repeats: int = 3):
        self.start, self.window, self.repeats = start, window, repeats
        self._counts: list[dict[tuple, int]] = []
        self.ends: list[int | None] = []  # per row, the reply's length when it stopped
        self._seen = 0  # reply windows counted so far end before this position

    def __call__(self, input_ids, scores=None, **kwargs):
        import torch

        replies = input_ids[:, self.start:].tolist()
        if not self._counts:
            self._counts, self.ends = [{} for _ in replies], [None] * len(replies)
        for row, tokens in enumerate(replies):
            for end in range(max(self._seen, self.window), len(tokens) + 1):
                window = tuple(tokens[end - self.window:end])
                self._counts[row][window] = self._counts[row].get(window, 0) + 1
                if self._counts[row][window] >= self.repeats and self.ends[row] is None:
                    self.ends[row] = end
        self._seen = len(replies[0]) + 1
        return torch.tensor([end is not None for end in self.ends], dtype=torch.bool, device=input_ids.device)


# judge config name -> class (``judge: none`` is no judge)
JUDGES: dict[str, type[Judge]] = {"openai": OpenAIJudge, "local": LocalJudge}


def build_judge(config: dict | None) -> Judge | None:
    """The judge of a ``judge`` config (``name: none`` gives None)."""
    config = dict(config or {"name": "none"})
    kind = config.pop("name")
    if kind != "none" and kind not in JUDGES:
        raise UserError(f"unknown judge {kind!r} (known: none, {', '.join(JUDGES)})")
    refuse_unknown(f"judge {kind!r}", config, [f.name for f in dataclasses.fields(JUDGES[kind])] if kind in JUDGES else [])
    if kind == "none":
        return None
    if not config.get("model"):
        raise UserError(f"judge={kind} needs judge.model")
    return JUDGES[kind](**config)
