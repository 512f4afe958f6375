"""Distribution tests on the toy table LM (docs/decoders.md#tablelm-order-2-table-model): lossless
decoders reproduce AR sampling over N=5 tokens (several blocks), checked by a G-test against exact
probabilities; each test has a negative control that must fail, which shows the test has power."""

import pytest

import baselines.spd
from mtad.catalogue import build_decoder
from mtad.decoding.sampling import SamplingConfig

from helpers import DISTRIBUTION_RUNS, exact_ar, g_test, sample_sequences, table_pair

PROMPT = [0, 1]
LENGTH = 5
THRESHOLD = 1e-4
FILTERED = SamplingConfig(temperature=1.0, top_k=2, top_p=0.8)   # filtering removes tokens of V=3
UNFILTERED = SamplingConfig(temperature=1.0, top_k=0, top_p=1.0)


def check(decoder, sampling, seed=0):
    pair = table_pair(vocab=3, seed=seed)
    expected = exact_ar(pair.target, PROMPT, LENGTH, sampling)
    counts = sample_sequences(pair, decoder, PROMPT, LENGTH, DISTRIBUTION_RUNS, sampling)
    return g_test(counts, expected)


@pytest.mark.parametrize("gamma", [1, 2, 3])
@pytest.mark.parametrize("sampling", [FILTERED, UNFILTERED], ids=["filtered", "unfiltered"])
def test_spd_reproduces_ar(gamma, sampling):
    pvalue, tv = check(build_decoder("spd", gamma=gamma), sampling)
    assert pvalue > THRESHOLD, f"p={pvalue:.2e}, TV={tv:.3f}"


def test_spd_with_p_instead_of_residual_fails(monkeypatch):
    monkeypatch.setattr(baselines.spd, "residual", lambda p, q: p)
    pvalue, tv = check(build_decoder("spd", gamma=2), UNFILTERED)
    assert pvalue < THRESHOLD, f"negative control passed: p={pvalue:.2e}, TV={tv:.3f}"


def test_ar_sampler_matches_exact_probabilities():
    pvalue, tv = check(build_decoder("ar"), FILTERED)
    assert pvalue > THRESHOLD, f"p={pvalue:.2e}, TV={tv:.3f}"


@pytest.mark.parametrize("width", [1, 3])
def test_mtad_with_infinite_tau_is_ar(width):
    pvalue, tv = check(build_decoder("mtad", gamma=2, width=width, tau=float("inf")), FILTERED)
    assert pvalue > THRESHOLD, f"p={pvalue:.2e}, TV={tv:.3f}"


def test_mtad_with_finite_tau_is_not_ar():
    """The same test rejects MTAD at tau = 0.5: it is lossy by design, and the test can see it."""
    pvalue, tv = check(build_decoder("mtad", gamma=2, width=3, tau=0.5), UNFILTERED)
    assert pvalue < THRESHOLD, f"p={pvalue:.2e}, TV={tv:.3f}"


def test_spd_with_a_draft_that_never_proposes_a_token_reproduces_ar():
    """A cut draft head gives some ids q = 0 (TransformersRunner.head_rows); the residual must supply them."""
    pair = table_pair(vocab=3, seed=0)
    pair.draft.table[..., 2] = float("-inf")
    expected = exact_ar(pair.target, PROMPT, LENGTH, UNFILTERED)
    counts = sample_sequences(pair, build_decoder("spd", gamma=2), PROMPT, LENGTH, DISTRIBUTION_RUNS, UNFILTERED)
    pvalue, tv = g_test(counts, expected)
    assert pvalue > THRESHOLD, f"p={pvalue:.2e}, TV={tv:.3f}"
    assert any(2 in seq for seq in counts), "token 2 never appeared: the test would not see the residual"
