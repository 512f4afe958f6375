"""Loading a target/draft model pair into a ``Pair``.

A pair is described by a config (``conf/pair/<name>.yaml``): target and draft sources, dtype,
device, attention implementation, prompt style and stop tokens. A source is a Hugging Face hub
id or local folder, ``prepared:<name>`` for an embedded model built by ``mtad.runners.prepare``, or
``tiny-llama/target`` / ``tiny-llama/draft`` for the in-process random test pair.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

import torch

from mtad.errors import UserError, refuse_unknown
from mtad.paths import CONF_DIR
from mtad.runners.eager import HFRunner
from mtad.runners.pair import Pair
from mtad.runners.quant import check_quant, quantize

TINY_PREFIX = "tiny-llama/"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
BACKENDS = ("eager", "static")


@dataclass
class PairConfig:
    name: str
    target: str
    draft: str
    dtype: str = "auto"          # auto: bfloat16 (CPU and GPU); or float32 / bfloat16 / float16
    device: str = "auto"         # auto: cuda when available, else cpu
    attn_implementation: str = "sdpa"
    chat_template: bool = False  # whether prompts go through the tokenizer's chat template
    stop_tokens: list[str] = field(default_factory=list)  # besides the eos ids the model configs name
    draft_head_rows: int | None = None  # restrict the draft's output head to ids < N (see HFRunner)
    target_quant: str = "none"   # none | int8: weight-only int8 linear layers (mtad/runners/quant.py)
    draft_quant: str = "none"
    backend: str = "eager"       # eager: transformers' DynamicCache | static: own KV buffers, compiled (mtad/runners/static.py)
    max_length: int = 2048       # positions the static backend's KV buffers hold (prompt, output and drafts)
    seed: int = 0                # weights seed of the tiny pair

    def __post_init__(self):  # before any model loads
        for role in ("target", "draft"):
            check_quant(f"pair.{role}_quant", getattr(self, f"{role}_quant"), self.resolved_device())
        if self.backend not in BACKENDS:
            raise UserError(f"pair.backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.max_length < 1:
            raise UserError(f"pair.max_length must be >= 1, got {self.max_length}")

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
        if self.dtype == "auto":
            return torch.bfloat16
        if self.dtype not in DTYPES:
            raise UserError(f"unknown dtype {self.dtype!r} (known: auto, {', '.join(DTYPES)})")
        return DTYPES[self.dtype]


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
    """Load a model pair by config name (or from a ``PairConfig``) into a ``Pair``."""
    cfg = pair if isinstance(pair, PairConfig) else pair_config(pair, **overrides)
    device, dtype = cfg.resolved_device(), cfg.resolved_dtype()
    if cfg.target.startswith(TINY_PREFIX) and cfg.draft.startswith(TINY_PREFIX):
        from mtad.runners.toy_models import tiny_llama_pair, tiny_tokenizer

        target, draft = tiny_llama_pair(cfg.seed, attn_implementation=cfg.attn_implementation)
        tokenizer = tiny_tokenizer()
    else:
        from mtad.runners.prepare import resolve_source

        target_src, draft_src = resolve_source(cfg.target), resolve_source(cfg.draft)
        tokenizer = load_tokenizer(target_src)
        _check_same_tokenizer(tokenizer, load_tokenizer(draft_src), cfg)
        target, draft = (load_causal_lm(src, dtype, cfg.attn_implementation) for src in (target_src, draft_src))
    target, draft = (m.to(device=device, dtype=dtype) for m in (target, draft))
    target, draft = quantize(target, cfg.target_quant), quantize(draft, cfg.draft_quant)
    return Pair(make_runner(target, cfg), make_runner(draft, cfg, head_rows=cfg.draft_head_rows), name=cfg.label,
                stop_ids=_stop_ids(target, tokenizer, cfg), tokenizer=tokenizer, chat_template=cfg.chat_template)


def make_runner(model, cfg: PairConfig, head_rows: int | None = None) -> HFRunner:
    """The runner of ``cfg.backend`` around a loaded model."""
    if cfg.backend == "static":
        from mtad.runners.static import StaticRunner

        return StaticRunner(model, head_rows=head_rows, max_length=cfg.max_length)
    return HFRunner(model, head_rows=head_rows)


def _token() -> str | None:
    return os.environ.get("HF_TOKEN") or None


def load_causal_lm(source: str, dtype: torch.dtype, attn_implementation: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(source, dtype=dtype, attn_implementation=attn_implementation,
                                                token=_token())


def load_tokenizer(source: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source, token=_token())


def _check_same_tokenizer(target_tok, draft_tok, cfg: PairConfig) -> None:
    if target_tok.get_vocab() != draft_tok.get_vocab():
        raise UserError(f"model pair {cfg.name!r}: target and draft tokenizers differ "
                        f"({len(target_tok)} vs {len(draft_tok)} tokens); draft-and-verify needs one vocabulary")


def _stop_ids(model, tokenizer, cfg: PairConfig) -> tuple[int, ...]:
    """Every end-of-sequence id: the configs' eos ids plus the pair's ``stop_tokens``. Instruct
    models end chat turns and plain completions with different tokens, and generation configs
    often list only one."""
    ids: set[int] = set()
    for source in (model.generation_config, model.config, tokenizer):
        eos = getattr(source, "eos_token_id", None) if source is not None else None
        ids.update([eos] if isinstance(eos, int) else (eos or []))
    for token in cfg.stop_tokens:
        token_id = tokenizer.convert_tokens_to_ids(token) if tokenizer is not None else None
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise UserError(f"model pair {cfg.name!r}: stop token {token!r} is not in the tokenizer")
        ids.add(token_id)
    return tuple(sorted(ids))
