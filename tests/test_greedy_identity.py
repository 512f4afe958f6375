"""Temperature 0: every decoder must reproduce the target's own greedy decoding token for token
(float32, tiny random pair), and that must equal transformers' generate(do_sample=False), on every
registered backend (helpers.RUNNERS) whose runners do what the decoder needs (the others are
refused: tests/test_backends.py)."""

import pytest
import torch

from mtad.catalogue import build_decoder
from mtad.decoding.base import generate
from mtad.decoding.sampling import SamplingConfig
from mtad.runners.toy_models import tiny_llama

from helpers import RUNNERS, skip_unless, tiny_pair

PROMPTS = [[1, 2, 3, 4, 5], [17], [40, 41, 9, 60, 2, 33, 8, 8], [63, 0, 12]]
NEW_TOKENS = 40
GREEDY = SamplingConfig(temperature=0)


@pytest.fixture(scope="module", params=RUNNERS)
def pair(request):
    return tiny_pair(runner=request.param)


@pytest.fixture(scope="module")
def reference():
    """Target greedy continuations from transformers' own generate() on the tiny pair's target."""
    model = tiny_llama(0)
    out = {}
    for prompt in PROMPTS:
        ids = model.generate(torch.tensor([prompt]), max_new_tokens=NEW_TOKENS, do_sample=False, min_new_tokens=NEW_TOKENS)
        out[tuple(prompt)] = ids[0, len(prompt):].tolist()
    return out


def test_ar_greedy_equals_hf_generate(pair, reference):
    for prompt in PROMPTS:
        out = generate(pair, build_decoder("ar"), prompt, max_new_tokens=NEW_TOKENS, sampling=GREEDY)
        assert out.tokens == reference[tuple(prompt)]


@pytest.mark.parametrize("params", [
    ("spd", {"gamma": 1}), ("spd", {"gamma": 2}), ("spd", {"gamma": 4}),
    ("mtad", {"width": 1, "tau": 0.5}), ("mtad", {"width": 3, "tau": 0.5}), ("mtad", {"width": 3, "tau": 0.01}),
    ("mtad", {"width": 3, "tau": 5.0}), ("mtad", {"width": 1, "gamma": 1, "tau": 0.3}),
    ("mtad", {"width": 3, "gamma": 2, "replacement": False, "accept_rule": "first_fail", "beam_norm": "repo"}),
    ("hf_assisted", {"gamma": 4}),  # transformers' own loop on the models, whatever the runner
], ids=lambda p: p[0] + ":" + ",".join(f"{k}={v}" for k, v in p[1].items()))
def test_greedy_identity(pair, reference, params):
    name, kwargs = params
    skip_unless(pair, decoder=name)
    decoder = build_decoder(name, **kwargs)
    accepted = 0
    for prompt in PROMPTS:
        out = generate(pair, decoder, prompt, max_new_tokens=NEW_TOKENS, sampling=GREEDY)
        assert out.tokens == reference[tuple(prompt)], f"{name} {kwargs} diverged on prompt {prompt}"
        accepted += out.stats.draft_accepted
    if kwargs.get("tau", 0.5) < 1:
        assert accepted > 0, "the draft never contributed: the identity would hold trivially"


@pytest.mark.parametrize("name", ["spd", "mtad"])
def test_greedy_identity_with_a_cut_draft_head(pair, reference, name):
    """A draft that can only propose ids < 128 still leaves the output equal to target greedy."""
    skip_unless(pair, decoder=name)
    pair.draft.head_rows = 128
    try:
        accepted = 0
        for prompt in PROMPTS:
            out = generate(pair, build_decoder(name), prompt, max_new_tokens=NEW_TOKENS, sampling=GREEDY)
            assert out.tokens == reference[tuple(prompt)]
            accepted += out.stats.draft_accepted
    finally:
        pair.draft.head_rows = None
    assert accepted > 0
