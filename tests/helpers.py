"""Shared pieces of the tests: toy pairs, exact AR probabilities and a G-test."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from scipy import stats

from baselines.spd import SpD
from mtad.catalogue import DECODERS
from mtad.decoding.base import Block, Context, generate
from mtad.decoding.chain import draft_chain, finish_round, verify_chain
from mtad.runners.base import Runner
from mtad.runners.catalogue import BACKENDS
from mtad.runners.pair import Pair
from mtad.decoding.sampling import SamplingConfig, draw, process, residual, uniforms
from mtad.runners.static import StaticRunner
from mtad.runners.toy_models import TableLM, tiny_llama_pair

# Sequences each table-LM G-test draws. At 5,000 every negative control fails by far (p < 1e-50: the
# weakest, MCSS that never updates q, is a TV distance of 0.08) and the suite stays short. The G
# statistic grows with n * TV^2, so MTAD_DISTRIBUTION_RUNS=20000 sees deviations half as large: use it
# after touching a decoder's acceptance math.
DISTRIBUTION_RUNS = int(os.environ.get("MTAD_DISTRIBUTION_RUNS", "5000"))


ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    """``scripts/<name>.py`` imported as the module ``name`` (scripts are not a package), registered
    in ``sys.modules``: dataclasses look their module up there."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def sample_one(probs: torch.Tensor, generator: torch.Generator) -> int:
    """One token id from ``probs`` (1-D), read to the host as the decoders read theirs before
    issue 35; the sampler itself is theirs (``sampling.draw``), so both take the same random stream."""
    return int(draw(probs, generator))


def uniform(generator: torch.Generator, device: torch.device | str) -> float:
    """One U ~ Uniform[0, 1), read to the host (the decoders draw theirs with ``sampling.uniforms``)."""
    return float(torch.rand((), generator=generator, device=device).item())


@dataclass
class LoopSpD(SpD):
    """SpD's rule position by position, reading every test to the host, as ``baselines/spd.py`` did
    before issue 35: the reference for the vectorised SpD (``upfront``: the gamma uniforms drawn at
    once, as SpD draws them since) and for SpD version 1 (one uniform per position tried)."""

    upfront: bool = False

    def step(self, ctx: Context) -> Block:
        x, q = draft_chain(ctx, self.gamma)
        p = ctx.probs(verify_chain(ctx, x))
        tokens = x.tolist()
        u = uniforms(ctx.generator, self.gamma, p.device).tolist() if self.upfront else None
        accepted = 0
        while accepted < self.gamma:
            i = accepted
            u_i = u[i] if self.upfront else uniform(ctx.generator, p.device)
            if not u_i < float(p[i, tokens[i]] / q[i, tokens[i]]):
                break
            accepted += 1
        dist = residual(p[accepted], q[accepted]) if accepted < self.gamma else p[self.gamma]
        y = sample_one(dist, ctx.generator)
        return finish_round(ctx, torch.tensor(accepted), x, torch.tensor(y))


def table_pair(vocab: int = 3, seed: int = 0, draft_noise: float = 0.8) -> Pair:
    target, draft = TableLM.random_pair(vocab, seed, draft_noise=draft_noise)
    return Pair(target, draft, name="table")


# Backends every engine and decoder test runs on: every registered one (the toy backend of
# tests/recompute_backend.py included, registered by conftest.py); a test that needs a capability
# a backend lacks skips it (``skip_unless``). The static backend's code runs eagerly here (buckets,
# padding and masks included); tests/test_static.py compiles it ("static-compiled").
RUNNERS = list(BACKENDS)
TEST_OPTIONS = {"static": {"max_length": 256, "compile": False},  # a backend's runner options in tests
                "llamacpp": {"max_length": 256, "kv_type": "f32", "threads": 1}}  # 1: xdist runs 2 workers
COARSE_BUCKETS = (1, 8, 64)  # few shapes, so few compiles, when a test compiles the static runner


def runner_of(model, runner: str = "eager", **kwargs) -> Runner:
    """The runner of backend ``runner`` around ``model``, with the tests' options; or
    "static-compiled": the static runner compiled, coarse buckets. ``mtad.runners.load.load_pair``
    builds the ones a pair config asks for."""
    if runner == "static-compiled":
        return StaticRunner(model, max_length=256, compile=True, token_buckets=COARSE_BUCKETS, **kwargs)
    return BACKENDS[runner].runner(model, **{**TEST_OPTIONS.get(runner, {}), **kwargs})


def runner_class(runner: str) -> type[Runner]:
    return BACKENDS[runner.removesuffix("-compiled")].runner_class


def skip_unless(runner: str | Pair, needs=(), quant: str = "none", decoder: str | None = None) -> None:
    """Skip the calling test unless backend ``runner`` (or both runners of a pair) has the
    capabilities ``needs`` (and those of ``decoder``) and runs the quantization ``quant``;
    tests/test_backends.py shows the refusals."""
    label = f"the runners {type(runner.target).__name__}" if isinstance(runner, Pair) else f"backend {runner}"
    if isinstance(runner, Pair):
        capabilities = runner.capabilities
        quantizations = set(runner.target.quantizations) & set(runner.draft.quantizations)
    else:
        capabilities, quantizations = runner_class(runner).capabilities, runner_class(runner).quantizations
    lacking = sorted((set(needs) | (DECODERS[decoder].needs if decoder else set())) - capabilities)
    if lacking:
        pytest.skip(f"{label}: no {', '.join(lacking)}")
    if quant not in quantizations:
        pytest.skip(f"{label}: no {quant} models")


def tiny_pair(seed: int = 0, attn_implementation: str = "sdpa", runner: str = "eager", **kwargs) -> Pair:
    target, draft = tiny_llama_pair(seed, attn_implementation=attn_implementation, **kwargs)
    return Pair(runner_of(target, runner), runner_of(draft, runner), name="tiny")


def exact_sequences(next_probs: Callable[[list[int]], torch.Tensor], prompt: list[int],
                    length: int) -> dict[tuple, float]:
    """P_AR(x_1:length | prompt) of every sequence AR sampling can emit (zero-probability ones are
    left out), grown over the support level by level; ``next_probs(context)`` is the processed
    next-token distribution after ``context``, computed without a cache."""
    frontier = {(): 1.0}
    for _ in range(length):
        grown = {}
        for seq, prob in frontier.items():
            p = next_probs(list(prompt) + list(seq))
            for token in torch.nonzero(p).flatten().tolist():
                grown[seq + (token,)] = prob * float(p[token])
        frontier = grown
    return frontier


def exact_target_ar(pair: Pair, sampling: SamplingConfig, prompt: list[int], length: int) -> dict[tuple, float]:
    """P_AR(x_1:length | prompt) of a transformer pair's target under ``sampling`` (its support
    enumerated; keep top-k small)."""
    def next_probs(context):
        with torch.inference_mode():
            return process(pair.target.model(torch.tensor([context])).logits[0, -1], sampling)

    return exact_sequences(next_probs, prompt, length)


def exact_ar(model: TableLM, prompt: list[int], length: int, sampling: SamplingConfig) -> dict[tuple, float]:
    """P_AR(x_1:length | prompt) from the table itself."""
    return exact_sequences(lambda context: process(model.logits_after(context), sampling), prompt, length)


def sample_sequences(pair: Pair, decoder, prompt: list[int], length: int, runs: int,
                     sampling: SamplingConfig, seed: int = 0) -> Counter:
    """Counts of the first ``length`` tokens over ``runs`` generations with consecutive seeds."""
    counts = Counter()
    for run in range(runs):
        out = generate(pair, decoder, prompt, max_new_tokens=length, sampling=sampling, seed=seed + run,
                       stop_ids=())
        counts[tuple(out.tokens)] += 1
    return counts


# The SpD G-test on a transformer pair (an int8 draft, the llamacpp backend): three tokens after a
# two-token prompt, top-3 sampling so the support can be enumerated, gamma 2 so rounds end inside
SPD_PROMPT, SPD_LENGTH, SPD_RUNS = [5, 6], 3, 1500
TOP3 = SamplingConfig(temperature=1.0, top_k=3, top_p=1.0)


def spd_g_test(pair: Pair, expected: dict[tuple, float]) -> tuple[float, float]:
    """(p-value, total variation) of SpD's outputs on ``pair`` against ``expected`` (the target's
    exact AR probabilities of the three tokens after ``SPD_PROMPT`` under ``TOP3``)."""
    counts = sample_sequences(pair, SpD(gamma=2), SPD_PROMPT, SPD_LENGTH, SPD_RUNS, TOP3)
    return g_test(counts, expected)


def g_test(counts: Counter, expected_probs: dict[tuple, float]) -> tuple[float, float]:
    """(p-value, total variation) of observed counts against exact cell probabilities.

    Cells with expected count < 5 are pooled into one; a count in a zero-probability cell fails.
    """
    n = sum(counts.values())
    impossible = sum(c for cell, c in counts.items() if expected_probs.get(cell, 0.0) == 0.0)
    if impossible:
        return 0.0, 1.0
    observed, expected, pooled_obs, pooled_exp = [], [], 0.0, 0.0
    for cell, p in expected_probs.items():
        if p * n >= 5:
            observed.append(counts.get(cell, 0))
            expected.append(p * n)
        else:
            pooled_obs += counts.get(cell, 0)
            pooled_exp += p * n
    if pooled_exp > 0:
        observed.append(pooled_obs)
        expected.append(pooled_exp)
    observed, expected = np.array(observed, float), np.array(expected, float)
    expected *= observed.sum() / expected.sum()
    _, pvalue = stats.power_divergence(observed, expected, lambda_="log-likelihood")
    tv = 0.5 * sum(abs(counts.get(c, 0) / n - p) for c, p in expected_probs.items())
    return float(pvalue), float(tv)
