"""The pair's cache bookkeeping and custom masks against uncached forward passes (float32), with
float weights and with int8 weights (``pair.*_quant``), on every registered backend
(helpers.RUNNERS): each test needs the capabilities it exercises and skips a backend without them.
docs/backends.md: the tests a new backend must pass."""

import pytest
import torch

from mtad.catalogue import build_decoder
from mtad.decoding.base import generate
from mtad.runners.base import KEPT_POSITIONS, ROW_SELECTION, TREE_MASKS
from mtad.runners.eager import EagerRunner
from mtad.runners.pair import Pair
from mtad.runners.quant import quantize
from mtad.runners.toy_models import TINY_VOCAB, TableLM, tiny_llama, tiny_llama_pair

from helpers import RUNNERS, runner_of, skip_unless, tiny_pair


def plain_logits(model, sequence):
    """Logits of the last position of ``sequence`` run from scratch, no cache."""
    with torch.no_grad():
        return model(torch.tensor([sequence])).logits[0, -1]


@pytest.fixture(scope="module", params=[(q, r) for q in ("none", "int8") for r in RUNNERS], ids="-".join)
def engine(request):
    """(runner of that backend around the tiny model, that model: the uncached reference), and the backend."""
    quant, kind = request.param
    skip_unless(kind, quant=quant)
    model = quantize(tiny_llama(0), quant)
    return runner_of(model, kind), model, kind


def test_feed_uncached_feeds_only_the_missing_tokens(engine):
    runner, model, _ = engine
    runner.reset()
    seq = [3, 14, 15, 9, 26]
    runner.feed_uncached(seq[:3])
    logits = runner.feed_uncached(seq)
    assert runner.length == 5 and runner.counter.calls == 2 and runner.counter.tokens == 5
    torch.testing.assert_close(logits[-1], plain_logits(model, seq), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="nothing to feed"):
        runner.feed_uncached(seq)


def test_cached_logits_equal_uncached_after_crop(engine):
    runner, model, _ = engine
    runner.reset()
    runner.feed_uncached([5, 6, 7, 8, 9])
    runner.crop(3)
    assert runner.length == 3
    logits = runner.feed_uncached([5, 6, 7, 20, 21], keep=2)
    for k, length in enumerate((4, 5)):
        torch.testing.assert_close(logits[k], plain_logits(model, [5, 6, 7, 20, 21][:length]), rtol=0, atol=1e-5)
    runner.crop(0)
    torch.testing.assert_close(runner.feed_uncached([30])[-1], plain_logits(model, [30]), rtol=0, atol=1e-5)


def test_cached_logits_equal_uncached_after_crop_and_row_selection(engine):
    runner, model, kind = engine
    skip_unless(kind, needs=[ROW_SELECTION])
    runner.reset()
    prefix = [5, 6, 7, 8]
    runner.feed_uncached(prefix)
    runner.select_rows([0, 0, 0])                         # three beams
    beams = torch.tensor([[10, 11], [20, 21], [30, 31]])
    runner.feed(beams)
    runner.select_rows([2, 0])                            # reorder and drop a beam
    logits = runner.feed(torch.tensor([[40], [41]]))[:, -1]
    torch.testing.assert_close(logits[0], plain_logits(model, prefix + [30, 31, 40]), rtol=0, atol=1e-5)
    torch.testing.assert_close(logits[1], plain_logits(model, prefix + [10, 11, 41]), rtol=0, atol=1e-5)
    runner.select_rows([1])
    runner.crop(len(prefix) + 1)                          # keep prefix + [10]
    logits = runner.feed_uncached(prefix + [10, 50, 51])
    torch.testing.assert_close(logits[-1], plain_logits(model, prefix + [10, 50, 51]), rtol=0, atol=1e-5)


def test_keep_last_returns_the_last_positions(engine):
    runner, model, _ = engine
    runner.reset()
    seq = [1, 2, 3, 4, 5, 6]
    logits = runner.feed_uncached(seq, keep=3)
    with torch.no_grad():
        full = model(torch.tensor([seq])).logits[0]
    torch.testing.assert_close(logits, full[-3:], rtol=0, atol=1e-5)


# A small tree after a 4-token context: nodes 0,1 are children of the root; 2,3 children of 0; 4 child of 1.
TREE_TOKENS = [11, 12, 21, 22, 23]
TREE_PARENTS = [-1, -1, 0, 0, 1]


def tree_inputs(context_len):
    n = len(TREE_TOKENS)
    mask = torch.zeros(n, n, dtype=torch.bool)
    depth = []
    for i, parent in enumerate(TREE_PARENTS):
        mask[i, i] = True
        if parent >= 0:
            mask[i] |= mask[parent]
        depth.append(0 if parent < 0 else depth[parent] + 1)
    return mask, torch.tensor([[context_len + d for d in depth]])


def path(i):
    out = []
    while i >= 0:
        out.insert(0, TREE_TOKENS[i])
        i = TREE_PARENTS[i]
    return out


@pytest.mark.parametrize("kind", RUNNERS)
@pytest.mark.parametrize("quant", ["none", "int8"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_tree_logits_equal_path_logits_and_keep_positions(attn, quant, kind):
    skip_unless(kind, needs=[TREE_MASKS, KEPT_POSITIONS], quant=quant)
    model = quantize(tiny_llama(0, attn_implementation=attn), quant)
    runner = runner_of(model, kind)
    context = [7, 3, 9, 4]
    runner.feed_uncached(context)
    mask, positions = tree_inputs(len(context))
    logits = runner.feed(torch.tensor([TREE_TOKENS]), positions=positions, tree_mask=mask, keep=len(TREE_TOKENS))[0]
    for i in range(len(TREE_TOKENS)):
        torch.testing.assert_close(logits[i], plain_logits(model, context + path(i)), rtol=0, atol=1e-5)
    # Keep the accepted path (nodes 1 then 4) and continue as a plain sequence.
    runner.keep_positions(list(range(len(context))) + [len(context) + 1, len(context) + 4])
    assert runner.length == len(context) + 2
    after = runner.feed_uncached(context + [12, 23, 30])
    torch.testing.assert_close(after[-1], plain_logits(model, context + [12, 23, 30]), rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", RUNNERS)
@pytest.mark.parametrize("quant", ["none", "int8"])
def test_mask_may_cover_part_of_the_cache(quant, kind):
    """A draft-tree level sees its ancestors among already cached nodes, not their siblings."""
    skip_unless(kind, needs=[TREE_MASKS], quant=quant)
    model = quantize(tiny_llama(0), quant)
    runner = runner_of(model, kind)
    context = [7, 3, 9]
    runner.feed_uncached(context)
    level1 = torch.tensor([[11, 12]])
    runner.feed(level1, positions=torch.tensor([[3, 3]]), tree_mask=torch.eye(2, dtype=torch.bool))
    # level 2: one child under each level-1 node; mask over [11, 12, child_a, child_b]
    mask = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 1]], dtype=torch.bool)
    logits = runner.feed(torch.tensor([[21, 22]]), positions=torch.tensor([[4, 4]]), tree_mask=mask, keep=2)[0]
    torch.testing.assert_close(logits[0], plain_logits(model, context + [11, 21]), rtol=0, atol=1e-5)
    torch.testing.assert_close(logits[1], plain_logits(model, context + [12, 22]), rtol=0, atol=1e-5)


def test_table_lm_reads_masks_positions_and_cache_like_a_transformer():
    target, _ = TableLM.random_pair(4, seed=1)
    context = [1, 2, 3, 0]
    target.feed_uncached(context)
    mask, positions = tree_inputs(len(context))
    tokens = [t % 4 for t in TREE_TOKENS]
    logits = target.feed(torch.tensor([tokens]), positions=positions, tree_mask=mask, keep=len(tokens))[0]
    for i in range(len(tokens)):
        node_path = [t % 4 for t in path(i)]
        assert torch.equal(logits[i], target.logits_after(context + node_path))
    with pytest.raises(ValueError, match="position id"):
        target.feed(torch.tensor([[1]]), positions=torch.tensor([[0]]), tree_mask=torch.ones(1, 1, dtype=torch.bool))


@pytest.mark.parametrize("kind", RUNNERS)
def test_counters_and_reset(kind):
    pair = tiny_pair(runner=kind)
    pair.target.feed_uncached([1, 2, 3])
    pair.target.feed(torch.tensor([[4, 5]]))
    assert pair.target.counter.calls == 2 and pair.target.counter.tokens == 5
    assert pair.target.counter.seconds > 0
    pair.reset()
    assert pair.target.counter.calls == 0 and pair.target.length == 0 and pair.draft.length == 0


def test_different_vocabularies_are_refused():
    target, _ = tiny_llama_pair(0)
    from transformers import LlamaConfig, LlamaForCausalLM

    other = LlamaForCausalLM(LlamaConfig(vocab_size=80, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=4, num_key_value_heads=2))
    with pytest.raises(ValueError, match="vocabularies differ: target has 259 ids, draft has 80"):
        Pair(EagerRunner(target), EagerRunner(other))


def test_pairs_with_different_tokenizers_are_refused():
    from mtad.runners.hf import check_same_tokenizer
    from mtad.runners.load import PairConfig
    from mtad.runners.toy_models import tiny_tokenizer

    a, b = tiny_tokenizer(), tiny_tokenizer()
    b.add_tokens(["<extra>"])
    check_same_tokenizer(a, tiny_tokenizer(), PairConfig("p", "t", "d"))
    with pytest.raises(ValueError, match="model pair 'p': target and draft tokenizers differ \\(259 vs 260 tokens\\)"):
        check_same_tokenizer(a, b, PairConfig("p", "t", "d"))


@pytest.mark.parametrize("kind", RUNNERS)
def test_head_rows_keeps_the_first_ids_and_bans_the_rest(kind):
    full, cut = runner_of(tiny_llama(0), kind), runner_of(tiny_llama(0), kind, head_rows=100)
    seq = [3, 14, 15, 92, 6, 5]
    expected = full.feed_uncached(seq, keep=2)
    logits = cut.feed_uncached(seq, keep=2)
    torch.testing.assert_close(logits[:, :100], expected[:, :100], rtol=0, atol=1e-5)
    assert torch.isneginf(logits[:, 100:]).all()

def test_a_whole_or_empty_head_is_no_cut():
    assert EagerRunner(tiny_llama(0), head_rows=TINY_VOCAB).head_rows is None  # the whole head: no slicing
    with pytest.raises(ValueError, match="head_rows must lie in"):
        EagerRunner(tiny_llama(0), head_rows=0)


class FakeEvent:
    """Stands in for ``torch.cuda.Event`` on the CPU: each is recorded 250 ms after the one before,
    and reading an elapsed time before waiting for its end fails, as on CUDA (not ready)."""

    clock_ms = 0

    def __init__(self):
        FakeEvent.clock_ms += 250
        self.at, self.waited = FakeEvent.clock_ms, False

    def synchronize(self):
        self.waited = True

    def elapsed_time(self, end):
        assert end.waited, "elapsed time read before the end event completed"
        return end.at - self.at


class EventTimedRunner(EagerRunner):
    """The eager runner timed by (fake) device events, its first forward a compile."""

    def __init__(self, model):
        super().__init__(model)
        self.events = []

    def _event(self):
        self.events.append(FakeEvent())
        return self.events[-1]

    def _forward(self, tokens, positions, mask, keep):
        self.compiling = self.counter.calls == 0
        return super()._forward(tokens, positions, mask, keep)


def test_device_timed_forwards_resolve_only_when_the_counter_is_read():
    runner = EventTimedRunner(tiny_llama(0))
    for sequence in ([1, 2, 3], [1, 2, 3, 4], [1, 2, 3, 4, 5]):
        runner.feed_uncached(sequence)
    assert len(runner.events) == 6 and not any(e.waited for e in runner.events)  # feed never waits
    assert runner.counter.calls == 3 and runner.counter.tokens == 5  # reading these waits for nothing
    assert not any(e.waited for e in runner.events) and len(runner.counter.pending) == 3
    assert runner.counter.compile_seconds == 0.25 and runner.counter.seconds == 0.5  # each pair 250 ms apart
    assert runner.counter.pending == [] and all(e.waited for e in runner.events[1::2])
    runner.feed_uncached([1, 2, 3, 4, 5, 6])
    runner.counter.seconds += 1.0  # adding (baselines/hf_assisted.py's hooks) books the pending pair first
    assert runner.counter.seconds == 1.75 and runner.counter.compile_seconds == 0.25
    runner.feed_uncached([1, 2, 3, 4, 5, 6, 7])
    runner.reset()  # a reset drops what is pending with the counter
    assert runner.counter.seconds == 0 and runner.counter.calls == 0


def test_generate_reports_device_timed_seconds():
    target, draft = tiny_llama_pair(0)
    pair = Pair(EventTimedRunner(target), EventTimedRunner(draft), name="tiny")
    out = generate(pair, build_decoder("spd", gamma=2), [1, 2, 3], max_new_tokens=8, stop_ids=())
    s = out.stats
    assert s.compile_seconds == 0.5  # each model's first forward
    assert s.target_seconds == 0.25 * (s.target_calls - 1) and s.draft_seconds == 0.25 * (s.draft_calls - 1)
