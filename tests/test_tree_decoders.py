"""SpecInfer, MCSS and SpecTr: exact single-step enumeration, multi-token distribution tests with
negative controls, greedy identity, tree logits, and equivalence with SpD on chains
(docs/decoders.md#specinfer-tree-speculative-sampling, #mcss-candidates-without-replacement,
#spectr-k-seq, #toy-models-for-tests)."""

import itertools
from collections import Counter

import pytest
import torch

import baselines.specinfer
import baselines.spectr
from baselines.spectr import kseq_plan, optimal_rho
from baselines.specinfer import mss_plan
from mtad.catalogue import build_decoder
from mtad.decoding.base import generate, start
from mtad.decoding.sampling import SamplingConfig
from mtad.decoding.tree import TREE_NEEDS, Support, draft_tree, draw_children, verify_tree
from mtad.job.overhead import measure
from mtad.runners.toy_models import tiny_llama_pair

from helpers import (DISTRIBUTION_RUNS, RUNNERS, exact_ar, g_test, sample_sequences, skip_unless, table_pair,
                     tiny_pair)

UNFILTERED = SamplingConfig(temperature=1.0, top_k=0, top_p=1.0)
FILTERED = SamplingConfig(temperature=1.0, top_k=2, top_p=0.8)


def random_pair(vocab, gen, zeros=False):
    p, q = torch.rand(vocab, generator=gen).double() ** 3, torch.rand(vocab, generator=gen).double() ** 3
    if zeros:
        p[torch.randperm(vocab, generator=gen)[: vocab // 2]] = 0
        q[torch.randperm(vocab, generator=gen)[: vocab // 3]] = 0
    return p / p.sum(), q / q.sum()


def candidate_draws(q, k, replacement):
    """Every ordered tuple of k candidates with its probability (sequential without replacement)."""
    vocab = len(q)
    for draw in itertools.product(range(vocab), repeat=k):
        prob, left = 1.0, q.clone()
        for token in draw:
            if left.sum() <= 0 or left[token] == 0:
                prob = 0.0
                break
            prob *= float(left[token] / left.sum())
            if not replacement:
                left[token] = 0
        if prob > 0:
            yield draw, prob


def output_distribution(plan, p, q, k, replacement):
    out = torch.zeros_like(p)
    for draw, prob in candidate_draws(q, k, replacement):
        accept, rest = plan(p, q, list(draw))
        still_rejected = 1.0
        for token, a in zip(draw, accept):
            out[token] += prob * still_rejected * a
            still_rejected *= 1 - a
        out += prob * still_rejected * rest
    return out


@pytest.mark.parametrize("zeros", [False, True])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_single_step_outputs_are_exactly_p(k, zeros):
    gen = torch.Generator().manual_seed(k + 10 * zeros)
    for _ in range(20):
        p, q = random_pair(5, gen, zeros)
        k_eff = min(k, int((q > 0).sum()))
        methods = {
            "specinfer": (lambda p_, q_, d: mss_plan(p_, q_, d, without_replacement=False), k, True),
            "mcss": (lambda p_, q_, d: mss_plan(p_, q_, d, without_replacement=True), k_eff, False),
            "spectr": (kseq_plan, k, True),
        }
        for name, (plan, draws, replacement) in methods.items():
            out = output_distribution(plan, p, q, draws, replacement)
            torch.testing.assert_close(out, p, rtol=0, atol=1e-12, msg=f"{name} k={k}")


@pytest.mark.parametrize("k", [3, 4])
def test_mcss_draws_beyond_the_support_change_nothing(k):
    """A node whose q supports fewer than k tokens gets draws of q = 0 after the supported ones
    (``draw_children``): never accepted, and P and Q stay as after the supported ones."""
    gen = torch.Generator().manual_seed(k)
    for _ in range(20):
        p, q = random_pair(5, gen)
        q[q.argsort(descending=True)[2:]] = 0
        q /= q.sum()
        zero = (q == 0).nonzero().flatten().tolist()
        for draw, _ in candidate_draws(q, 2, replacement=False):
            accept, rest = mss_plan(p, q, list(draw), without_replacement=True)
            padded_accept, padded_rest = mss_plan(p, q, list(draw) + zero[: k - 2], without_replacement=True)
            assert padded_accept.shape == (k,) and (padded_accept[2:] == 0).all()
            torch.testing.assert_close(padded_accept[:2], accept, rtol=0, atol=0)
            torch.testing.assert_close(padded_rest, rest, rtol=0, atol=0)


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("replacement", [True, False])
def test_draw_children_draws_in_order_with_or_without_replacement(replacement, k):
    """k i.i.d. draws, or a sample without replacement in drawing order (each next one from q
    renormalised over the tokens left), per row; the other rule as the negative control."""
    q = torch.tensor([0.45, 0.3, 0.15, 0.1, 0.0])
    runs = 20000
    children, real = draw_children(q.expand(runs, -1).contiguous(), k, replacement, torch.Generator().manual_seed(k))
    assert children.shape == real.shape == (runs, k) and real.all()
    counts = Counter(map(tuple, children.tolist()))
    for rule, should_pass in ((replacement, True), (not replacement, False)):
        pvalue, tv = g_test(counts, dict(candidate_draws(q.double(), k, rule)))
        assert (pvalue > 1e-4) == should_pass, f"replacement={rule}: p={pvalue:.2e}, TV={tv:.3f}"


def test_draw_children_beyond_the_support_ends_with_q_zero():
    q = torch.tensor([[0.0, 0.7, 0.0, 0.3, 0.0]]).expand(1000, -1).contiguous()
    children, real = draw_children(q, 4, False, torch.Generator().manual_seed(0))
    assert (q.gather(1, children)[:, :2] > 0).all() and (q.gather(1, children)[:, 2:] == 0).all()
    assert real[:, :2].all() and not real[:, 2:].any()
    assert (children[:, 0] != children[:, 1]).all()


@pytest.mark.parametrize("plan", ["mss", "mss without replacement", "k-seq"])
def test_plans_on_the_support_equal_plans_on_the_vocabulary(plan):
    """``Support``: a plan over the drafts' ids plus one lumped column for the rest gives the
    acceptance probabilities and, expanded, the residual of a plan over the whole vocabulary;
    candidates outside the support (MCSS's draws beyond it) land on the lumped column. Negative
    control: the same plan without the lumped column (the target's mass outside q dropped)."""
    gen = torch.Generator().manual_seed(7)
    run = {"mss": lambda p, q, x: mss_plan(p, q, x, without_replacement=False),
           "mss without replacement": lambda p, q, x: mss_plan(p, q, x, without_replacement=True),
           "k-seq": lambda p, q, x: kseq_plan(p, q, x)}[plan]
    worst_control = 0.0
    for _ in range(30):
        p, q = map(torch.stack, zip(*[random_pair(12, gen, zeros=True) for _ in range(3)]))
        candidates = torch.multinomial(q, 3, replacement=True, generator=gen)
        if plan == "mss without replacement":  # and a draw beyond q's support (q = 0 there)
            candidates = torch.cat([candidates, q.argmin(-1, keepdim=True)], -1)
        mask = q.gt(0).any(0)
        support = Support.of(mask, int(mask.sum()))
        accept, rest = run(p, q, candidates)
        accept_c, rest_c = run(support.compact(p), support.compact(q), support.column[candidates])
        torch.testing.assert_close(accept_c, accept, rtol=0, atol=1e-12)
        torch.testing.assert_close(support.expand(rest_c, p), rest, rtol=0, atol=1e-12)
        dropped = run(p[:, support.ids], q[:, support.ids], support.column[candidates].clamp_max(len(support.ids) - 1))[1]
        worst_control = max(worst_control, float((torch.zeros_like(p).index_copy(-1, support.ids, dropped) - rest).abs().max()))
    assert worst_control > 0.05


def test_single_step_negative_controls_are_not_p():
    p, q = random_pair(5, torch.Generator().manual_seed(4))
    no_update = output_distribution(lambda p_, q_, d: mss_plan(p_, q_, d, without_replacement=False), p, q, 3, False)
    assert (no_update - p).abs().sum() > 0.05
    rho_one = output_distribution(lambda p_, q_, d: ([min(1.0, float(p_[x] / q_[x])) for x in d], p_), p, q, 3, True)
    assert (rho_one - p).abs().sum() > 0.05


def test_optimal_rho_makes_the_residual_non_negative_and_is_minimal():
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        p, q = random_pair(6, gen, zeros=bool(torch.randint(2, (1,), generator=gen)))
        k = int(torch.randint(2, 5, (1,), generator=gen))
        rho = optimal_rho(p, q, k)
        beta = float(torch.minimum(q, p / rho).sum())
        assert 1 <= rho <= k
        assert 1 - (1 - beta) ** k <= rho * beta + 1e-9
        if rho > 1 + 1e-6:  # a smaller rho breaks the condition
            smaller = rho - 1e-4
            b = float(torch.minimum(q, p / smaller).sum())
            assert 1 - (1 - b) ** k > smaller * b
    assert optimal_rho(p, q, 1) == 1.0


def test_optimal_rho_batched_equals_row_by_row():
    gen = torch.Generator().manual_seed(1)
    pairs = [random_pair(6, gen, zeros=bool(i % 2)) for i in range(8)]
    p, q = torch.stack([a for a, _ in pairs]).float(), torch.stack([b for _, b in pairs]).float()
    k = torch.tensor([1, 2, 3, 4, 2, 3, 4, 1])
    batched = optimal_rho(p, q, k)
    assert batched.dtype == torch.float32 and batched.shape == (8,)
    assert batched[k == 1].eq(1).all()  # k' = 1 is SpD: exactly 1
    for row in range(8):
        assert batched[row] == optimal_rho(p[row], q[row], int(k[row]))


def test_mcss_accepts_at_least_as_often_as_with_replacement():
    gen = torch.Generator().manual_seed(4)
    for _ in range(100):
        p, q = random_pair(5, gen)
        for k in (2, 3):
            rates = []
            for without, replacement in ((True, False), (False, True)):
                total = 0.0
                for draw, prob in candidate_draws(q, k, replacement):
                    accept, _ = mss_plan(p, q, list(draw), without_replacement=without)
                    rejected = 1.0
                    for a in accept:
                        rejected *= 1 - a
                    total += prob * (1 - rejected)
                rates.append(total)
            assert rates[0] >= rates[1] - 1e-12


# ---------------------------------------------------------------- multi-token, toy table LM
PROMPT = [0, 1]
LENGTH = 5


def distribution_check(decoder, sampling, seed=0, draft_noise=0.8):
    pair = table_pair(vocab=3, seed=seed, draft_noise=draft_noise)
    expected = exact_ar(pair.target, PROMPT, LENGTH, sampling)
    return g_test(sample_sequences(pair, decoder, PROMPT, LENGTH, DISTRIBUTION_RUNS, sampling), expected)


# A draft far from the target (seed 2, noise 1.5) gives the MCSS negative control its power.
FAR_DRAFT = {"seed": 2, "draft_noise": 1.5}


@pytest.mark.parametrize("name, params, sampling, table", [
    ("specinfer", {"k_config": [2, 2]}, UNFILTERED, {}),
    ("specinfer", {"k_config": [3, 1]}, FILTERED, {}),
    ("mcss", {"k_config": [3, 2]}, UNFILTERED, FAR_DRAFT),
    ("mcss", {"k_config": [2, 2]}, FILTERED, {}),
    ("spectr", {"k": 3, "gamma": 2}, UNFILTERED, {}),
    ("spectr", {"k": 2, "gamma": 3}, FILTERED, {}),
], ids=lambda x: str(x))
def test_tree_decoders_reproduce_ar(name, params, sampling, table):
    pvalue, tv = distribution_check(build_decoder(name, **params), sampling, **table)
    assert pvalue > 1e-4, f"p={pvalue:.2e}, TV={tv:.3f}"


def test_mcss_that_never_updates_q_fails(monkeypatch):
    monkeypatch.setattr(baselines.specinfer, "remove_candidate", lambda q, token: q)
    pvalue, tv = distribution_check(build_decoder("mcss", k_config=[3, 2]), UNFILTERED, **FAR_DRAFT)
    assert pvalue < 1e-4, f"negative control passed: p={pvalue:.2e}, TV={tv:.3f}"


def test_spectr_with_rho_fixed_to_one_fails(monkeypatch):
    monkeypatch.setattr(baselines.spectr, "optimal_rho", lambda p, q, k: 1.0)
    pvalue, tv = distribution_check(build_decoder("spectr", k=3, gamma=2), UNFILTERED)
    assert pvalue < 1e-4, f"negative control passed: p={pvalue:.2e}, TV={tv:.3f}"


# ---------------------------------------------------------------- chains are SpD
@pytest.mark.parametrize("name, params", [("specinfer", {"k_config": [1, 1, 1]}), ("mcss", {"k_config": [1, 1, 1]}),
                                          ("spectr", {"k": 1, "gamma": 3})])
def test_chain_equals_spd_on_the_same_random_stream(name, params):
    # a chain tree draws its children, its uniforms (one per depth, at once) and the new token as
    # SpD draws its draft tokens, uniforms and bonus (issue 35): the same tokens, seed by seed
    pair = table_pair(vocab=5, seed=2)
    spd = build_decoder("spd", gamma=3)
    decoder = build_decoder(name, **params)
    for seed in range(200):
        a = generate(pair, spd, PROMPT, max_new_tokens=12, sampling=FILTERED, seed=seed, stop_ids=())
        b = generate(pair, decoder, PROMPT, max_new_tokens=12, sampling=FILTERED, seed=seed, stop_ids=())
        assert a.tokens == b.tokens, seed
        assert a.stats.accepted_per_position == b.stats.accepted_per_position


# ---------------------------------------------------------------- tiny transformer
@pytest.mark.parametrize("name, params", [("specinfer", {"k_config": [4, 2, 2]}), ("mcss", {"k_config": [3, 2, 2]}),
                                          ("spectr", {"k": 3, "gamma": 4})])
@pytest.mark.parametrize("runner", RUNNERS)
def test_greedy_identity(name, params, runner):
    skip_unless(runner, decoder=name)
    pair = tiny_pair(runner=runner)
    greedy = SamplingConfig(temperature=0)
    for prompt in ([1, 2, 3, 4, 5], [17], [40, 41, 9, 60, 2, 33, 8, 8]):
        ref = generate(pair, build_decoder("ar"), prompt, max_new_tokens=40, sampling=greedy)
        out = generate(pair, build_decoder(name, **params), prompt, max_new_tokens=40, sampling=greedy)
        assert out.tokens == ref.tokens
        assert out.stats.draft_accepted > 0


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_tree_node_logits_equal_path_logits(attn, runner):
    skip_unless(runner, needs=TREE_NEEDS)
    pair = tiny_pair(attn_implementation=attn, runner=runner)
    ctx = start(pair, [5, 9, 2, 7], SamplingConfig(temperature=1.0, top_k=0, top_p=1.0), seed=0)
    ctx.pair.target.feed_uncached(ctx.tokens[:2])  # part of the context cached, part not
    tree = draft_tree(ctx, [4, 2, 2], replacement=True)
    assert len(tree) == 28 and tree.q.shape[0] == tree.topology.rows == 1 + 4 + 8
    p = ctx.probs(verify_tree(ctx, tree))  # row 0 the root, row 1 + i node i
    tokens = tree.tokens.tolist()
    model, draft_model = tiny_llama_pair(0, attn_implementation=attn)  # the pair's weights, uncached
    with torch.no_grad():
        plain = model(torch.tensor([ctx.tokens])).logits[0, -1]
        torch.testing.assert_close(p[0], plain.softmax(-1), rtol=0, atol=1e-6)
        torch.testing.assert_close(tree.q[0], draft_model(torch.tensor([ctx.tokens])).logits[0, -1].softmax(-1),
                                   rtol=0, atol=1e-6)
        for node in range(len(tree)):
            seq = ctx.tokens + [tokens[i] for i in tree.path(node)]
            torch.testing.assert_close(p[1 + node], model(torch.tensor([seq])).logits[0, -1].softmax(-1),
                                       rtol=0, atol=1e-6)
            if 1 + node < tree.topology.rows:  # the draft's distributions, computed level by level with tree masks
                torch.testing.assert_close(tree.q[1 + node], draft_model(torch.tensor([seq])).logits[0, -1].softmax(-1),
                                           rtol=0, atol=1e-6)
    assert pair.target.length == len(ctx.tokens) + len(tree)
    assert pair.draft.length == len(ctx.tokens) + 4 + 8  # the last level is never fed to the draft


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("name, sampling", [("specinfer", SamplingConfig()), ("mcss", FILTERED)])
def test_kept_path_leaves_caches_consistent(runner, name, sampling, monkeypatch):
    """After a tree step, continuing with plain decoding gives uncached logits (cache crop by path),
    also when MCSS fed the target only its alive nodes (a pruned tree: other slots than the draft's)."""
    skip_unless(runner, decoder=name)
    pair = tiny_pair(runner=runner)
    decoder = build_decoder(name, k_config=[3, 2, 2])
    fed = []
    monkeypatch.setattr(baselines.specinfer, "draft_tree", lambda *a: fed.append(draft_tree(*a)) or fed[-1])
    ctx = start(pair, [3, 1, 4, 1, 5], sampling, seed=3)
    models = tiny_llama_pair(0)  # the pair's weights, run uncached
    for _ in range(6):
        block = decoder.step(ctx)
        ctx.tokens.extend(block.tokens)
        for runner, model in zip((pair.target, pair.draft), models):
            logits = runner.feed_uncached(ctx.tokens + [7], keep=1)[-1]
            with torch.no_grad():
                plain = model(torch.tensor([ctx.tokens + [7]])).logits[0, -1]
            torch.testing.assert_close(logits, plain, rtol=0, atol=1e-5)
            runner.crop(len(ctx.tokens) - 1)
    sizes = [len(tree.fed) if tree.fed is not None else len(tree) for tree in fed]
    assert len(sizes) == 6 and (min(sizes) < 3 + 6 + 12) == (name == "mcss"), sizes


@pytest.mark.parametrize("runner", ["eager", "static"])
@pytest.mark.parametrize("name", ["specinfer", "mcss", "spectr"])
def test_tree_decoders_read_the_device_twice_per_round(name, runner):
    """Issue 35: a round reads at its end (row, new token, path tokens) and, when the drafts are
    done, how many ids they support (sampling) and, for MCSS, which nodes are alive (to prune
    its tree before the target call); a greedy SpecInfer or SpecTr round reads only at its end.
    The runners read nothing."""
    pair = tiny_pair(runner=runner)
    for sampling in (SamplingConfig(), SamplingConfig(temperature=0), UNFILTERED, FILTERED):
        _, counted = measure(pair, build_decoder(name), [1, 2, 3], max_new_tokens=24, sampling=sampling)
        reads = 1 if sampling.greedy and name != "mcss" else 2
        assert counted.reads + counted.forward_reads == reads * counted.rounds, sampling


def test_mcss_survives_a_single_supported_draft_token():
    pair = table_pair(vocab=6, seed=4)
    tight = SamplingConfig(temperature=1.0, top_k=0, top_p=0.01)
    out = generate(pair, build_decoder("mcss", k_config=[4, 2, 2]), PROMPT, max_new_tokens=30, sampling=tight,
                   seed=0, stop_ids=())
    assert len(out.tokens) == 30


@pytest.mark.parametrize("name, params, message", [
    ("specinfer", {"k_config": []}, "k_config must be a non-empty list"),
    ("mcss", {"k_config": [2, 0]}, "k_config must be a non-empty list"),
    ("spectr", {"k": 0}, "k must be an integer >= 1"), ("spectr", {"gamma": 0}, "gamma must be an integer >= 1"),
])
def test_bad_parameters(name, params, message):
    with pytest.raises(ValueError, match=message):
        build_decoder(name, **params)
