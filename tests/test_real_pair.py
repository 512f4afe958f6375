"""Integration on the real embedded pair (Qwen2.5-Coder 1.5B + 0.5B, float32 on CPU).

Needs the pair prepared (`make prepare`, which `make test` runs first)."""

import pytest

from mtad.catalogue import build_decoder
from mtad.decoding.base import generate
from mtad.runners.load import load_pair
from mtad.decoding.sampling import SamplingConfig


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


def test_a_task_stop_rule_cuts_ar_and_spd_at_the_same_token_and_only_shortens(pair):
    from tasks.catalogue import build_task

    task = build_task("humaneval", limit=24)
    example = task.examples(pair.info)[23]  # strlen: a one-line body
    rule = task.stop_rule(example, pair.info)
    greedy = SamplingConfig(temperature=0)
    full = generate(pair, build_decoder("ar"), example.prompt_ids, max_new_tokens=40, sampling=greedy)
    ar = generate(pair, build_decoder("ar"), example.prompt_ids, max_new_tokens=40, sampling=greedy, settled=rule)
    spd = generate(pair, build_decoder("spd", gamma=4), example.prompt_ids, max_new_tokens=40, sampling=greedy,
                   settled=rule)
    assert ar.stop_reason == spd.stop_reason == "settled" and spd.tokens == ar.tokens
    assert len(ar.tokens) < len(full.tokens) and full.tokens[:len(ar.tokens)] == ar.tokens
    passed = [task.score(example, [tokens], pair.info)["passed"] for tokens in (ar.tokens, full.tokens)]
    assert passed[0] == passed[1]


@pytest.fixture(scope="module")
def gguf_pair():
    """The same pair's Q4_K_M GGUF files run by llama.cpp (pair.backend=llamacpp), as a CPU user
    runs them; one thread, since the tests run two workers on two cores."""
    from mtad.runners.catalogue import LlamaCpp
    from mtad.runners.load import pair_config

    pair = LlamaCpp.load(pair_config("qwen2.5-coder", backend="llamacpp", threads=1))
    for runner in (pair.target, pair.draft):
        assert runner.path.name == "model.gguf" and runner.vocab_size == 151936
    return pair


@pytest.fixture(scope="module")
def gguf_greedy_ar(gguf_pair):
    """llama.cpp's greedy AR (our loop on the llamacpp runners) on the first five HumanEval prompts."""
    from tasks.catalogue import build_task

    greedy = SamplingConfig(temperature=0)
    examples = build_task("humaneval", limit=5).examples(gguf_pair.info)
    return [(example, generate(gguf_pair, build_decoder("ar"), example.prompt_ids, max_new_tokens=32,
                               sampling=greedy).tokens) for example in examples]


@pytest.mark.parametrize("name, params", [("spd", {"gamma": 4}), ("mtad", {"tau": float("inf")}),
                                          ("specinfer", {})], ids=["spd", "mtad-inf", "specinfer"])
def test_llamacpp_decoders_equal_its_own_greedy_ar_on_humaneval(gguf_pair, gguf_greedy_ar, name, params):
    """On the GGUF files every exact decoder emits llama.cpp's own greedy AR tokens on the first
    five HumanEval prompts, and the draft contributes."""
    greedy = SamplingConfig(temperature=0)
    accepted = 0
    for example, ar in gguf_greedy_ar:
        out = generate(gguf_pair, build_decoder(name, **params), example.prompt_ids, max_new_tokens=32,
                       sampling=greedy)
        assert out.tokens == ar, f"{name} diverged from llama.cpp's greedy AR on {example.id}"
        accepted += out.stats.draft_accepted
    assert accepted > 0


def test_llamacpp_plain_equals_our_greedy_ar_on_humaneval(gguf_pair, gguf_greedy_ar):
    """llama.cpp's own generation (its loop, its sampler) of the target file emits our AR's tokens."""
    greedy = SamplingConfig(temperature=0)
    for example, ar in gguf_greedy_ar:
        plain = generate(gguf_pair, build_decoder("llamacpp_plain"), example.prompt_ids, max_new_tokens=32,
                         sampling=greedy)
        assert plain.tokens == ar, f"llama.cpp's own generation differs from our AR on {example.id}"
