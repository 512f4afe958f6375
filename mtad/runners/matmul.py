"""bfloat16 matmuls on CPUs that have no bfloat16 arithmetic (AVX2-only x86: no AVX512_BF16, no AMX).

Why: there torch multiplies bf16 matrices at ~20 GFLOP/s on two cores, against ~95 in float32,
so every forward of more than a few tokens is compute bound. Measured on a 2-core AMD EPYC
(AVX2), one 8960x1536 projection, bf16 against converting the weight to float32 in blocks:
1 token 1.5 / 3.5 ms, 8 tokens 11.7 / 6.2, 64 tokens 86 / 16, 256 tokens 350 / 49. A 100-token
prompt on the 1.5B target took 13.6 s. A one-token step (a GEMV, bound by the weight bytes) stays
bf16; a forward of ``WIDE_ROWS`` or more rows (prompts, verification blocks, batched judging)
converts each weight block to float32 as it multiplies, so it reads the bf16 bytes once and
computes at float32 speed. The product is rounded back to bf16: the numbers differ from a bf16
matmul by rounding only (float32 accumulates more exactly). CPUs with bf16 arithmetic (Xeons
with AMX or AVX512_BF16) and every other device are left alone.

Whole-model forwards of the 1.5B target after 300 cached tokens on that EPYC (median seconds of
9 (8-16 rows) or 6 (32+), alone): rows 8 / 12 / 16 / 32 / 64 / 256: bf16 1.31 / 1.94 / 2.55 /
~5.0 / 9.9 / -; this product 1.25 / 1.12 / 0.94 / 1.33 / 2.11 / 6.58. An earlier form (a fresh
1024-weight-row buffer per call, 36 MB for the 8960-wide down projection, and block products
written into column slices of the output) took 2.1 / - / 2.1 / 2.7 / - / 7.3: slower than bf16
at 8 rows, which made the local judge's 8-prompt batches ~1.6x slower per step than bf16.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

# Bumped with any change to how wide bf16 matmuls are computed that changes generated tokens: like
# the backend's version, part of every run id on a transformers backend (mtad/runners/catalogue.py
# ``code_versions``, mtad/job/records.py).
MATMUL_VERSION = 1

WIDE_ROWS = 8  # rows (tokens x batch) from which the float32 product wins (measured above)
BLOCK = 1 << 20  # weight elements converted at a time: 4 MB of float32, cache-sized

# One conversion buffer per (input width, device), reused across calls: a fresh multi-MB buffer
# per call is a fresh mmap, whose page faults cost about as much as the product (measured above).
_buffers: dict[tuple[int, torch.device], torch.Tensor] = {}


def has_bf16_arithmetic(cpuinfo: str) -> bool:
    """Whether a ``/proc/cpuinfo`` text lists bf16 arithmetic; True where it lists no flags (unknown)."""
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), None)
    return flags is None or bool({"avx512_bf16", "amx_bf16"} & set(flags))


@functools.cache
def cpu_has_bf16_arithmetic() -> bool:
    """This machine's answer (True where we cannot tell: then nothing changes)."""
    try:
        return has_bf16_arithmetic(Path("/proc/cpuinfo").read_text())
    except OSError:
        return True


@torch.no_grad()  # inference only: the blocks are written in place
def float32_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` computed in float32, a block of weight rows at a time, in x's dtype.

    The product is formed transposed (output features x tokens), so each block's result is a
    contiguous slice; writing blocks into column slices of a tokens x features output was up to
    2x slower for 16-64 rows. Each output element is one float32 dot product either way."""
    flat = x.reshape(-1, x.shape[-1]).float()
    n_out, n_in = weight.shape
    step = max(1, BLOCK // n_in)
    block = _buffers.get((n_in, x.device))
    if block is None or block.shape[0] < step:
        block = _buffers[(n_in, x.device)] = torch.empty(step, n_in, dtype=torch.float32, device=x.device)
    out_t = torch.empty(n_out, flat.shape[0], dtype=torch.float32, device=x.device)
    for start in range(0, n_out, step):
        stop = min(start + step, n_out)
        rows = block[: stop - start].copy_(weight[start:stop])
        torch.mm(rows, flat.t(), out=out_t[start:stop])
    if bias is not None:
        out_t += bias.float()[:, None]
    out = out_t.t().to(x.dtype, memory_format=torch.contiguous_format)
    return out.reshape(*x.shape[:-1], n_out)


class WideLinearsInFloat32(TorchFunctionMode):
    """Within it, ``F.linear`` on a bf16 weight with >= ``WIDE_ROWS`` input rows runs ``float32_linear``.
    Eager code only: a compiled graph must not run inside it."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.linear:
            x, weight = args[0], args[1] if len(args) > 1 else kwargs["weight"]
            if weight.dtype == torch.bfloat16 and x.dim() and x.numel() // max(x.shape[-1], 1) >= WIDE_ROWS:
                bias = args[2] if len(args) > 2 else kwargs.get("bias")
                return float32_linear(x, weight, bias)
        return func(*args, **kwargs)


def upcasts(model_dtype: torch.dtype, device: torch.device | str) -> bool:
    """Whether eager forwards of a ``model_dtype`` model on ``device`` compute wide linears in float32."""
    return torch.device(device).type == "cpu" and model_dtype == torch.bfloat16 and not cpu_has_bf16_arithmetic()


def wide_matmuls(model_dtype: torch.dtype, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The context an eager forward of a ``model_dtype`` model on ``device`` runs in."""
    return WideLinearsInFloat32() if upcasts(model_dtype, device) else contextlib.nullcontext()
