"""Typical acceptance, BiLD and MTJD through their degenerate cases, and the one perplexity
function (docs/decoders.md#typical-acceptance, #bild-big-little-decoder,
#mtjd-multi-token-joint-decoding)."""

import itertools
import math

import pytest
import torch

from mtad.catalogue import build_decoder
from mtad.decoding.base import generate
from mtad.runners.pair import Pair
from mtad.job.metrics import perplexity, target_log_probs
from mtad.decoding.sampling import SamplingConfig
from mtad.runners.toy_models import TableLM

from helpers import DISTRIBUTION_RUNS, exact_ar, g_test, sample_sequences, table_pair, tiny_pair

GREEDY = SamplingConfig(temperature=0)
UNFILTERED = SamplingConfig(temperature=1.0, top_k=0, top_p=1.0)
FILTERED = SamplingConfig(temperature=1.0, top_k=2, top_p=0.8)
PROMPTS = [[1, 2, 3, 4, 5], [17], [40, 41, 9, 60, 2, 33, 8, 8]]


@pytest.fixture(scope="module")
def tiny():
    return tiny_pair()


def greedy_reference(pair, prompt, n=40):
    return generate(pair, build_decoder("ar"), prompt, max_new_tokens=n, sampling=GREEDY).tokens


def ar_distribution_check(decoder, sampling=FILTERED):
    pair = table_pair(vocab=3, seed=0)
    expected = exact_ar(pair.target, [0, 1], 5, sampling)
    return g_test(sample_sequences(pair, decoder, [0, 1], 5, DISTRIBUTION_RUNS, sampling), expected)


# ---------------------------------------------------------------- typical
def test_typical_reject_all_is_ar_sampling():
    pvalue, tv = ar_distribution_check(build_decoder("typical", gamma=2, epsilon=1.0, delta=3.0))
    assert pvalue > 1e-4, f"p={pvalue:.2e}, TV={tv:.3f}"


def test_typical_epsilon_zero_accepts_every_supported_draft_token():
    pair = table_pair(vocab=4, seed=1)
    out = generate(pair, build_decoder("typical", gamma=3, epsilon=0.0), [0, 1], max_new_tokens=40,
                   sampling=UNFILTERED, stop_ids=())
    assert out.stats.acceptance_rate == 1.0 and out.stats.block_efficiency == 4.0


def test_typical_default_is_lossy_and_accepts_some():
    pair = table_pair(vocab=4, seed=1)
    out = generate(pair, build_decoder("typical"), [0, 1], max_new_tokens=60, sampling=UNFILTERED, stop_ids=())
    assert 0 < out.stats.acceptance_rate < 1


def test_typical_greedy_identity(tiny):
    for prompt in PROMPTS:
        out = generate(tiny, build_decoder("typical", gamma=4), prompt, max_new_tokens=40, sampling=GREEDY)
        assert out.tokens == greedy_reference(tiny, prompt) and out.stats.draft_accepted > 0


# ---------------------------------------------------------------- BiLD
def test_bild_fallback_one_is_target_greedy(tiny):
    for prompt in PROMPTS:
        out = generate(tiny, build_decoder("bild", fallback=1.0), prompt, max_new_tokens=40, sampling=GREEDY)
        assert out.tokens == greedy_reference(tiny, prompt)
        assert out.stats.draft_proposed == 0


def test_bild_fallback_one_is_ar_sampling():
    pvalue, tv = ar_distribution_check(build_decoder("bild", fallback=1.0))
    assert pvalue > 1e-4, f"p={pvalue:.2e}, TV={tv:.3f}"


def test_bild_rollback_zero_fixed_is_target_greedy(tiny):
    for prompt in PROMPTS:
        out = generate(tiny, build_decoder("bild", fallback=0.0, rollback=0.0), prompt, max_new_tokens=40,
                       sampling=GREEDY)
        assert out.tokens == greedy_reference(tiny, prompt) and out.stats.draft_accepted > 0


def crafted_pair():
    """Target always prefers token 0; the draft prefers 0 except right after a 0, where it prefers 1."""
    vocab = 3
    target = torch.tensor([3.0, 0.0, 0.0]).repeat(vocab + 1, vocab + 1, 1)
    draft = target.clone()
    draft[:, 0] = torch.tensor([0.0, 3.0, 0.0])
    return Pair(TableLM(target), TableLM(draft))


def test_bild_official_rollback_rule_differs_from_greedy_on_a_crafted_case():
    pair = crafted_pair()
    greedy = greedy_reference(pair, [2], n=3)
    assert greedy == [0, 0, 0]
    fixed = generate(pair, build_decoder("bild", fallback=0.0, rollback=0.0, n_small=2, rollback_rule="fixed"),
                     [2], max_new_tokens=3, sampling=GREEDY, stop_ids=())
    official = generate(pair, build_decoder("bild", fallback=0.0, rollback=0.0, n_small=2,
                                            rollback_rule="official"), [2], max_new_tokens=3, sampling=GREEDY,
                        stop_ids=())
    assert fixed.tokens == greedy
    assert official.tokens == [0, 1, 0]  # the flagged first token equals the target's: the rollback is skipped


def test_bild_no_fallback_no_rollback_is_the_draft_with_one_target_token_every_n_small(tiny):
    n_small = 5
    prompt = [3, 9, 27]
    out = generate(tiny, build_decoder("bild", fallback=0.0, rollback=math.inf, n_small=n_small), prompt,
                   max_new_tokens=24, sampling=GREEDY)
    expected, context = [], list(prompt)
    with torch.no_grad():
        while len(expected) < 24:
            model = tiny.target.model if len(expected) % (n_small + 1) == n_small else tiny.draft.model
            token = int(model(torch.tensor([context])).logits[0, -1].argmax())
            expected.append(token)
            context.append(token)
    assert out.tokens == expected
    assert out.stats.target_calls == 4 and out.stats.draft_accepted == 20


# ---------------------------------------------------------------- MTJD
@pytest.mark.parametrize("sampling", [UNFILTERED, FILTERED])
def test_mtjd_exhaustive_block_maximises_joint_probability(sampling):
    pair = table_pair(vocab=3, seed=6)
    gamma = 3
    decoder = build_decoder("mtjd", gamma=gamma, width=3 ** (gamma - 1))
    for prompt in ([0, 1], [2, 2], [1, 0]):
        block = generate(pair, decoder, prompt, max_new_tokens=gamma, sampling=sampling, stop_ids=()).tokens
        joint = exact_ar(pair.target, prompt, gamma, sampling)
        assert joint.get(tuple(block), 0.0) == pytest.approx(max(joint.values()))
    # a narrow beam can miss the joint mode somewhere: the exhaustive width is what makes it exact
    narrow = build_decoder("mtjd", gamma=gamma, width=1)
    misses = 0
    for prompt in itertools.product(range(3), repeat=2):
        block = generate(pair, narrow, list(prompt), max_new_tokens=gamma, sampling=UNFILTERED, stop_ids=()).tokens
        joint = exact_ar(pair.target, list(prompt), gamma, UNFILTERED)
        misses += joint.get(tuple(block), 0.0) < max(joint.values()) - 1e-9
    assert misses > 0


def test_mtjd_block_length_one_is_greedy(tiny):
    for prompt in PROMPTS:
        out = generate(tiny, build_decoder("mtjd", gamma=1, width=3), prompt, max_new_tokens=40, sampling=UNFILTERED)
        assert out.tokens == greedy_reference(tiny, prompt)


def test_mtjd_keeps_caches_consistent_across_blocks(tiny):
    """Long output with beams: equals a cache-free recomputation of each block's beam search."""
    out = generate(tiny, build_decoder("mtjd", gamma=3, width=2), [5, 6, 7], max_new_tokens=12, sampling=UNFILTERED)
    context = [5, 6, 7]
    for start in range(0, 12, 3):
        ref = generate(tiny, build_decoder("mtjd", gamma=3, width=2), context, max_new_tokens=3, sampling=UNFILTERED)
        assert out.tokens[start:start + 3] == ref.tokens
        context += ref.tokens


# ---------------------------------------------------------------- perplexity
def test_target_log_probs_and_perplexity_on_a_hand_computed_case():
    table = torch.zeros(4, 4, 3)
    table[3, 0] = torch.tensor([0.0, math.log(3.0), 0.0])      # after [0]: p = (1/5, 3/5, 1/5)
    table[0, 1] = torch.tensor([math.log(2.0), 0.0, 0.0])      # after [0, 1]: p = (1/2, 1/4, 1/4)
    target = TableLM(table)
    log_probs = target_log_probs(target, [0], [1, 0])
    assert log_probs == pytest.approx([math.log(3 / 5), math.log(1 / 2)])
    assert target.length == 0
    assert perplexity([sum(log_probs) / 2, math.log(0.25)]) == pytest.approx(
        math.exp(-((math.log(0.6) + math.log(0.5)) / 2 + math.log(0.25)) / 2))


@pytest.mark.parametrize("name, params, message", [
    ("typical", {"bonus": "best"}, "bonus must be one of"), ("typical", {"gamma": 0}, "gamma must be an integer >= 1"),
    ("bild", {"fallback": 1.5}, "fallback must be a finite number in \\[0, 1\\]"),
    ("bild", {"n_small": 0}, "n_small must be an integer >= 1"),
    ("bild", {"rollback_rule": "x"}, "rollback_rule must be one of"), ("mtjd", {"width": 0}, "width must be an integer >= 1"),
])
def test_bad_parameters(name, params, message):
    with pytest.raises(ValueError, match=message):
        build_decoder(name, **params)
