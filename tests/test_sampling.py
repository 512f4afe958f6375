import pytest
import torch

from mtad.decoding.sampling import SamplingConfig, draw, process, residual


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
    rows = residual(torch.stack([p, p]), torch.stack([q, p]))  # row by row
    assert torch.allclose(rows, torch.stack([torch.tensor([0.0, 1.0, 0.0]), p]))


def reference_process(z: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """The rule on one row, read to the host: sort, keep the top-k and their ties, cut at top_p."""
    z = z.float() / cfg.temperature
    order = sorted(range(len(z)), key=lambda i: -float(z[i]))  # stable: ties in id order
    if 0 < cfg.top_k < len(z):
        order = [i for i in order if z[i] >= z[order[cfg.top_k - 1]]]
    mass = z[order].softmax(0).tolist()
    kept = [i for n, i in enumerate(order) if n == 0 or sum(mass[:n]) <= cfg.top_p]
    return torch.zeros_like(z).index_put_((torch.tensor(kept),), z[kept].softmax(0))


# top_p off every sum of masses of these logits by far more than rounding (j ties of n: j / n, n <= 24)
@pytest.mark.parametrize("cfg", [SamplingConfig(top_k=10, top_p=0.91), SamplingConfig(top_k=3, top_p=0.61),
                                 SamplingConfig(top_k=0, top_p=0.73), SamplingConfig(top_k=4, top_p=1.0),
                                 SamplingConfig(temperature=0.5, top_k=2, top_p=0.87)], ids=str)
def test_process_matches_the_rule_with_ties_at_the_k_th_value_and_at_the_top_p_cut(cfg):
    # process masks the whole vocabulary (it never reads how many survive): the same distribution,
    # ties at the top-p cut kept in id order
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        z = torch.randint(0, 5, (24,), generator=generator).float() / 2  # many ties
        assert torch.allclose(process(z, cfg), reference_process(z, cfg), atol=1e-6)
    batch = torch.randn(3, 50, generator=generator)
    assert torch.allclose(process(batch, cfg), torch.stack([reference_process(row, cfg) for row in batch]), atol=1e-6)


def test_draw_follows_each_row_without_reads():
    from collections import Counter

    from helpers import g_test
    from mtad.decoding.sampling import draws
    from mtad.job.overhead import Overhead, counting
    rows = torch.tensor([[0.0, 0.5, 0.2, 0.0, 0.3], [0.1, 0.0, 0.0, 0.6, 0.3]])
    g = torch.Generator().manual_seed(3)
    seen = Counter()
    for _ in range(4000):
        seen.update((r, int(i)) for r, i in enumerate(draw(rows, g).tolist()))
    expected = {(r, i): float(rows[r, i]) / 2 for r in range(2) for i in range(5) if rows[r, i] > 0}
    pvalue, tv = g_test(seen, expected)
    assert pvalue > 1e-4, f"p={pvalue:.2e}, TV={tv:.3f}"
    # negative control: the same counts fail with 0.05 of a row's mass moved
    shifted = dict(expected)
    shifted[(0, 1)], shifted[(0, 4)] = shifted[(0, 1)] - 0.025, shifted[(0, 4)] + 0.025
    assert g_test(seen, shifted)[0] < 1e-4
    # one uniform a row, as draws with n = 1: a one-child tree level takes SpD's random stream
    a, b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert [draw(rows, a).tolist() for _ in range(20)] == [draws(rows, b, 1)[:, 0].tolist() for _ in range(20)]
    # rows need not be normalised; 1-D probs give a 0-d id; mass 0 is never drawn
    assert draw(torch.tensor([[0.0, 3.0, 0.0], [0.0, 0.0, 7.0]]), g).tolist() == [1, 2]
    assert draw(torch.tensor([0.0, 0.0, 2.0]), g).shape == ()
    assert {int(draw(torch.tensor([0.3, 0.7, 0.0]), g)) for _ in range(2000)} == {0, 1}
    overhead = Overhead()
    with counting(overhead):
        draw(rows, g)
    assert overhead.reads == 0


@pytest.mark.parametrize("kwargs, message", [
    ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"), ({"temperature": -1}, "temperature"),
    ({"top_k": -3}, "top_k"),
])
def test_bad_sampling_settings_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplingConfig(**kwargs)


def _successive_order_probs(p: torch.Tensor, n: int) -> dict[tuple, float]:
    """Exact probability of each ordered n-tuple of distinct ids under successive sampling
    without replacement from p (n <= the support)."""
    import itertools
    out = {}
    for order in itertools.permutations(range(len(p)), n):
        prob, left = 1.0, 1.0
        for i in order:
            prob *= float(p[i]) / left
            left -= float(p[i])
        if prob > 0:
            out[order] = prob
    return out


def test_draws_are_iid_from_the_distribution_without_reads():
    from collections import Counter

    from helpers import g_test
    from mtad.decoding.sampling import draws
    from mtad.job.overhead import Overhead, counting
    p = torch.tensor([0.0, 0.5, 0.2, 0.0, 0.3])
    g = torch.Generator().manual_seed(1)
    seen = Counter()
    for _ in range(4000):
        seen.update((int(a), int(b)) for a, b in [draws(p, g, 2).tolist()])
    expected = {(a, b): float(p[a] * p[b]) for a in range(5) for b in range(5) if p[a] * p[b] > 0}
    pvalue, tv = g_test(seen, expected)
    assert pvalue > 1e-4, f"p={pvalue:.2e}, TV={tv:.3f}"
    # negative control: the same counts fail against cells with 0.05 of mass moved
    shifted = {(a, b): float(p[a] * p[b]) for a in range(5) for b in range(5) if p[a] * p[b] > 0}
    shifted[(1, 1)], shifted[(4, 4)] = shifted[(1, 1)] - 0.05, shifted[(4, 4)] + 0.05
    assert g_test(seen, shifted)[0] < 1e-4
    overhead = Overhead()
    with counting(overhead):
        draws(p, g, 3)
    assert overhead.reads == 0
    # mass 0 is never drawn, even at the top edge of U * total
    assert set(draws(torch.tensor([0.3, 0.7, 0.0]), g, 10_000).tolist()) == {0, 1}


def test_draws_without_replacement_follow_successive_sampling_and_mark_padding():
    from collections import Counter

    from helpers import g_test
    from mtad.decoding.sampling import draws_without_replacement
    p = torch.tensor([0.7, 0.0, 0.2, 0.1])
    g = torch.Generator().manual_seed(2)
    seen = Counter()
    for _ in range(4000):
        ids, live = draws_without_replacement(p, g, 2)
        assert live.all()
        seen[tuple(ids.tolist())] += 1
    pvalue, tv = g_test(seen, _successive_order_probs(p, 2))
    assert pvalue > 1e-4, f"p={pvalue:.2e}, TV={tv:.3f}"
    # negative control: i.i.d. (with replacement) ordered pairs renormalised on distinct pairs
    iid = {(a, b): float(p[a] * p[b]) for a in range(4) for b in range(4) if a != b and p[a] * p[b] > 0}
    total = sum(iid.values())
    assert g_test(seen, {k: v / total for k, v in iid.items()})[0] < 1e-4
    # more draws than supported ids (and than ids): the extra ones are marked dead, never live
    ids, live = draws_without_replacement(p, g, 6)
    assert live.tolist() == [True, True, True, False, False, False] and len(set(ids[:3].tolist())) == 3
    assert p[ids[:3]].gt(0).all()
