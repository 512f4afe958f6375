"""The static backend (mtad/runners/static.py) compiled: cache edits against uncached logits, greedy
identity of every exact decoder against transformers' generate(), SpD's output distribution with
its negative control, no recompilation after warm-up, compile time kept out of tokens/s, and its
errors. The same runner's code runs uncompiled through every engine and decoder test
(helpers.RUNNERS); here it is compiled once per module with coarse buckets (each is a compile)."""

import pytest
import torch

import baselines.spd
from mtad.catalogue import build_decoder
from mtad.decoding.base import generate
from mtad.errors import UserError
from mtad.runners.load import PairConfig, load_pair
from mtad.decoding.sampling import SamplingConfig
from mtad.runners.catalogue import BACKENDS
from mtad.runners.static import StaticRunner, additive_mask, bucket

from helpers import COARSE_BUCKETS, exact_target_ar, g_test, sample_sequences, tiny_pair

GREEDY = SamplingConfig(temperature=0)
EXACT = [("ar", {}), ("spd", {"gamma": 4}), ("mtad", {"width": 3, "tau": 0.5}), ("typical", {}),
         ("specinfer", {"k_config": [2, 2]}), ("mcss", {"k_config": [2, 2]}), ("spectr", {"k": 2, "gamma": 3})]
PROMPTS = [[1, 2, 3, 4, 5], [40, 41, 9, 60, 2, 33, 8, 8]]


@pytest.fixture(scope="module")
def compiled():
    return tiny_pair(runner="static-compiled")


def plain_logits(model, sequence):
    with torch.no_grad():
        return model(torch.tensor([sequence])).logits[0, -1]


def test_buckets():
    assert [bucket(n, (1, 8, 64)) for n in (1, 2, 8, 9, 64, 65)] == [1, 8, 8, 64, 64, None]


def test_compiled_cache_edits_equal_uncached_logits(compiled):
    runner = compiled.target
    runner.reset()
    prefix = [5, 6, 7, 8]
    runner.feed_uncached(prefix)
    assert runner.counter.compile_seconds > 0 and runner.counter.seconds == 0  # a first call compiles
    runner.select_rows([0, 0, 0])
    runner.feed(torch.tensor([[10, 11], [20, 21], [30, 31]]))
    runner.select_rows([2, 0])
    logits = runner.feed(torch.tensor([[40], [41]]))[:, -1]
    torch.testing.assert_close(logits[0], plain_logits(runner.model, prefix + [30, 31, 40]), rtol=0, atol=1e-5)
    torch.testing.assert_close(logits[1], plain_logits(runner.model, prefix + [10, 11, 41]), rtol=0, atol=1e-5)
    runner.select_rows([1])
    runner.crop(len(prefix) + 1)
    logits = runner.feed_uncached(prefix + [10, 50, 51])
    torch.testing.assert_close(logits[-1], plain_logits(runner.model, prefix + [10, 50, 51]), rtol=0, atol=1e-5)
    # a tree over the cache, then its path kept
    mask = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.bool)
    context = prefix + [10, 50, 51]
    n = len(context)
    logits = runner.feed(torch.tensor([[60, 61, 62]]), positions=torch.tensor([[n, n + 1, n]]), tree_mask=mask,
                         keep=3)[0]
    for i, path in enumerate(([60], [60, 61], [62])):
        torch.testing.assert_close(logits[i], plain_logits(runner.model, context + path), rtol=0, atol=1e-5)
    runner.keep_positions(list(range(n)) + [n + 2])
    logits = runner.feed_uncached(context + [62, 70])
    torch.testing.assert_close(logits[-1], plain_logits(runner.model, context + [62, 70]), rtol=0, atol=1e-5)


@pytest.mark.parametrize("params", EXACT, ids=lambda p: p[0])
def test_compiled_greedy_identity(compiled, params):
    name, kwargs = params
    accepted = 0
    for prompt in PROMPTS:
        reference = compiled.target.model.generate(torch.tensor([prompt]), max_new_tokens=30, do_sample=False,
                                                   min_new_tokens=30)[0, len(prompt):].tolist()
        out = generate(compiled, build_decoder(name, **kwargs), prompt, max_new_tokens=30, sampling=GREEDY,
                       stop_ids=())
        assert out.tokens == reference, f"{name} on the compiled static runner diverged on {prompt}"
        accepted += out.stats.draft_accepted
    assert name == "ar" or accepted > 0


@pytest.mark.parametrize("compile", [False, True])
def test_attended_span_grows_with_the_cache(compile):
    """On the CPU a forward attends over the cache rounded up to SPAN slots: logits stay those of
    the uncached model as the cache crosses a span boundary (and past it, after a crop back)."""
    from mtad.runners.static import SPAN
    from mtad.runners.toy_models import tiny_llama

    model = tiny_llama(seed=2)
    runner = StaticRunner(model, max_length=2 * SPAN, compile=compile, token_buckets=COARSE_BUCKETS)
    sequence = [(7 * i) % 50 + 1 for i in range(SPAN - 6)]
    runner.feed_uncached(sequence)  # a prompt: uncompiled
    for step in range(10):  # one token at a time across slot SPAN: spans SPAN, then 2 * SPAN
        sequence.append(step + 3)
        torch.testing.assert_close(runner.feed_uncached(sequence)[-1], plain_logits(model, sequence),
                                   rtol=0, atol=1e-5)
    runner.crop(SPAN - 2)  # back under the boundary, then a 3-token block across it
    sequence = sequence[: SPAN - 2] + [4, 5, 6]
    torch.testing.assert_close(runner.feed_uncached(sequence, keep=3), torch.stack(
        [plain_logits(model, sequence[:k]) for k in range(SPAN - 1, SPAN + 2)]), rtol=0, atol=1e-5)


def test_no_recompiles_after_warm_up_and_compile_time_kept_apart(compiled):
    from torch._dynamo.utils import counters

    decoder = build_decoder("spd", gamma=3)
    generate(compiled, decoder, [9, 9, 9], max_new_tokens=24, seed=0, stop_ids=())  # warm-up
    graphs = counters["stats"]["unique_graphs"]
    for seed in range(1, 4):
        out = generate(compiled, decoder, [9, 9, 9], max_new_tokens=24, seed=seed, stop_ids=())
        assert out.stats.compile_seconds == 0.0
        assert out.stats.wall_seconds >= out.stats.target_seconds + out.stats.draft_seconds
    assert counters["stats"]["unique_graphs"] == graphs, "a warm sweep recompiled"


PROMPT, LENGTH, RUNS = [5, 6], 3, 1500
TOP3 = SamplingConfig(temperature=1.0, top_k=3, top_p=1.0)


@pytest.fixture(scope="module")
def noisy_compiled():
    pair = tiny_pair(runner="static-compiled", draft_noise=0.1)
    return pair, exact_target_ar(pair, TOP3, PROMPT, LENGTH)


def test_compiled_spd_reproduces_the_target(noisy_compiled):
    pair, expected = noisy_compiled
    pvalue, tv = g_test(sample_sequences(pair, build_decoder("spd", gamma=2), PROMPT, LENGTH, RUNS, TOP3), expected)
    assert pvalue > 1e-4, f"p={pvalue:.2e}, TV={tv:.3f}"


def test_compiled_spd_with_p_instead_of_the_residual_fails(noisy_compiled, monkeypatch):
    pair, expected = noisy_compiled
    monkeypatch.setattr(baselines.spd, "residual", lambda p, q: p)
    pvalue, tv = g_test(sample_sequences(pair, build_decoder("spd", gamma=2), PROMPT, LENGTH, RUNS, TOP3), expected)
    assert pvalue < 1e-4, f"negative control passed: p={pvalue:.2e}, TV={tv:.3f}"


def test_bad_backend_and_too_long_prompts_are_one_line_errors():
    with pytest.raises(UserError) as err:
        PairConfig("tiny", "tiny-llama/target", "tiny-llama/draft", backend="fast")
    assert str(err.value) == f"pair.backend must be one of {', '.join(BACKENDS)}, got 'fast'"
    assert "eager, static" in str(err.value)
    assert PairConfig("q", "a", "b", backend="static", draft_quant="int8").label == "q+draft-int8+static"
    pair = load_pair("tiny", backend="static", max_length=100)
    assert pair.name == "tiny+static" and isinstance(pair.target, StaticRunner)
    with pytest.raises(UserError, match="exceeds the static KV cache of 100 positions: raise pair.max_length"):
        generate(pair, build_decoder("spd"), list(range(30)), max_new_tokens=20)
    with pytest.raises(UserError, match="the static KV cache holds 100 positions and this forward needs 101"):
        pair.target.feed(torch.zeros(1, 101, dtype=torch.long))


def test_unsupported_architectures_are_refused():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50))
    with pytest.raises(UserError, match="supports llama, qwen2 models, not 'gpt2'"):
        StaticRunner(model, compile=False)


def host_mask(tree_mask, start, n, n_pad, span, dtype):
    """The mask as the static runner built it on the host before version 2 (the reference)."""
    allowed = torch.zeros(n_pad, span, dtype=torch.bool)
    allowed[:, :start] = True
    if tree_mask is None:
        allowed[:n, start:start + n] = torch.ones(n, n, dtype=torch.bool).tril()
    else:
        m = tree_mask.shape[1]
        allowed[:n, start + n - m:start + n] = tree_mask.to("cpu", torch.bool)
    allowed[n:] = allowed[n - 1]
    return torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)[None, None]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_device_built_mask_equals_the_host_built_one(dtype):
    generator = torch.Generator().manual_seed(0)
    ids = torch.arange(512)
    cases = 0
    for start in (0, 1, 7, 100, 250):
        for n in (1, 2, 3, 5, 8, 13):
            for n_pad in {n, n + 1, 2 * n + 3, 16}:
                if n_pad < n:
                    continue
                span = -(-(start + n_pad) // 64) * 64
                expected = host_mask(None, start, n, n_pad, span, dtype)
                assert torch.equal(additive_mask(None, start, n, n_pad, span, dtype, ids), expected)
                for m in {n, min(start + n, n + 2), start + n}:  # the tree over part of (or the whole) cache
                    tree = torch.rand(n, m, generator=generator) < 0.5
                    tree[torch.arange(n), m - n + torch.arange(n)] = True  # each token sees itself
                    expected = host_mask(tree, start, n, n_pad, span, dtype)
                    assert torch.equal(additive_mask(tree, start, n, n_pad, span, dtype, ids), expected)
                    cases += 1
    assert cases > 100


def test_stacked_cache_edits_equal_per_layer_indexing():
    """select_rows and keep_positions gather all layers' keys and values at once: the same
    buffers as indexing every layer's keys and values apart (the runner before version 2), from
    index lists or index tensors, without a device read."""
    from mtad.job.overhead import Overhead, counting
    from mtad.runners.toy_models import tiny_llama

    runner = StaticRunner(tiny_llama(seed=3), max_length=64, compile=False)
    kv = runner.static.kv
    kv.copy_(torch.randn(kv.shape, generator=torch.Generator().manual_seed(1)))
    runner._length, runner._rows = 20, 3
    per_layer = [[kv[i, j].clone() for j in range(2)] for i in range(kv.shape[0])]
    edits = [("select_rows", [2, 0, 0, 1]), ("keep_positions", list(range(5)) + [9, 7, 12]),
             ("select_rows", torch.tensor([3, 1])), ("keep_positions", torch.tensor([0, 1, 2, 6, 4]))]
    for i, (edit, index) in enumerate(edits):
        ops = Overhead()
        with counting(ops):
            getattr(runner, edit)(index)
        assert ops.reads == 0 and (ops.host_ops <= 8 or isinstance(index, list)), (edit, ops)
        index = torch.as_tensor(index)
        for buffers in per_layer:
            for buffer in buffers:
                if edit == "select_rows":
                    buffer[: len(index), :, :20 if i == 0 else 8] = buffer[index, :, :20 if i == 0 else 8]
                else:
                    buffer[: runner._rows, :, : len(index)] = buffer[: runner._rows, :, index]
        assert torch.equal(kv, torch.stack([torch.stack(buffers) for buffers in per_layer]))
    assert (runner.length, runner._rows) == (5, 2)
    rows = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0, 1])  # more rows than allocated: new buffers, contents kept
    runner.select_rows(rows)
    assert runner.static.kv.shape[2] == 16 and runner.static.kv is not kv
    assert torch.equal(runner.static.kv[:, :, :9, :, :5], kv[:, :, rows, :, :5])


@pytest.mark.parametrize("head_rows", [None, 37])
def test_the_head_inside_the_forward_gives_the_heads_logits(head_rows):
    """head_in_graph (the default on CUDA: the head inside the CUDA graph) runs here uncompiled:
    the same logits as the head applied to the kept positions (up to the float rounding of a
    product over more rows), in the same dtype, with -inf past ``head_rows``, and a copy: the
    next forward of the same bucket leaves them alone."""
    from mtad.runners.toy_models import tiny_llama

    model = tiny_llama(seed=4)
    runners = [StaticRunner(model, head_rows=head_rows, max_length=64, compile=False, head_in_graph=inside)
               for inside in (False, True)]
    assert not runners[0].head_in_graph and runners[1].head_in_graph
    feeds = [dict(tokens=torch.tensor([[1, 2, 3, 4, 5]]), keep=2),
             dict(tokens=torch.tensor([[6, 7, 8]]), positions=torch.tensor([[5, 6, 5]]),
                  tree_mask=torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.bool), keep=3)]
    outputs = [[runner.feed(**kwargs) for kwargs in feeds] for runner in runners]
    for plain, inside in zip(*outputs):
        assert plain.dtype == inside.dtype and plain.shape == inside.shape
        torch.testing.assert_close(inside, plain, rtol=0, atol=1e-5)
        if head_rows is not None:
            assert torch.isneginf(inside[..., head_rows:]).all() and torch.isfinite(inside[..., :head_rows]).all()
    runner, kept = runners[1], outputs[1][1].clone()
    runner.crop(5)
    runner.feed(torch.tensor([[9, 9, 9]]), keep=3)  # the same bucket
    assert torch.equal(outputs[1][1], kept)
