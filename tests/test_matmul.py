"""Wide bf16 matmuls in float32 on CPUs without bf16 arithmetic (mtad/runners/matmul.py): the product
against a float64 reference, when the mode engages (and its negative controls), and runners'
logits with it forced on against the same runners without it."""

import pytest
import torch

import mtad.runners.matmul as matmul
from mtad.runners.matmul import WIDE_ROWS, WideLinearsInFloat32, float32_linear, has_bf16_arithmetic, wide_matmuls
from mtad.runners.toy_models import tiny_llama

from mtad.runners.hf import TransformersRunner

from helpers import RUNNERS, runner_class, runner_of

F = torch.nn.functional


def test_cpuinfo_flags():
    assert not has_bf16_arithmetic("processor : 0\nflags\t\t: fpu sse avx avx2 fma f16c\n")
    assert has_bf16_arithmetic("flags\t\t: avx2 avx512f avx512_bf16\n")
    assert has_bf16_arithmetic("flags\t\t: avx2 amx_bf16 amx_tile\n")
    assert has_bf16_arithmetic("processor : 0\n")  # no flags line (not x86): unknown, leave alone


@pytest.mark.parametrize("bias", [False, True])
def test_float32_linear_against_float64(monkeypatch, bias):
    monkeypatch.setattr(matmul, "BLOCK", 7 * 48)  # 7 weight rows a block: several, and a ragged last one (20 = 7 + 7 + 6)
    monkeypatch.setattr(matmul, "_buffers", {})
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 9, 48, generator=g).bfloat16()
    w = torch.randn(20, 48, generator=g).bfloat16()
    b = torch.randn(20, generator=g).bfloat16() if bias else None
    exact = x.double() @ w.double().T + (b.double() if bias else 0)
    out = float32_linear(x, w, b)
    assert out.shape == (2, 9, 20) and out.dtype == torch.bfloat16
    # float32 accumulation, one rounding to bf16: within one bf16 ulp of the exact product
    torch.testing.assert_close(out.double(), exact, rtol=2 ** -8, atol=1e-6)
    # and exact where the reference is representable: compare with the exact product rounded
    assert (out == exact.bfloat16()).float().mean() > 0.95
    assert out.is_contiguous()
    # the conversion buffer is reused: a second weight of the same width sees none of the first
    w2 = torch.randn(13, 48, generator=g).bfloat16()
    torch.testing.assert_close(float32_linear(x, w2).double(), x.double() @ w2.double().T, rtol=2 ** -8, atol=1e-6)


def counting(monkeypatch):
    calls = []
    real = matmul.float32_linear
    monkeypatch.setattr(matmul, "float32_linear", lambda *a: calls.append(a[0].shape) or real(*a))
    return calls


def test_mode_engages_on_wide_bf16_only(monkeypatch):
    calls = counting(monkeypatch)
    w = torch.randn(16, 8).bfloat16()
    with WideLinearsInFloat32():
        F.linear(torch.randn(WIDE_ROWS, 8).bfloat16(), w)
        F.linear(torch.randn(1, WIDE_ROWS // 2, 8).bfloat16(), w)  # too few rows: bf16 GEMV
        F.linear(torch.randn(WIDE_ROWS, 8), w.float())  # float32 weights: nothing to do
        torch.nn.Linear(8, 16).bfloat16()(torch.randn(2, WIDE_ROWS, 8).bfloat16())  # a module's F.linear
    assert calls == [(WIDE_ROWS, 8), (2, WIDE_ROWS, 8)]


def test_wide_matmuls_only_where_asked(monkeypatch):
    monkeypatch.setattr(matmul, "cpu_has_bf16_arithmetic", lambda: False)
    assert isinstance(wide_matmuls(torch.bfloat16, "cpu"), WideLinearsInFloat32)
    assert not isinstance(wide_matmuls(torch.float32, "cpu"), WideLinearsInFloat32)
    assert not isinstance(wide_matmuls(torch.bfloat16, "cuda"), WideLinearsInFloat32)
    monkeypatch.setattr(matmul, "cpu_has_bf16_arithmetic", lambda: True)
    assert not isinstance(wide_matmuls(torch.bfloat16, "cpu"), WideLinearsInFloat32)


@pytest.mark.parametrize("kind", RUNNERS)
def test_runner_logits_with_float32_matmuls(monkeypatch, kind):
    if not issubclass(runner_class(kind), TransformersRunner):
        pytest.skip(f"backend {kind}: mtad.runners.matmul is for the transformers runners")
    model = tiny_llama(seed=1).bfloat16()
    prompt = torch.arange(3, 3 + 2 * WIDE_ROWS)[None]

    def run():
        runner = runner_of(model, kind)
        return runner.feed(prompt, keep=prompt.shape[1]), runner.feed(torch.tensor([[7]]))

    monkeypatch.setattr(matmul, "cpu_has_bf16_arithmetic", lambda: True)
    plain_prompt, plain_step = run()
    monkeypatch.setattr(matmul, "cpu_has_bf16_arithmetic", lambda: False)
    calls = counting(monkeypatch)
    wide_prompt, wide_step = run()
    # the prompt's projections and its head went through float32; the one-token step did not
    assert calls and all(shape[-2] >= WIDE_ROWS for shape in calls)
    assert len({tuple(s) for s in calls}) >= 2
    # bf16 rounding apart, the same logits ...
    close = dict(rtol=0.05, atol=0.05)
    torch.testing.assert_close(wide_prompt.float(), plain_prompt.float(), **close)
    torch.testing.assert_close(wide_step.float(), plain_step.float(), **close)
    assert torch.equal(wide_step.argmax(-1), plain_step.argmax(-1))
    # ... a tolerance that tells logits apart: the next position's are far outside it
    assert not torch.allclose(wide_prompt[:, 1:].float(), plain_prompt[:, :-1].float(), **close)


def test_static_runner_keeps_wide_forwards_eager(monkeypatch):
    runner = runner_of(tiny_llama(seed=1).bfloat16(), "static")

    def compiled(*inputs):
        raise AssertionError("a compiled graph ran")

    runner._compiled = compiled  # as if compiled: any bucketed forward would call it
    monkeypatch.setattr(matmul, "cpu_has_bf16_arithmetic", lambda: False)
    runner.feed(torch.arange(3, 3 + WIDE_ROWS)[None])  # wide: eager, in float32
    with pytest.raises(AssertionError, match="compiled graph"):  # narrow: the compiled bucket
        runner.feed(torch.tensor([[7]]))
    monkeypatch.setattr(matmul, "cpu_has_bf16_arithmetic", lambda: True)
    runner.reset()
    with pytest.raises(AssertionError, match="compiled graph"):  # bf16 arithmetic: compiled as before
        runner.feed(torch.arange(3, 3 + WIDE_ROWS)[None])
