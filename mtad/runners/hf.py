"""What the backends that run transformers models share: loading a pair's models, tokenizer and
stop ids from a ``PairConfig``, and ``TransformersRunner``, the base of their runners (the model,
its output head, ``head_rows`` and the eager-forward context). The eager and static backends
(``mtad/runners/catalogue.py``) both build on it; a backend that runs something else need not.

A source is a Hugging Face hub id or local folder, ``prepared:<name>`` for an embedded model
built by ``mtad.runners.prepare``, or ``tiny-llama/target`` / ``tiny-llama/draft`` for the
in-process random test pair.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from mtad.errors import UserError
from mtad.runners.base import TRANSFORMERS_MODEL, Runner
from mtad.runners.matmul import wide_matmuls
from mtad.runners.quant import head_logits, quantize

if TYPE_CHECKING:
    from mtad.runners.load import PairConfig

TINY_PREFIX = "tiny-llama/"


class TransformersRunner(Runner):
    """A runner around a transformers causal LM; sub-classes own the cache and the forward.

    ``head_rows`` restricts the output head to the first N token ids (the others get logit -inf,
    so the model never proposes them). Meant for a draft on a memory-bound CPU: the 0.5B Qwen's
    151,936-row head is over a quarter of its weights (a forward takes 50 ms with it, 40 ms with
    32,768 rows), and byte-level BPE ids are ranked by merge order, which tracks token frequency.
    Verification by the full target keeps lossless decoders lossless; only how often drafts are
    accepted changes.
    """

    capabilities = frozenset({TRANSFORMERS_MODEL})

    def __init__(self, model, head_rows: int | None = None):
        super().__init__()
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.dtype = model.get_input_embeddings().weight.dtype
        head = model.get_output_embeddings()
        self.vocab_size = head.out_features
        if head_rows is not None and not 1 <= head_rows <= self.vocab_size:
            raise UserError(f"head_rows must lie in [1, {self.vocab_size}], got {head_rows}")
        self.head_rows = None if head_rows == self.vocab_size else head_rows

    def transformers_model(self):
        return self.model

    def eager(self):
        """The context every eager forward runs in (``mtad.runners.matmul``: wide bf16 matmuls on CPUs
        without bf16 arithmetic run in float32)."""
        return wide_matmuls(self.dtype, self.device)

    def _head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits [B, k, V] of final hidden states [B, k, hidden]; ids >= ``head_rows`` get -inf."""
        with self.eager():
            return output_logits(self.model.get_output_embeddings(), hidden, self.head_rows, self.vocab_size)


def output_logits(head: torch.nn.Module, hidden: torch.Tensor, head_rows: int | None, vocab_size: int) -> torch.Tensor:
    """``head``'s logits [..., vocab_size] of ``hidden``; with ``head_rows``, those of the first
    ``head_rows`` ids, the others -inf. Plain torch (no eager context): the static runner also traces
    it inside its compiled forward (mtad/runners/static.py)."""
    if head_rows is None:
        return head(hidden)
    logits = torch.full((*hidden.shape[:-1], vocab_size), float("-inf"), dtype=hidden.dtype, device=hidden.device)
    logits[..., :head_rows] = head_logits(head, hidden, head_rows)
    return logits


@dataclass
class LoadedModels:
    """A pair's transformers models (on the pair's device and dtype, quantized as configured), its
    shared tokenizer and its stop ids: what a transformers backend wraps in its runners."""

    target: Any
    draft: Any
    tokenizer: Any
    stop_ids: tuple[int, ...]


def load_models(cfg: PairConfig) -> LoadedModels:
    device, dtype = cfg.resolved_device(), cfg.resolved_dtype()
    if cfg.target.startswith(TINY_PREFIX) and cfg.draft.startswith(TINY_PREFIX):
        from mtad.runners.toy_models import tiny_llama_pair, tiny_tokenizer

        target, draft = tiny_llama_pair(cfg.seed, attn_implementation=cfg.attn_implementation)
        tokenizer = tiny_tokenizer()
    else:
        from mtad.runners.prepare import resolve_source

        target_src, draft_src = resolve_source(cfg.target), resolve_source(cfg.draft)
        tokenizer = load_tokenizer(target_src)
        check_same_tokenizer(tokenizer, load_tokenizer(draft_src), cfg)
        target, draft = (load_causal_lm(src, dtype, cfg.attn_implementation) for src in (target_src, draft_src))
    target, draft = (m.to(device=device, dtype=dtype) for m in (target, draft))
    target, draft = quantize(target, cfg.target_quant), quantize(draft, cfg.draft_quant)
    return LoadedModels(target, draft, tokenizer, stop_ids((target.generation_config, target.config), tokenizer, cfg))


def _token() -> str | None:
    return os.environ.get("HF_TOKEN") or None


def load_causal_lm(source: str, dtype: torch.dtype, attn_implementation: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(source, dtype=dtype, attn_implementation=attn_implementation,
                                                token=_token())


def load_tokenizer(source: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source, token=_token())


def check_same_tokenizer(target_tok, draft_tok, cfg: PairConfig) -> None:
    if target_tok.get_vocab() != draft_tok.get_vocab():
        raise UserError(f"model pair {cfg.name!r}: target and draft tokenizers differ "
                        f"({len(target_tok)} vs {len(draft_tok)} tokens); draft-and-verify needs one vocabulary")


def stop_ids(configs, tokenizer, cfg: PairConfig) -> tuple[int, ...]:
    """Every end-of-sequence id: the eos ids of the target's ``configs`` (its generation config and
    model config) and tokenizer, plus the pair's ``stop_tokens``. Instruct models end chat turns and
    plain completions with different tokens, and generation configs often list only one."""
    ids: set[int] = set()
    for source in (*configs, tokenizer):
        eos = getattr(source, "eos_token_id", None) if source is not None else None
        ids.update([eos] if isinstance(eos, int) else (eos or []))
    for token in cfg.stop_tokens:
        token_id = tokenizer.convert_tokens_to_ids(token) if tokenizer is not None else None
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise UserError(f"model pair {cfg.name!r}: stop token {token!r} is not in the tokenizer")
        ids.add(token_id)
    return tuple(sorted(ids))
