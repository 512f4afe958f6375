"""Weight-only int8 for the linear layers of a model (``pair.target_quant`` / ``pair.draft_quant``).

On a memory-bound CPU a token costs about its weight bytes over the memory bandwidth: int8
weights halve the bytes of bf16. Each output channel (row of the weight) gets its own scale,
symmetric: w ~ q * s with q in [-127, 127], s = max|w_row| / 127. The matmul is torch's own
``aten._weight_int8pack_mm`` (CPU), which reads the int8 weights and scales in the activation
dtype without materialising a dequantized copy. Its cost grows with the rows fed (a 5-token
verify costs about twice a 1-token step), so it suits the draft's one-token steps more than the
target's block verification: measure before quantizing a target (``scripts/bench_speed.py``).

Quantizing the draft changes which tokens are proposed, never what a lossless decoder emits; a
quantized target is another model (its name in every record says so).
"""

from __future__ import annotations

import torch
from torch import nn

from mtad.errors import UserError

# Bumped with any change to the int8 linear layers or the output-head slice (``head_logits``) that
# changes generated tokens: like the backend's version, part of every run id on a transformers
# backend (mtad/runners/catalogue.py ``code_versions``, mtad/job/records.py).
QUANT_VERSION = 1

QUANTS = ("none", "int8")


class Int8Linear(nn.Module):
    """``nn.Linear`` with int8 weights and one scale per output channel."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny) / 127
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("qweight", torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.to(linear.weight.dtype))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)

    def forward(self, x: torch.Tensor, rows: int | None = None) -> torch.Tensor:
        """``x @ W.T (+ b)``; with ``rows``, only the first ``rows`` output channels."""
        qweight, scale = (self.qweight, self.scale) if rows is None else (self.qweight[:rows], self.scale[:rows])
        flat = x.reshape(-1, self.in_features)
        out = torch.ops.aten._weight_int8pack_mm(flat, qweight, scale.to(flat.dtype))
        if self.bias is not None:
            out = out + (self.bias if rows is None else self.bias[:rows])
        return out.reshape(*x.shape[:-1], out.shape[-1])

    def dequantized(self) -> torch.Tensor:
        return self.qweight.float() * self.scale.float()[:, None]


def check_quant(setting: str, quant: str, device: torch.device) -> None:
    """One ``UserError`` line unless ``quant`` is known and can run on ``device`` (``setting`` names
    the option, e.g. ``pair.draft_quant``)."""
    if quant not in QUANTS:
        raise UserError(f"{setting} must be one of {', '.join(QUANTS)}, got {quant!r}")
    if quant != "none" and device.type != "cpu":
        raise UserError(f"{setting}={quant} runs on the CPU only (torch's _weight_int8pack_mm); this model runs on "
                        f"{device}")


def quantize(model: nn.Module, quant: str) -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` (the output head included) in place; returns it."""
    check_quant("quantization", quant, next(model.parameters()).device)
    if quant == "none":
        return model
    linears = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    for name, module in linears:
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, Int8Linear(module))
    return model


def head_logits(head: nn.Module, hidden: torch.Tensor, rows: int) -> torch.Tensor:
    """Logits of the first ``rows`` token ids from an output head, int8 or not."""
    if isinstance(head, Int8Linear):
        return head(hidden, rows=rows)
    return nn.functional.linear(hidden, head.weight[:rows])


def streamed_bytes(model: nn.Module) -> int:
    """Bytes of weights one forward reads: every parameter and buffer once, except the input
    embedding table (a forward reads only the rows of its tokens) unless the output head shares it."""
    embedding = model.get_input_embeddings().weight if hasattr(model, "get_input_embeddings") else None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    shared = embedding is not None and getattr(head, "weight", None) is embedding
    seen, total = set(), 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.data_ptr() in seen or (tensor is embedding and not shared):
            continue
        seen.add(tensor.data_ptr())
        total += tensor.numel() * tensor.element_size()
    return total
