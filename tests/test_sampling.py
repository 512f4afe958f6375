import pytest
import torch

from mtad.decoding.sampling import SamplingConfig, process, residual


def test_top_p_keeps_the_crossing_token():
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    p = process(logits, SamplingConfig(temperature=1.0, top_k=0, top_p=0.9))
    assert (p > 0).tolist() == [True, True, True, False]
    assert torch.allclose(p[:3], torch.tensor([0.5, 0.3, 0.15]) / 0.95)


def test_top_p_first_token_always_kept():
    p = process(torch.tensor([5.0, 0.0, -1.0]), SamplingConfig(top_k=0, top_p=0.01))
    assert p.tolist() == [1.0, 0.0, 0.0]


def test_top_k_keeps_ties_with_kth_value():
    p = process(torch.tensor([3.0, 2.0, 2.0, 1.0]), SamplingConfig(top_k=2, top_p=1.0))
    assert (p > 0).tolist() == [True, True, True, False]


def test_top_k_then_top_p_on_filtered_distribution():
    # top-k 2 leaves (0.6, 0.4) renormalised; top-p 0.5 then keeps only the first.
    logits = torch.tensor([0.3, 0.2, 0.25, 0.25]).log()
    assert process(logits, SamplingConfig(top_k=1, top_p=1.0)).tolist() == [1.0, 0.0, 0.0, 0.0]
    p = process(torch.tensor([0.45, 0.30, 0.25]).log(), SamplingConfig(top_k=2, top_p=0.5))
    assert p.tolist() == [1.0, 0.0, 0.0]


def test_temperature_scales_logits_in_float32():
    logits = torch.tensor([1.0, 0.0], dtype=torch.bfloat16)
    p = process(logits, SamplingConfig(temperature=0.5, top_k=0, top_p=1.0))
    assert p.dtype == torch.float32
    assert p[0].item() == pytest.approx(torch.tensor([2.0, 0.0]).softmax(0)[0].item())


def test_greedy_is_one_hot_argmax():
    p = process(torch.tensor([[0.1, 3.0, 2.9]]), SamplingConfig(temperature=0))
    assert p.tolist() == [[0.0, 1.0, 0.0]]


def test_residual_and_its_zero_mass_guard():
    p, q = torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.8, 0.1, 0.1])
    assert torch.allclose(residual(p, q), torch.tensor([0.0, 1.0, 0.0]))
    assert torch.equal(residual(p, p), p)


@pytest.mark.parametrize("kwargs, message", [
    ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"), ({"temperature": -1}, "temperature"),
    ({"top_k": -3}, "top_k"),
])
def test_bad_sampling_settings_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplingConfig(**kwargs)
