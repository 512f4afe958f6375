"""The host work of a decode loop between model forwards: counted ops and device reads, and time.

At batch 1 on a GPU the forwards are short and the host work between them (sampling,
acceptance tests, bookkeeping) and every read of a device value (which waits for the device)
decide the speed ratios (issue 35). On a model that costs nearly nothing this module measures,
per round (one ``Decoder.step``):

- **host ops**: aten ops issued while no runner forward (``Runner._forward``) runs, counted with
  a ``TorchDispatchMode``: deterministic, device independent;
- **reads**: of those, the device-to-host reads: ``aten._local_scalar_dense`` (``.item()``,
  ``int()``, ``float()``, ``bool()`` of a tensor), the ops whose output shape depends on values
  (``nonzero``, ``masked_select``, ``unique``: on CUDA they wait for the device as a read does),
  plus ``Tensor.tolist`` calls (which read without dispatching an op);
- **host seconds**: the wall time of ``generate`` minus the time inside runner forwards, a separate
  run without the dispatch mode (it would slow the host work it measures). A forward's time is
  the host clock around it: on the CPU that is the forward; on CUDA, where a forward returns
  before the device runs it, host seconds also hold the waits at reads.

``scripts/bench_overhead.py`` tabulates them for every decoder; tests/test_overhead.py holds the
read ceilings.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mtad.decoding.base import Decoder, Generation, generate
from mtad.decoding.sampling import SamplingConfig
from mtad.runners.pair import Pair

READ_OPS = frozenset({torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default,
                      torch.ops.aten.masked_select.default, torch.ops.aten._unique2.default,
                      torch.ops.aten.unique_consecutive.default, torch.ops.aten.unique_dim.default})


@dataclass
class Overhead:
    """One generation's host work, in totals (``per_round`` divides by the rounds)."""

    rounds: int = 0
    host_ops: int = 0        # aten ops outside runner forwards
    reads: int = 0           # of those, scalar reads, plus tolist calls outside forwards
    forward_reads: int = 0   # reads inside runner forwards (the runners' own, not the decoder's)
    host_seconds: float = 0.0
    forward_seconds: float = 0.0

    def per_round(self, name: str) -> float:
        return getattr(self, name) / self.rounds if self.rounds else 0.0


class _Ops(TorchDispatchMode):
    """Counts every aten op and scalar read, apart inside and outside runner forwards."""

    def __init__(self, overhead: Overhead, inside: list[int]):
        super().__init__()
        self.overhead, self.inside = overhead, inside

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not self.inside[0]:
            self.overhead.host_ops += 1
            self.overhead.reads += func in READ_OPS
        else:
            self.overhead.forward_reads += func in READ_OPS
        return func(*args, **(kwargs or {}))


@contextmanager
def _counted_tolist(overhead: Overhead, inside: list[int]):
    """``Tensor.tolist`` reads a tensor without dispatching an aten op: count its calls."""
    original = torch.Tensor.tolist

    def tolist(tensor, *args, **kwargs):
        if inside[0]:
            overhead.forward_reads += 1
        else:
            overhead.reads += 1
        return original(tensor, *args, **kwargs)

    torch.Tensor.tolist = tolist
    try:
        yield
    finally:
        torch.Tensor.tolist = original


@contextmanager
def counting(overhead: Overhead, inside: list[int] | None = None):
    """Count the aten ops and reads issued while the block runs into ``overhead`` (as forward
    reads while ``inside[0]`` > 0, i.e. within a runner forward that ``measure`` watches)."""
    inside = [0] if inside is None else inside
    with _counted_tolist(overhead, inside), _Ops(overhead, inside):
        yield


@contextmanager
def _watched(pair: Pair, decoder: Decoder, overhead: Overhead, inside: list[int]):
    """Mark the runners' forwards (``inside[0]`` > 0 while one runs, its time booked) and count
    the decoder's rounds, through instance attributes removed afterwards."""
    def forward_of(original):
        def forward(*args, **kwargs):
            inside[0] += 1
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                overhead.forward_seconds += time.perf_counter() - began
                inside[0] -= 1
        return forward

    def step(ctx):
        overhead.rounds += 1
        return original_step(ctx)

    original_step = decoder.step
    runners = {id(r): r for r in (pair.target, pair.draft)}.values()  # one runner may serve both roles
    for runner in runners:
        runner._forward = forward_of(runner._forward)
    decoder.step = step
    try:
        yield
    finally:
        for runner in runners:
            del runner._forward
        del decoder.step


def measure(pair: Pair, decoder: Decoder, prompt: list[int], *, max_new_tokens: int,
            sampling: SamplingConfig = SamplingConfig(), seed: int = 0,
            count: bool = True) -> tuple[Generation, Overhead]:
    """One generation (no stop ids: always ``max_new_tokens``) and its host work: with ``count``
    the ops and reads (and no meaningful time), without it the time (and no counts)."""
    overhead, inside = Overhead(), [0]
    with _watched(pair, decoder, overhead, inside):
        began = time.perf_counter()
        if count:
            with counting(overhead, inside):
                out = generate(pair, decoder, prompt, max_new_tokens=max_new_tokens, sampling=sampling, seed=seed,
                               stop_ids=())
        else:
            out = generate(pair, decoder, prompt, max_new_tokens=max_new_tokens, sampling=sampling, seed=seed,
                           stop_ids=())
        overhead.host_seconds = time.perf_counter() - began - overhead.forward_seconds
    return out, overhead
