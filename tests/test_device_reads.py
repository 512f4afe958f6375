"""Rounds that stay on the device (issue 35): the chain decoders read a device value once per round
(the tree decoders: tests/test_tree_decoders.py; every decoder's ceiling: tests/test_overhead.py), since on a GPU every read (``.item()``, ``int()`` of a tensor, ``.tolist()``) waits for
all queued work. Counted on CPU, where the same reads go through the same operator."""

import pytest
import torch

from mtad.catalogue import build_decoder
from mtad.decoding.base import generate
from mtad.decoding.sampling import SamplingConfig
from mtad.job.overhead import Overhead, counting, measure

from helpers import LoopSpD, sample_one, table_pair, tiny_pair, uniform

SAMPLINGS = [SamplingConfig(), SamplingConfig(temperature=0), SamplingConfig(temperature=0.7, top_k=0, top_p=1.0),
             SamplingConfig(top_k=0, top_p=0.8), SamplingConfig(top_k=5, top_p=1.0)]
DECODERS = [("ar", {}), ("spd", {"gamma": 1}), ("spd", {"gamma": 4}), ("typical", {}),
            ("typical", {"bonus": "argmax"}), ("typical", {"bonus": "typical"})]


def reads_per_round(pair, decoder, sampling) -> float:
    """Every device read of a generation, the runners' own included, per round (mtad/job/overhead.py)."""
    _, counted = measure(pair, decoder, [1, 2, 3], max_new_tokens=24, sampling=sampling, seed=0)
    return (counted.reads + counted.forward_reads) / counted.rounds


@pytest.fixture(scope="module", params=["eager", "static"])
def pair(request):
    # the transformers backends; tests/recompute_backend.py's toy reads its tokens by design
    return tiny_pair(runner=request.param)


@pytest.mark.parametrize("sampling", SAMPLINGS, ids=str)
@pytest.mark.parametrize("name, kwargs", DECODERS)
def test_chain_decoders_read_the_device_once_per_round(pair, name, kwargs, sampling):
    assert reads_per_round(pair, build_decoder(name, **kwargs), sampling) == 1


def test_the_counter_sees_every_kind_of_read():
    t = torch.tensor([1.0, 2.0])
    reads = Overhead()
    with counting(reads):
        t[0].item(), int(t[0]), float(t[1]), bool(t[0] > 0), t.tolist()
        sample_one(t, torch.Generator().manual_seed(0))
        uniform(torch.Generator().manual_seed(0), "cpu")
    assert reads.reads == 7


def test_a_decoder_that_reads_per_position_is_caught(pair):
    assert reads_per_round(pair, LoopSpD(gamma=4), SamplingConfig()) > 2


@pytest.mark.parametrize("sampling", [SamplingConfig(), SamplingConfig(temperature=1.0, top_k=0, top_p=1.0)], ids=str)
def test_spd_on_the_device_equals_its_rule_position_by_position(sampling):
    # the same random stream (gamma uniforms at once), the same tokens: cumprod, the residual row
    # and the bonus picked by index are SpD's loop
    pair = table_pair(vocab=5, seed=2)
    for gamma in (1, 3):
        for seed in range(100):
            a = generate(pair, build_decoder("spd", gamma=gamma), [0, 1], max_new_tokens=12, sampling=sampling, seed=seed, stop_ids=())
            b = generate(pair, LoopSpD(gamma=gamma, upfront=True), [0, 1], max_new_tokens=12, sampling=sampling, seed=seed, stop_ids=())
            assert a.tokens == b.tokens, (gamma, seed)
            assert a.stats.accepted_per_position == b.stats.accepted_per_position
