"""transformers' assisted generation as a decoder (baselines/hf_assisted.py): lossless like spd
(G-test against the exact target distribution, with a lossy variant as negative control), its
rounds booked like ours, and the task's stop rule applied where transformers stops."""

import pytest
import transformers.generation.utils as hf_utils

from mtad.catalogue import build_decoder
from mtad.decoding.base import generate
from mtad.decoding.sampling import SamplingConfig

from helpers import exact_target_ar, g_test, sample_sequences, tiny_pair

PROMPT, LENGTH, RUNS = [5, 6], 2, 600
TOP3 = SamplingConfig(temperature=1.0, top_k=3, top_p=1.0)


@pytest.fixture(scope="module")
def noisy():
    """A draft whose top 3 after the prompt shares two tokens with the target's (TV 0.5): both
    rejections and the residual matter."""
    pair = tiny_pair(draft_noise=0.08)
    return pair, exact_target_ar(pair, TOP3, PROMPT, LENGTH)


def test_hf_assisted_sampling_reproduces_the_target(noisy):
    pair, expected = noisy
    counts = sample_sequences(pair, build_decoder("hf_assisted", gamma=1), PROMPT, LENGTH, RUNS, TOP3)
    pvalue, tv = g_test(counts, expected)
    assert pvalue > 1e-4, f"p={pvalue:.2e}, TV={tv:.3f}"


def test_hf_assisted_with_a_lossy_verification_fails(noisy, monkeypatch):
    """transformers' own relaxed verification (v = (p + q) / 2, DIVERSE) must be seen as lossy."""
    exact = hf_utils._speculative_sampling  # called with assistant_ensemble_weight=None: force 0.5
    monkeypatch.setattr(hf_utils, "_speculative_sampling",
                        lambda *args, **kwargs: exact(*args, **{**kwargs, "assistant_ensemble_weight": 0.5}))
    pair, expected = noisy
    counts = sample_sequences(pair, build_decoder("hf_assisted", gamma=1), PROMPT, LENGTH, RUNS, TOP3)
    pvalue, tv = g_test(counts, expected)
    assert pvalue < 1e-4, f"negative control passed: p={pvalue:.2e}, TV={tv:.3f}"


def test_rounds_are_booked_like_spd_and_the_same_seed_gives_the_same_output():
    pair = tiny_pair()
    hf = generate(pair, build_decoder("hf_assisted", gamma=4), [1, 2, 3], max_new_tokens=30, sampling=TOP3, seed=7)
    again = generate(pair, build_decoder("hf_assisted", gamma=4), [1, 2, 3], max_new_tokens=30, sampling=TOP3, seed=7)
    assert hf.tokens == again.tokens and len(hf.tokens) == 30
    s = hf.stats
    assert s.new_tokens == s.draft_accepted + s.target_calls  # every round: its accepted tokens + one of the target's
    assert s.draft_proposed == s.draft_calls and len(s.proposed_per_position) == 4  # one draft call per proposal
    assert 0 < s.draft_accepted < s.draft_proposed and s.accepted_per_position[0] <= s.proposed_per_position[0]
    assert s.target_tokens_fed > s.target_calls and s.target_seconds > 0 and s.draft_seconds > 0


def test_the_stop_rule_ends_transformers_generation_at_the_first_settling_token():
    pair = tiny_pair()
    out = generate(pair, build_decoder("hf_assisted"), [1, 2, 3], max_new_tokens=40, sampling=TOP3, seed=1,
                   settled=lambda tokens: len(tokens) >= 7)
    full = generate(pair, build_decoder("hf_assisted"), [1, 2, 3], max_new_tokens=40, sampling=TOP3, seed=1)
    assert out.stop_reason == "settled" and out.tokens == full.tokens[:7]
    assert out.stats.target_calls < full.stats.target_calls
