"""Integration on the real embedded pair (Qwen2.5-Coder 1.5B + 0.5B, float32 on CPU).

Needs the pair prepared (`make prepare`, which `make test` runs first)."""

import pytest

from mtad.catalogue import build_decoder
from mtad.decoding import generate
from mtad.models import load_pair
from mtad.sampling import SamplingConfig


@pytest.fixture(scope="module")
def pair():
    # float32: in bfloat16 a batched verify pass can flip a near-tie that incremental decoding does not
    return load_pair("qwen2.5-coder", device="cpu", dtype="float32")


def test_pair_loads_with_both_stop_tokens(pair):
    assert pair.target.vocab_size == pair.draft.vocab_size == 151936
    assert set(pair.stop_ids) == {151643, 151645}


def test_greedy_spd_equals_greedy_ar_on_a_short_prompt(pair):
    prompt = pair.tokenizer("def fibonacci(n):\n").input_ids
    greedy = SamplingConfig(temperature=0)
    ar = generate(pair, build_decoder("ar"), prompt, max_new_tokens=24, sampling=greedy)
    spd = generate(pair, build_decoder("spd", gamma=4), prompt, max_new_tokens=24, sampling=greedy)
    assert spd.tokens == ar.tokens
    assert spd.stats.draft_accepted > 0 and spd.stats.target_calls < ar.stats.target_calls
    assert "return" in pair.tokenizer.decode(ar.tokens)
