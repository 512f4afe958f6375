"""Weight-only int8 (mtad/runners/quant.py): the kernel against float math, and a quantized draft under
the decoders' own correctness tests: greedy identity for every exact decoder, and a G-test of
SpD's output distribution against exact AR probabilities of the real (tiny Llama) target, with
its negative control."""

import pytest
import torch
from torch import nn

import baselines.spd
from mtad.catalogue import build_decoder
from mtad.decoding.base import generate
from mtad.errors import UserError
from mtad.runners.load import PairConfig, load_pair
from mtad.runners.pair import Pair
from mtad.runners.quant import Int8Linear, quantize, streamed_bytes
from mtad.decoding.sampling import SamplingConfig
from mtad.runners.toy_models import tiny_llama_pair

from helpers import RUNNERS, SPD_LENGTH, SPD_PROMPT, TOP3, exact_target_ar, runner_of, skip_unless, spd_g_test


def test_int8_linear_is_the_dequantized_matmul_and_close_to_float():
    torch.manual_seed(0)
    linear = nn.Linear(64, 48, bias=True)
    q = Int8Linear(linear)
    x = torch.randn(5, 3, 64)
    dequantized = x @ q.dequantized().T + linear.bias
    assert torch.allclose(q(x), dequantized, atol=1e-4)
    exact = linear(x)
    assert (q(x) - exact).abs().max() < 0.02 * exact.abs().max()  # int8 rounding, per-channel scales
    assert torch.allclose(q(x, rows=10), q(x)[..., :10])
    assert q.qweight.dtype == torch.int8 and q.qweight.abs().max() == 127


def test_quantize_replaces_every_linear_and_halves_the_bytes_of_bf16():
    target, _ = tiny_llama_pair(0)
    target = target.to(torch.bfloat16)
    before = streamed_bytes(target)
    quantize(target, "int8")
    assert not [m for m in target.modules() if type(m) is nn.Linear]
    assert isinstance(target.lm_head, Int8Linear)
    linear_bf16 = sum(m.qweight.numel() * 2 for m in target.modules() if isinstance(m, Int8Linear))
    assert streamed_bytes(target) < before - 0.45 * linear_bf16  # int8 weights + bf16 scales


def test_bad_quantization_and_device_are_one_line_errors():
    with pytest.raises(UserError, match="pair.draft_quant must be one of none, int8, got 'int4'"):
        PairConfig("tiny", "tiny-llama/target", "tiny-llama/draft", draft_quant="int4")
    with pytest.raises(UserError, match="runs on the CPU only"):
        PairConfig("tiny", "tiny-llama/target", "tiny-llama/draft", device="cuda", draft_quant="int8")
    assert PairConfig("q", "a", "b", draft_quant="int8").label == "q+draft-int8"
    assert load_pair("tiny", draft_quant="int8").name == "tiny+draft-int8"


def int8_draft_pair(draft_noise: float = 0.03, runner: str = "eager") -> Pair:
    target, draft = tiny_llama_pair(0, draft_noise=draft_noise)
    return Pair(runner_of(target, runner), runner_of(quantize(draft, "int8"), runner), name="tiny+draft-int8")


GREEDY = SamplingConfig(temperature=0)
PROMPTS = [[1, 2, 3, 4, 5], [17], [63, 0, 12]]


@pytest.mark.parametrize("params", [
    ("spd", {"gamma": 4}), ("mtad", {"width": 3, "tau": 0.5}), ("specinfer", {"k_config": [2, 2]}),
    ("mcss", {"k_config": [2, 2]}), ("spectr", {"k": 2, "gamma": 3}),
], ids=lambda p: p[0])
@pytest.mark.parametrize("runner", RUNNERS)
def test_greedy_identity_with_an_int8_draft(params, runner):
    name, kwargs = params
    skip_unless(runner, quant="int8", decoder=name)
    pair = int8_draft_pair(runner=runner)
    accepted = 0
    for prompt in PROMPTS:
        reference = pair.target.model.generate(torch.tensor([prompt]), max_new_tokens=30, do_sample=False,
                                               min_new_tokens=30)[0, len(prompt):].tolist()
        out = generate(pair, build_decoder(name, **kwargs), prompt, max_new_tokens=30, sampling=GREEDY, stop_ids=())
        assert out.tokens == reference, f"{name} with an int8 draft diverged on {prompt}"
        accepted += out.stats.draft_accepted
    assert accepted > 0, "the int8 draft never contributed: the identity would hold trivially"




@pytest.fixture(scope="module", params=RUNNERS)
def noisy_int8(request):
    """A draft far enough from the target that rejections, and so the residual, matter (with
    top-3, about a fifth of the output mass per step moves if p replaces the residual)."""
    skip_unless(request.param, quant="int8")
    pair = int8_draft_pair(draft_noise=0.1, runner=request.param)
    return pair, exact_target_ar(pair, TOP3, SPD_PROMPT, SPD_LENGTH)


def test_spd_with_an_int8_draft_reproduces_the_target(noisy_int8):
    pvalue, tv = spd_g_test(*noisy_int8)
    assert pvalue > 1e-4, f"p={pvalue:.2e}, TV={tv:.3f}"


def test_spd_with_an_int8_draft_and_p_instead_of_the_residual_fails(noisy_int8, monkeypatch):
    monkeypatch.setattr(baselines.spd, "residual", lambda p, q: p)
    pvalue, tv = spd_g_test(*noisy_int8)
    assert pvalue < 1e-4, f"negative control passed: p={pvalue:.2e}, TV={tv:.3f}"
