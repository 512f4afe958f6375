"""MTAD against closed forms and exact enumerations on the toy table LM (docs/decoders.md#mtad, #mtad-tests)."""

import itertools
import math
from collections import Counter

import pytest
import torch

from mtad.catalogue import build_decoder
from mtad.decoding.base import generate, start
from mtad.decoding.mtad import accepted_length, beam_sample
from mtad.decoding.sampling import SamplingConfig, process

from helpers import DISTRIBUTION_RUNS, g_test, sample_sequences, table_pair

UNFILTERED = SamplingConfig(temperature=1.0, top_k=0, top_p=1.0)
FILTERED = SamplingConfig(temperature=1.0, top_k=3, top_p=0.9)
PROMPT = [0, 1]


def test_longest_prefix_differs_from_first_fail():
    # cumulative log-ratios -1, -3, -0.5 against log 0.5 = -0.69: only the full block passes.
    log_ratio = torch.tensor([-1.0, -2.0, 2.5])
    assert accepted_length(log_ratio, math.log(0.5), "longest") == 3
    assert accepted_length(log_ratio, math.log(0.5), "first_fail") == 0
    assert accepted_length(torch.tensor([0.1, -5.0, 0.2]), math.log(0.5), "longest") == 1
    assert accepted_length(torch.tensor([0.0, 0.0]), math.log(1.0), "longest") == 0   # strict '>'
    assert accepted_length(torch.tensor([0.0, float("-inf"), 9.0]), math.log(0.1), "longest") == 1


def exact_mtad_w1(pair, prompt, gamma, tau, length, sampling):
    """Exact distribution of the first ``length`` tokens of MTAD with W=1 (the draft is then a
    plain sample from q), by enumerating drafts and new tokens; L is the longest passing prefix."""
    p_model, q_model = pair.target, pair.draft
    vocab = p_model.vocab_size
    out = Counter()

    def recurse(context, so_far, weight):
        remaining = length - len(so_far)
        for draft in itertools.product(range(vocab), repeat=gamma):
            q_prob, log_ratio, ctx, passing = 1.0, 0.0, list(context), []
            for token in draft:
                q = float(process(q_model.logits_after(ctx), sampling)[token])
                p = float(process(p_model.logits_after(ctx), sampling)[token])
                q_prob *= q
                log_ratio += (math.log(p) if p > 0 else -math.inf) - math.log(q) if q > 0 else 0.0
                passing.append(q > 0 and log_ratio > math.log(tau))
                ctx.append(token)
            if q_prob == 0:
                continue
            accepted = max((d + 1 for d, ok in enumerate(passing) if ok), default=0)
            block = list(draft[:accepted])
            p_next = process(p_model.logits_after(list(context) + block), sampling)
            for y in range(vocab):
                w = weight * q_prob * float(p_next[y])
                if w == 0:
                    continue
                emitted = block + [y]
                if len(emitted) >= remaining:
                    out[so_far + tuple(emitted[:remaining])] += w
                else:
                    recurse(list(context) + emitted, so_far + tuple(emitted), w)

    recurse(list(prompt), (), 1.0)
    return dict(out)


@pytest.mark.parametrize("gamma, length, sampling", [(1, 1, UNFILTERED), (1, 3, FILTERED), (2, 3, UNFILTERED)])
def test_mtad_w1_matches_closed_form(gamma, length, sampling):
    pair = table_pair(vocab=3, seed=3)
    tau = 0.5
    expected = exact_mtad_w1(pair, PROMPT, gamma, tau, length, sampling)
    assert sum(expected.values()) == pytest.approx(1.0)
    decoder = build_decoder("mtad", gamma=gamma, width=1, tau=tau)
    pvalue, tv = g_test(sample_sequences(pair, decoder, PROMPT, length, DISTRIBUTION_RUNS, sampling), expected)
    assert pvalue > 1e-4, f"p={pvalue:.2e}, TV={tv:.3f}"


def test_w1_g1_closed_form_is_not_ar():
    """The single-token closed form q*1[p/q > tau] + p*P(reject) differs from p (the test has power)."""
    pair = table_pair(vocab=3, seed=3)
    p = process(pair.target.logits_after(PROMPT), UNFILTERED)
    q = process(pair.draft.logits_after(PROMPT), UNFILTERED)
    passes = p / q > 0.5
    closed = q * passes + p * float((q * ~passes).sum())
    expected = exact_mtad_w1(pair, PROMPT, 1, 0.5, 1, UNFILTERED)
    assert [expected[(t,)] for t in range(3)] == pytest.approx(closed.tolist())
    assert 0.5 * float((closed - p).abs().sum()) > 0.05


def exact_beam_draft(pair, prompt, gamma, width, norm, sampling):
    """Exact distribution of the beam-sampling draft block (with replacement, gamma <= 2)."""
    vocab = pair.draft.vocab_size
    normalise = (lambda v: v / v.sum()) if norm == "joint" else (lambda v: v.softmax(0))
    q1 = process(pair.draft.logits_after(prompt), sampling)
    out = Counter()
    for first in itertools.product(range(vocab), repeat=width):
        w1 = float(torch.prod(q1[list(first)]))
        if w1 == 0:
            continue
        weights = normalise(q1[list(first)])
        if gamma == 1:
            out[(first[int(weights.argmax())],)] += w1
            continue
        Q = torch.stack([process(pair.draft.logits_after(prompt + [a]), sampling) for a in first])
        joint = (weights[:, None] * Q).flatten()
        pick_probs = joint / joint.sum()
        for picks in itertools.product(range(len(joint)), repeat=width):
            w2 = float(torch.prod(pick_probs[list(picks)]))
            if w2 == 0:
                continue
            best = picks[int(normalise(joint[list(picks)]).argmax())]
            out[(first[best // vocab], best % vocab)] += w1 * w2
    return dict(out)


@pytest.mark.parametrize("gamma, norm", [(2, "joint"), (2, "repo"), (1, "joint")])
def test_beam_sampling_matches_enumeration(gamma, norm):
    pair = table_pair(vocab=3, seed=5)
    width = 2
    expected = exact_beam_draft(pair, PROMPT, gamma, width, norm, UNFILTERED)
    assert sum(expected.values()) == pytest.approx(1.0)
    counts = Counter()
    for seed in range(20_000):
        ctx = start(pair, PROMPT, UNFILTERED, seed)
        counts[tuple(beam_sample(ctx, gamma, width, True, norm).tokens.tolist())] += 1
    pvalue, tv = g_test(counts, expected)
    assert pvalue > 1e-4, f"p={pvalue:.2e}, TV={tv:.3f}"


def test_beam_norms_give_different_drafts():
    pair = table_pair(vocab=3, seed=5)
    joint = exact_beam_draft(pair, PROMPT, 2, 2, "joint", UNFILTERED)
    repo = exact_beam_draft(pair, PROMPT, 2, 2, "repo", UNFILTERED)
    assert 0.5 * sum(abs(joint.get(k, 0) - repo.get(k, 0)) for k in set(joint) | set(repo)) > 0.01


@pytest.mark.parametrize("norm, always_best", [("joint", True), ("repo", False)])
def test_joint_norm_keeps_the_most_likely_beam(norm, always_best):
    pair = table_pair(vocab=6, seed=2)
    best_every_time = True
    for seed in range(300):
        ctx = start(pair, PROMPT, UNFILTERED, seed)
        draft = beam_sample(ctx, 3, 4, True, norm)
        tokens = draft.tokens.tolist()
        # the chosen beam's joint, recomputed from the table
        chosen = sum(math.log(float(process(pair.draft.logits_after(PROMPT + tokens[:i]), UNFILTERED)[t]))
                     for i, t in enumerate(tokens))
        assert chosen == pytest.approx(float(draft.log_q.sum()), abs=1e-5)
        best_every_time &= chosen >= float(draft.beam_log_q.max()) - 1e-5
    assert best_every_time == always_best


def step_blocks(pair, decoder, sampling, steps, seed=0):
    """Drive ``decoder.step`` by hand; yields (context before the step, block)."""
    ctx = start(pair, PROMPT, sampling, seed)
    for _ in range(steps):
        before = list(ctx.tokens)
        block = decoder.step(ctx)
        yield before, block
        ctx.tokens.extend(block.tokens)


@pytest.mark.parametrize("tau", [0.05, 0.5, 2.0])
def test_every_accepted_block_beats_tau_times_draft_likelihood(tau):
    pair = table_pair(vocab=6, seed=7)
    decoder = build_decoder("mtad", gamma=4, width=3, tau=tau)
    lengths = Counter()
    for context, block in step_blocks(pair, decoder, FILTERED, 400):
        log_p = log_q = 0.0
        for i in range(block.accepted):
            prefix = context + block.tokens[:i]
            log_p += math.log(float(process(pair.target.logits_after(prefix), FILTERED)[block.tokens[i]]))
            log_q += math.log(float(process(pair.draft.logits_after(prefix), FILTERED)[block.tokens[i]]))
        if block.accepted:
            assert log_p > math.log(tau) + log_q
        lengths[block.accepted] += 1
    assert len(lengths) > 1, lengths


def test_tiny_tau_accepts_every_supported_block():
    pair = table_pair(vocab=4, seed=1)
    decoder = build_decoder("mtad", gamma=3, width=2, tau=1e-30)
    for _, block in step_blocks(pair, decoder, UNFILTERED, 200):
        assert block.accepted == 3 and len(block.tokens) == 4


@pytest.mark.parametrize("replacement", [True, False])
def test_gamma_one_with_many_beams(replacement):
    pair = table_pair(vocab=6, seed=4)
    decoder = build_decoder("mtad", gamma=1, width=4, tau=0.5, replacement=replacement)
    out = generate(pair, decoder, PROMPT, max_new_tokens=50, sampling=FILTERED, seed=0, stop_ids=())
    assert len(out.tokens) == 50 and out.stats.draft_accepted > 0


def test_without_replacement_survives_a_single_supported_token():
    """top_p this small leaves one draft token: fewer beams than W, never a crash."""
    pair = table_pair(vocab=6, seed=4)
    tight = SamplingConfig(temperature=1.0, top_k=0, top_p=0.01)
    decoder = build_decoder("mtad", gamma=3, width=4, tau=0.5, replacement=False)
    out = generate(pair, decoder, PROMPT, max_new_tokens=30, sampling=tight, seed=0, stop_ids=())
    assert len(out.tokens) == 30
