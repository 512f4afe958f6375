"""The host-work counter (mtad/job/overhead.py) and each decoder's ceiling of device reads per round.

A read (``.item()``, ``int()``/``float()``/``bool()`` of a tensor, ``.tolist()``) waits for the device
on a GPU; at batch 1 those waits between forwards decide the speed ratios (issue 35). The counts
are deterministic: ``scripts/bench_overhead.py`` prints them with the host time for every decoder,
backend and mode."""

import dataclasses
import math

import pytest
import torch

from baselines.ar import AR
from baselines.spd import SpD
from mtad.catalogue import DECODERS, build_decoder
from mtad.decoding.base import generate
from mtad.decoding.sampling import SamplingConfig
from mtad.job.overhead import measure

from helpers import tiny_pair

SAMPLING = SamplingConfig(temperature=1.0, top_k=10, top_p=0.9)
MODES = {"greedy": SamplingConfig(temperature=0.0), "sampling": SAMPLING}
PROMPT = [72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100, 33, 32, 73, 32]  # as scripts/bench_overhead.py
NEW_TOKENS = 64

# Reads per round at most, on the tiny pair (eager, PROMPT, 64 new tokens, seed 0), in both modes:
# today's counts (results/bench/overhead-baseline.json, the larger mode), rounded up. Issue 35's
# targets: the chain decoders (ar, spd, typical, mtad, mtjd) <= 1 read per round, the tree decoders
# (specinfer, mcss, spectr) <= 2, bild <= 1 per draft step + 1 (test below; its ceiling here
# bounds the average round). Lower a ceiling with the change that earns it: every chain decoder has
# reached 1 (its rounds run on the device and end in one read); the trees read their drafts'
# support before the target call (and MCSS its alive nodes), tests/test_tree_decoders.py.
READ_CEILINGS = {"ar": 1, "spd": 1, "typical": 1, "mtad": 1, "mtjd": 1,
                 "specinfer": 2, "mcss": 2, "spectr": 2, "bild": 3}


def test_every_decoder_has_a_ceiling_or_a_reason():
    # hf_assisted and llamacpp_plain run transformers' and llama.cpp's own loops, not ours
    assert set(READ_CEILINGS) | {"hf_assisted", "llamacpp_plain"} == set(DECODERS)


@pytest.fixture(scope="module")
def pair():
    return tiny_pair()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", READ_CEILINGS)
def test_reads_per_round_stay_under_the_ceiling(pair, name, mode):
    _, counted = measure(pair, build_decoder(name), PROMPT, max_new_tokens=NEW_TOKENS, sampling=MODES[mode])
    assert counted.rounds > 0 and counted.host_ops > counted.reads > 0
    assert counted.per_round("reads") <= READ_CEILINGS[name], (
        f"{name} ({mode}) reads {counted.per_round('reads'):.2f} device values per round, its ceiling is "
        f"{READ_CEILINGS[name]}")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("params", [{}, {"fallback": 0.0, "rollback": 2.0, "rollback_rule": "official"}])
def test_bild_reads_once_per_draft_step_and_once_after_the_target(pair, mode, params):
    out, counted = measure(pair, build_decoder("bild", **params), PROMPT, max_new_tokens=NEW_TOKENS,
                           sampling=MODES[mode])
    # without a fallback (fallback 0) every round drafts several tokens
    assert out.stats.draft_calls > counted.rounds if params else out.stats.draft_calls >= counted.rounds
    assert counted.reads <= out.stats.draft_calls + counted.rounds


@pytest.mark.parametrize("backend", ["eager", "static"])
@pytest.mark.parametrize("name", ["spd", "specinfer"])
def test_counts_are_the_same_in_two_runs_and_the_tokens_those_of_generate(backend, name):
    pair = tiny_pair(runner=backend)
    # a warm-up first: a process's first tree of a shape builds its cached layout (mtad/decoding/tree.py:
    # topology), host ops no later round repeats, so which test ran first must not matter
    runs = [measure(pair, build_decoder(name), PROMPT, max_new_tokens=24, sampling=SAMPLING) for _ in range(3)]
    (warm_up, _), (first, a), (second, b) = runs
    assert (a.rounds, a.host_ops, a.reads, a.forward_reads) == (b.rounds, b.host_ops, b.reads, b.forward_reads)
    plain = generate(pair, build_decoder(name), PROMPT, max_new_tokens=24, sampling=SAMPLING, stop_ids=())
    assert warm_up.tokens == first.tokens == second.tokens == plain.tokens  # counting changes nothing generated


@dataclasses.dataclass
class ReadingSpD(SpD):
    """SpD reading one more device value per round: ``.item()`` or ``.tolist()``."""

    extra: str = "item"

    def step(self, ctx):
        block = super().step(ctx)
        value = torch.ones(2, device=ctx.pair.device)
        value.tolist() if self.extra == "tolist" else value[0].item()
        return block


@pytest.mark.parametrize("extra", ["item", "tolist"])
def test_one_more_read_per_round_counts_one_more(pair, extra):
    """Negative control: the counter sees a decoder's extra read in every round."""
    plain_out, plain = measure(pair, SpD(), PROMPT, max_new_tokens=24, sampling=SAMPLING)
    more_out, more = measure(pair, ReadingSpD(extra=extra), PROMPT, max_new_tokens=24, sampling=SAMPLING)
    assert more_out.tokens == plain_out.tokens and more.rounds == plain.rounds
    assert more.reads == plain.reads + plain.rounds
    assert more.host_ops > plain.host_ops


def test_forwards_are_not_host_work(pair):
    """Ops inside a runner forward are left out: AR's round is a few dozen ops, not a model's
    hundreds, and the counter's patches are gone afterwards."""
    decoder = AR()
    _, counted = measure(pair, decoder, PROMPT, max_new_tokens=8, sampling=SAMPLING)
    # 51 since process() stopped reading the survivor count (masks over the vocabulary instead of
    # a read); a 2-layer forward alone issues hundreds
    assert counted.rounds == 8 and counted.per_round("host_ops") < 60
    assert "step" not in vars(decoder) and "_forward" not in vars(pair.target)


def test_timing_without_counting(pair):
    _, timed = measure(pair, AR(), PROMPT, max_new_tokens=8, sampling=SAMPLING, count=False)
    assert timed.rounds == 8 and timed.host_ops == timed.reads == 0
    assert timed.host_seconds > 0 and timed.forward_seconds > 0
    assert math.isfinite(timed.per_round("host_seconds"))
