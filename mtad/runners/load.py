"""A model pair's config (``conf/pair/<name>.yaml``) and loading it into a ``Pair``.

A pair config names target and draft sources (``mtad.runners.hf``), dtype, device, attention
implementation, prompt style, stop tokens, quantizations and the backend that runs both models
(``mtad/runners/catalogue.py``); the backend loads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch

from mtad.errors import UserError, refuse_unknown
from mtad.paths import CONF_DIR
from mtad.ranges import FLAG, SEED, Int, OneOf, check_ranges, ranged
from mtad.runners.catalogue import BACKENDS
from mtad.runners.catalogue import backend as backend_named
from mtad.runners.pair import Pair
from mtad.runners.quant import QUANTS, check_quant

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_NAMES = ("auto", *DTYPES)  # auto: bfloat16 (CPU and GPU)


@dataclass
class PairConfig:
    name: str
    target: str
    draft: str
    dtype: str = ranged("auto", OneOf(DTYPE_NAMES))
    device: str = "auto"         # auto: cuda when available, else cpu
    attn_implementation: str = "sdpa"
    chat_template: bool = ranged(False, FLAG)  # whether prompts go through the tokenizer's chat template
    stop_tokens: list[str] = field(default_factory=list)  # besides the eos ids the model configs name
    # restrict the draft's output head to ids < N (see TransformersRunner)
    draft_head_rows: int | None = ranged(None, Int(min=1, none="the whole head"))
    # weight-only int8 linear layers (mtad/runners/quant.py)
    target_quant: str = ranged("none", OneOf(QUANTS))
    draft_quant: str = ranged("none", OneOf(QUANTS))
    # a name in mtad/runners/catalogue.py: eager (DynamicCache) | static (own KV buffers) |
    # llamacpp (the GGUF files, run by llama.cpp)
    backend: str = ranged("eager", OneOf(BACKENDS))
    # positions the static and llamacpp backends' KV caches hold (prompt, output and drafts)
    max_length: int = ranged(2048, Int(min=1))
    # llama.cpp's threads (pair.backend=llamacpp only)
    threads: int | None = ranged(None, Int(min=1, none="the machine's cores"))
    seed: int = ranged(0, SEED)  # weights seed of the tiny pair

    def __post_init__(self):  # before any model loads
        check_ranges(self, "pair")
        for role in ("target", "draft"):  # a quantization runs on the CPU only
            check_quant(f"pair.{role}_quant", getattr(self, f"{role}_quant"), self.resolved_device())
        backend_named(self.backend).check(self)

    @property
    def label(self) -> str:
        """The pair's name in records and tables: its config name plus any quantized model and a
        backend other than eager, since a quantized target is another model, and a quantized draft
        or another backend another speed."""
        quantized = [f"{role}-{getattr(self, f'{role}_quant')}" for role in ("target", "draft")
                     if getattr(self, f"{role}_quant") != "none"]
        backend = [self.backend] if self.backend != "eager" else []
        return "+".join([self.name, *quantized, *backend])

    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def resolved_dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.dtype == "auto" else DTYPES[self.dtype]


def pair_config(name: str, **overrides) -> PairConfig:
    """The pair config ``conf/pair/<name>.yaml`` with field overrides."""
    from omegaconf import OmegaConf

    path = CONF_DIR / "pair" / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (CONF_DIR / "pair").glob("*.yaml"))
        raise UserError(f"unknown model pair {name!r} (known: {', '.join(known)})")
    return pair_config_from({**OmegaConf.to_container(OmegaConf.load(path)), **overrides})


def pair_config_from(values: dict) -> PairConfig:
    """A ``PairConfig`` from a pair config's values; a key it has no field for is refused."""
    refuse_unknown("pair", values, [f.name for f in fields(PairConfig)])
    return PairConfig(**values)


def load_pair(pair: str | PairConfig = "tiny", **overrides) -> Pair:
    """Load a model pair by config name (or from a ``PairConfig``) into a ``Pair``, through its backend."""
    cfg = pair if isinstance(pair, PairConfig) else pair_config(pair, **overrides)
    return backend_named(cfg.backend).load(cfg)
