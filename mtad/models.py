"""Loading a target/draft model pair into an ``Engine``.

A pair is described by a config (``conf/model/<name>.yaml``): target and draft sources, dtype,
device and attention implementation. A source is a Hugging Face hub id or local folder, or
``tiny-llama/target`` / ``tiny-llama/draft`` for the in-process random test pair.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import torch

from mtad.engine import Engine, HFRunner

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
TINY_PREFIX = "tiny-llama/"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class PairConfig:
    name: str
    target: str
    draft: str
    dtype: str = "auto"          # auto: bfloat16 (CPU and GPU); or float32 / bfloat16 / float16
    device: str = "auto"         # auto: cuda when available, else cpu
    attn_implementation: str = "sdpa"
    chat_template: bool = False  # whether prompts go through the tokenizer's chat template
    seed: int = 0                # weights seed of the tiny pair

    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def resolved_dtype(self) -> torch.dtype:
        if self.dtype == "auto":
            return torch.bfloat16
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r} (known: auto, {', '.join(DTYPES)})")
        return DTYPES[self.dtype]


def pair_config(name: str, **overrides) -> PairConfig:
    """The pair config ``conf/model/<name>.yaml`` with field overrides."""
    from omegaconf import OmegaConf

    path = CONF_DIR / "model" / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
        raise ValueError(f"unknown model pair {name!r} (known: {', '.join(known)})")
    values = {**OmegaConf.to_container(OmegaConf.load(path)), **overrides}
    known_fields = {f.name for f in fields(PairConfig)}
    return PairConfig(**{k: v for k, v in values.items() if k in known_fields})


def load_pair(pair: str | PairConfig = "tiny", **overrides) -> Engine:
    """Load a model pair by config name (or from a ``PairConfig``) into an ``Engine``."""
    cfg = pair if isinstance(pair, PairConfig) else pair_config(pair, **overrides)
    device, dtype = cfg.resolved_device(), cfg.resolved_dtype()
    if cfg.target.startswith(TINY_PREFIX) and cfg.draft.startswith(TINY_PREFIX):
        from mtad.toy_models import tiny_llama_pair

        target, draft = tiny_llama_pair(cfg.seed, attn_implementation=cfg.attn_implementation)
        tokenizer = None
    else:
        target, draft = (_load_hf(src, dtype, cfg.attn_implementation) for src in (cfg.target, cfg.draft))
        tokenizer = _load_tokenizer(cfg.target)
    target, draft = (m.to(device=device, dtype=dtype) for m in (target, draft))
    return Engine(HFRunner(target), HFRunner(draft), name=cfg.name, stop_ids=_stop_ids(target, tokenizer),
                  tokenizer=tokenizer)


def _load_hf(source: str, dtype: torch.dtype, attn_implementation: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(source, dtype=dtype, attn_implementation=attn_implementation)


def _load_tokenizer(source: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source)


def _stop_ids(model, tokenizer) -> tuple[int, ...]:
    """Every end-of-sequence id the model or tokenizer names: instruct models end chat turns and
    plain completions with different tokens, and generation configs often list only one."""
    ids: set[int] = set()
    for source in (model.generation_config, model.config, tokenizer):
        eos = getattr(source, "eos_token_id", None) if source is not None else None
        ids.update([eos] if isinstance(eos, int) else (eos or []))
    return tuple(sorted(ids))
