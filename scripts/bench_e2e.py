"""End-to-end decoding speed at the paper's shapes, without their weights (issue 35, item 4).

The paper's claims (MTAD 1.42x faster and 1.54x less energy than SpD) were measured on a GPU at
batch 1 with a Llama-3.1-8B target and a Llama-3.2-1B draft. This times every decoder end to end
on random-weight models of exactly those shapes (``--shapes llama3``: hidden sizes, layers, heads,
KV heads, intermediate sizes, vocabulary 128256, Llama-3 rope; bf16, built on the GPU itself), or
on two tiny Llamas on the CPU (``--shapes tiny``, a smoke run of the same code).

Controlled acceptance. Random weights agree on nothing, so both models are made bigram models
that agree to a chosen degree, without changing any compute:

- every layer's ``o_proj`` and ``down_proj`` are zero: the layers still run (same kernels, same
  bytes), but add nothing to the residual stream, so a model's logits after token x are
  head(norm(embed(x))): a bigram model;
- both models share one rank-r structure: embed rows sqrt(hidden) * u_x (unit vectors u in the
  first r dimensions), a head that gives logits tau * z_y(x), z_y(x) = sqrt(r) (s * u_y) . u_x
  (s: fixed signs, so that the next token is not the current one; the tied draft gets them
  through its final norm's weight), with tau set so the mean top-1 probability after T=1,
  top-k 10, top-p 0.9 is ``TOP1`` (neither one-hot nor flat);
- the target's head gets noise: logits tau * (z + sigma * eps) / sqrt(1 + sigma^2), eps ~ N(0, 1)
  per (token, context). sigma is bisected until SpD's expected per-token acceptance meets each
  ``--acceptance``: the mean of sum_x min(p(x | c), q(x | c)) over the contexts c that SpD tests,
  found by running SpD's accept/reject chain on the bigram distributions directly (no decoding:
  chains from random contexts, as long as a generation, since the acceptance drifts as a chain
  leaves its random start).

The SpD runs then measure the acceptance reached (``token_acceptance``: accepted draft tokens over
draft tokens tested, the per-token rate the calibration aims at), printed beside the request.

Runs: for each acceptance level, ``--prompts`` random prompts of ``--prompt-length`` tokens, each
decoded by every decoder in turn (``--max-new-tokens``, no stop tokens, T=1 top-k 10 top-p 0.9,
seed = prompt index), after one untimed warm-up generation per decoder (compiles; compile time
is kept out of the wall time in any case). ``--time-limit``: no new prompt starts after that many
seconds since the start (the JSON records how many ran). Per decoder: tokens/s (min and median
over prompts, and total), speed-up vs AR, block efficiency, acceptance per draft position, ms
per round (one ``Decoder.step``) split into target forwards, draft forwards (the runners'
counters: CUDA events on a GPU, the host clock on the CPU) and host (the rest of the wall time);
ms per forward call of each model; the forward-only limit new_tokens / (target + draft seconds)
(the same rounds with no host time; for AR, about one over a one-token target forward: the
prompt's forward is in both) and the loop efficiency, achieved / limit; J/token
from NVML (``--meter``, mtad/job/energy.py; null where no meter reads, never estimated).

The JSON (``--out``) holds the environment, the settings, the calibration of each level and the
rows; it is rewritten after every prompt, so a run cut short keeps what it measured.

    PYTHONPATH=. python scripts/bench_e2e.py                     # GPU: 8B/1B shapes, all decoders
    PYTHONPATH=. python scripts/bench_e2e.py --shapes tiny       # CPU smoke run (static backend, compiled)
    PYTHONPATH=. python scripts/bench_e2e.py --decoders ar,spd,mtad --acceptance 0.8 --time-limit 300
    bash scripts/device_check.sh                                 # the GPU session's one call (its header)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from mtad.catalogue import DECODERS, build_decoder
from mtad.decoding.base import GenerationStats
from mtad.decoding.sampling import SamplingConfig, process
from mtad.errors import UserError, one_line_errors
from mtad.job.energy import METERS, build_meter
from mtad.job.overhead import measure
from mtad.job.records import environment, write_atomic
from mtad.runners.catalogue import BACKENDS
from mtad.runners.catalogue import backend as backend_named
from mtad.runners.pair import DRAFT_ROOM, Pair
from mtad.runners.toy_models import LLAMA3_SHAPES, random_llama

SAMPLING = SamplingConfig(temperature=1.0, top_k=10, top_p=0.9)
DEFAULT_SKIPPED = ("hf_assisted", "llamacpp_plain")  # transformers' and llama.cpp's own loops, not ours: only when asked for
TOP1 = 0.5           # mean top-1 probability of the processed bigram distributions (sets tau)
BISECTIONS = 10
SPD_GAMMA = DECODERS["spd"]().gamma  # the draft length of the SpD whose acceptance is calibrated


@dataclass(frozen=True)
class Preset:
    target: dict          # LlamaConfig fields
    draft: dict
    dtype: torch.dtype
    rank: int             # r of the shared bigram structure
    prompts: int
    max_new_tokens: int
    prompt_length: int
    max_length: int       # the static backend's KV positions
    chains: int           # calibration: simulated SpD chains (each as long as a generation)


_TINY = dict(vocab_size=1024, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
             bos_token_id=None, eos_token_id=None, pad_token_id=None)
PRESETS = {
    "llama3": Preset(LLAMA3_SHAPES["llama-3.1-8b"], LLAMA3_SHAPES["llama-3.2-1b"], torch.bfloat16, rank=64,
                     prompts=4, max_new_tokens=128, prompt_length=128, max_length=2048, chains=512),
    "tiny": Preset(dict(_TINY, hidden_size=64, intermediate_size=128, num_hidden_layers=2, tie_word_embeddings=False),
                   dict(_TINY, hidden_size=32, intermediate_size=64, num_hidden_layers=1, tie_word_embeddings=True),
                   torch.float32, rank=16, prompts=8, max_new_tokens=32, prompt_length=16, max_length=512, chains=64),
}


# -- the models: bigram models that agree to a chosen degree -------------------------------------

def draw(probs: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One token per row of ``probs`` [N, V], by inverse CDF (torch.multinomial is slow on the CPU)."""
    u = torch.rand(probs.shape[0], 1, generator=gen, device=probs.device) * probs.sum(-1, keepdim=True)
    return torch.searchsorted(probs.cumsum(-1), u).squeeze(-1).clamp_(max=probs.shape[-1] - 1)


def bigram_logits(model, tokens: torch.Tensor) -> torch.Tensor:
    """Logits [N, V] after each of ``tokens`` [N]: what the full model gives after a sequence ending
    in that token, once its layers add nothing (``make_bigram``)."""
    inner = model.model
    with torch.inference_mode():
        return model.lm_head(inner.norm(inner.embed_tokens(tokens)))


class BigramPair:
    """Target and draft made bigram models over one shared rank-r structure (module docstring);
    ``set_sigma`` sets the noise of the target's head."""

    def __init__(self, target, draft, rank: int, seed: int, walks: tuple[int, int] = (512, 32)):
        self.target, self.draft, self.rank, self.walks = target, draft, rank, walks
        device = target.lm_head.weight.device
        vocab = target.config.vocab_size
        gen = torch.Generator().manual_seed(seed)
        u = torch.randn(vocab, rank, generator=gen)
        self.u = (u / u.norm(dim=-1, keepdim=True)).to(device)                  # unit rows
        self.signs = (torch.randint(0, 2, (rank,), generator=gen) * 2 - 1).float().to(device)
        self.eps = torch.randn(vocab, rank, generator=gen).to(device)           # the target head's noise
        self.tau, self.sigma = 1.0, 0.0
        with torch.no_grad():
            for model in (target, draft):
                for layer in model.model.layers:
                    layer.self_attn.o_proj.weight.zero_()
                    layer.mlp.down_proj.weight.zero_()
                embed = model.model.embed_tokens.weight
                embed.zero_()
                embed[:, :rank] = self.u * math.sqrt(model.config.hidden_size)  # rms 1 after the norm's eps
            if draft.lm_head.weight.data_ptr() != draft.model.embed_tokens.weight.data_ptr():
                draft.lm_head.weight.zero_()
            target.lm_head.weight.zero_()
        self.set_tau(1.0)

    def set_tau(self, tau: float) -> None:
        """Both models' logits become tau * z (and the target's noise keeps its sigma)."""
        self.tau = tau
        d, r = self.draft, self.rank
        hidden = d.config.hidden_size
        with torch.no_grad():
            if d.config.tie_word_embeddings:  # head = embed: the signs and tau go into the final norm
                d.model.norm.weight.fill_(1.0)
                d.model.norm.weight[:r] = self.signs * tau * math.sqrt(r) / hidden
            else:
                d.model.norm.weight.fill_(1.0)
                d.lm_head.weight[:, :r] = self.signs * self.u * tau * math.sqrt(r) / math.sqrt(hidden)
        self.set_sigma(self.sigma)

    def set_sigma(self, sigma: float) -> None:
        self.sigma = sigma
        t, r = self.target, self.rank
        scale = self.tau * math.sqrt(r) / math.sqrt(t.config.hidden_size)
        head = (self.signs * self.u + sigma * self.eps / math.sqrt(r)) * (scale / math.sqrt(1 + sigma ** 2))
        with torch.no_grad():
            t.lm_head.weight[:, :r] = head.to(t.lm_head.weight.dtype)

    def walk_stats(self, seed: int, steps: int | None = None) -> dict:
        """SpD run on the bigram distributions themselves, no model forward: ``walks`` = (chains,
        steps), that many chains from uniform random contexts (like random prompts' last tokens),
        each step one draft token drawn from q and tested against p (accepted: it is the next
        context; rejected: the residual's token is; after ``SPD_GAMMA`` acceptances a free bonus
        from p). Returns ``acceptance``: the mean of sum_x min(p, q) over the contexts tested (the
        expected acceptance of each test, so a smooth function of sigma); ``overlap``: the same over
        all contexts visited; the mean top-1 probabilities of p and q."""
        chains, walk_steps = self.walks
        steps = steps or walk_steps
        device = self.target.lm_head.weight.device
        gen = torch.Generator(device).manual_seed(seed)
        context = torch.randint(0, self.target.config.vocab_size, (chains,), generator=gen, device=device)
        position = torch.zeros(chains, dtype=torch.long, device=device)  # accepted so far this round
        tested = expected = overlap = top_p = top_q = 0.0
        for _ in range(steps):
            p = process(bigram_logits(self.target, context), SAMPLING)
            q = process(bigram_logits(self.draft, context), SAMPLING)
            agree = torch.minimum(p, q).sum(-1)
            test = position < SPD_GAMMA
            tested += float(test.sum())
            expected += float(agree[test].sum())
            overlap += float(agree.mean())
            top_p += float(p.max(-1).values.mean())
            top_q += float(q.max(-1).values.mean())
            x = draw(q, gen)
            accept = torch.rand(chains, generator=gen, device=device) * q.gather(-1, x[:, None])[:, 0] \
                < p.gather(-1, x[:, None])[:, 0]
            residual = (p - q).clamp(min=0)
            residual = torch.where(residual.sum(-1, keepdim=True) > 0, residual, p)
            context = torch.where(test, torch.where(accept, x, draw(residual, gen)), draw(p, gen))
            position = torch.where(test & accept, position + 1, 0)
        return {"acceptance": expected / tested, "overlap": overlap / steps, "top1_target": top_p / steps,
                "top1_draft": top_q / steps}

    def calibrate_tau(self, seed: int) -> list[dict]:
        """tau such that the draft's mean top-1 probability is ``TOP1`` (bisection on log tau)."""
        low, high, trace = 0.25, 64.0, []
        for _ in range(BISECTIONS):
            tau = math.sqrt(low * high)
            self.set_tau(tau)
            stats = self.walk_stats(seed, steps=8)  # sigma 0: p = q, the contexts matter little
            trace.append({"tau": tau, **stats})
            low, high = (tau, high) if stats["top1_draft"] < TOP1 else (low, tau)
        self.set_tau(math.sqrt(low * high))
        return trace

    def calibrate_sigma(self, acceptance: float, seed: int) -> tuple[dict, list[dict]]:
        """sigma whose estimated acceptance is ``acceptance``: doubling, then bisection (the same
        walks' seed each time, so the estimate is a smooth function of sigma)."""
        trace = []

        def at(sigma):
            self.set_sigma(sigma)
            stats = self.walk_stats(seed)
            trace.append({"sigma": sigma, **stats})
            return stats["acceptance"]

        low, high = 0.0, 0.25
        while at(high) > acceptance:
            low, high = high, 2 * high
            if high > 1e3:
                raise RuntimeError(f"no sigma brings the acceptance down to {acceptance}")
        for _ in range(BISECTIONS):
            mid = (low + high) / 2
            low, high = (mid, high) if at(mid) > acceptance else (low, mid)
        sigma = (low + high) / 2
        self.set_sigma(sigma)
        return {"sigma": sigma, **self.walk_stats(seed)}, trace


def bigram_check(model, vocab: int, device) -> float:
    """Max |full forward's last logits - bigram_logits(last token)| on a random 8-token sequence:
    0 up to rounding when the layers add nothing."""
    tokens = torch.randint(0, vocab, (1, 8), device=device)
    with torch.inference_mode():
        full = model(tokens).logits[0, -1].float()
    return float((full - bigram_logits(model, tokens[0, -1:])[0].float()).abs().max())


# -- measuring ----------------------------------------------------------------------------------

def token_acceptance(stats: GenerationStats) -> float | None:
    """Accepted draft tokens over draft tokens tested: position d is tested in every round that
    reached it (d = 0: every round that drafted; d > 0: those that accepted position d - 1)."""
    proposed, accepted = stats.proposed_per_position, stats.accepted_per_position
    if not proposed or not proposed[0]:
        return None
    tested = proposed[0] + sum(accepted[d - 1] for d in range(1, len(proposed)) if proposed[d])
    return sum(accepted) / tested if tested else None


def row_of(runs: list[dict], ar_tokens_per_second: float | None) -> dict:
    """A decoder's row from its timed generations (each {stats, rounds, joules})."""
    total = GenerationStats()
    for run in runs:
        total.add(GenerationStats.from_dict(run["stats"]))
    rounds = sum(run["rounds"] for run in runs)
    per_prompt = [run["stats"]["new_tokens"] / run["stats"]["wall_seconds"] for run in runs]
    tps = total.new_tokens / total.wall_seconds if total.wall_seconds else 0.0
    forwards = total.target_seconds + total.draft_seconds
    limit = total.new_tokens / forwards if forwards else None
    joules = [run["joules"] for run in runs]
    energy = None if any(j is None for j in joules) else sum(joules)
    ms = lambda seconds: 1e3 * seconds / rounds if rounds else None  # noqa: E731
    return {
        "prompts": len(runs),
        "new_tokens": total.new_tokens,
        "tokens_per_second": {"total": tps, "min": min(per_prompt), "median": statistics.median(per_prompt)},
        "speedup_vs_ar": tps / ar_tokens_per_second if ar_tokens_per_second else None,
        "block_efficiency": total.block_efficiency,
        "acceptance_rate": total.acceptance_rate,
        "token_acceptance": token_acceptance(total),
        "acceptance_per_position": total.acceptance_per_position,
        "rounds": rounds,
        "ms_per_round": {"wall": ms(total.wall_seconds), "target": ms(total.target_seconds),
                         "draft": ms(total.draft_seconds),
                         "host": ms(total.wall_seconds - total.target_seconds - total.draft_seconds)},
        "ms_per_call": {"target": 1e3 * total.target_seconds / total.target_calls if total.target_calls else None,
                        "draft": 1e3 * total.draft_seconds / total.draft_calls if total.draft_calls else None},
        "limit_tokens_per_second": limit,
        "loop_efficiency": tps / limit if limit else None,
        "joules_per_token": energy / total.new_tokens if energy is not None and total.new_tokens else None,
        "compile_seconds": total.compile_seconds,
        "totals": total.as_dict(),
    }


def fmt(value, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(level: dict) -> None:
    print(f"| decoder | tok/s | min | median | x AR | BE | acc/token | acc per position | ms/round | target | "
          f"draft | host | limit tok/s | loop eff | J/token |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, row in level["decoders"].items():
        t, ms = row["tokens_per_second"], row["ms_per_round"]
        positions = "/".join(f"{a:.2f}" for a in row["acceptance_per_position"]) or "-"
        print(f"| {name} | {t['total']:.1f} | {t['min']:.1f} | {t['median']:.1f} | {fmt(row['speedup_vs_ar'])} | "
              f"{row['block_efficiency']:.2f} | {fmt(row['token_acceptance'])} | {positions} | {fmt(ms['wall'])} | "
              f"{fmt(ms['target'])} | {fmt(ms['draft'])} | {fmt(ms['host'])} | {fmt(row['limit_tokens_per_second'], '.1f')} | "
              f"{fmt(row['loop_efficiency'])} | {fmt(row['joules_per_token'], '.3f')} |", flush=True)


# -- the command -------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="llama3", help=f"one of {', '.join(PRESETS)} (default: %(default)s)")
    parser.add_argument("--decoders", help=f"comma-separated (default: all but {', '.join(DEFAULT_SKIPPED)})")
    parser.add_argument("--backend", default="static", help=f"one of {', '.join(BACKENDS)} (default: %(default)s)")
    parser.add_argument("--acceptance", default="0.8,0.6", help="SpD per-token acceptances to calibrate to, "
                        "comma-separated, each in (0, 1) (default: %(default)s)")
    parser.add_argument("--prompts", type=int, help="prompts per level (default: the preset's)")
    parser.add_argument("--max-new-tokens", type=int, help="default: the preset's")
    parser.add_argument("--prompt-length", type=int, help="default: the preset's")
    parser.add_argument("--max-length", type=int, help="static KV positions (default: the preset's)")
    parser.add_argument("--device", default="auto", help="auto: cuda when available, else cpu")
    parser.add_argument("--meter", default="auto", help=f"energy meter: {', '.join(METERS)} (default: %(default)s)")
    parser.add_argument("--time-limit", type=float, help="seconds since the start after which no new prompt starts")
    parser.add_argument("--seed", type=int, default=0, help="weights, bigram structure, prompts, calibration walks")
    parser.add_argument("--out", help="default: results/bench/e2e-<shapes>.json")
    return parser.parse_args(argv)


def settings_of(args: argparse.Namespace) -> dict:
    """The run's settings, every refusal (one ``UserError``) before any work."""
    if args.shapes not in PRESETS:
        raise UserError(f"unknown --shapes {args.shapes!r} (known: {', '.join(PRESETS)})")
    preset = PRESETS[args.shapes]
    backend = backend_named(args.backend)
    names = [n for n in (args.decoders or "").split(",") if n] if args.decoders is not None else \
        [n for n in DECODERS if n not in DEFAULT_SKIPPED]
    if not names:
        raise UserError("--decoders names no decoder")
    for name in names:
        build_decoder(name)  # an unknown name: one line listing the known ones
        backend.require(DECODERS[name].needs, f"decoder {name!r}")
    if len(set(names)) != len(names):
        raise UserError(f"--decoders names a decoder twice: {args.decoders}")
    try:
        levels = [float(a) for a in args.acceptance.split(",")]
    except ValueError:
        raise UserError(f"--acceptance must be comma-separated numbers, got {args.acceptance!r}") from None
    outside = [a for a in levels if not 0 < a < 1]
    if outside or not levels:
        raise UserError(f"--acceptance values must lie in (0, 1), got {args.acceptance!r}")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device here")
    if args.shapes == "llama3" and device.type != "cuda" and args.device == "auto":
        raise UserError("--shapes llama3 needs a GPU (16 GB of bf16 weights at 8B); on the CPU use --shapes tiny "
                        "(or --device cpu to insist)")
    devices = backend.runner_class.devices
    if devices is not None and device.type not in devices:
        raise UserError(f"backend {args.backend} runs on {', '.join(devices)}, not {device}")
    if args.meter not in METERS:
        raise UserError(f"unknown --meter {args.meter!r} (known: {', '.join(METERS)})")
    settings = {
        "shapes": args.shapes, "backend": args.backend, "decoders": names, "acceptance": levels,
        "prompts": args.prompts if args.prompts is not None else preset.prompts,
        "max_new_tokens": args.max_new_tokens if args.max_new_tokens is not None else preset.max_new_tokens,
        "prompt_length": args.prompt_length if args.prompt_length is not None else preset.prompt_length,
        "max_length": args.max_length if args.max_length is not None else preset.max_length,
        "device": str(device), "meter": args.meter, "time_limit": args.time_limit, "seed": args.seed,
        "sampling": dataclasses.asdict(SAMPLING), "dtype": str(preset.dtype).removeprefix("torch."),
        "rank": preset.rank, "top1": TOP1, "calibration_chains": preset.chains,
        "target_shape": preset.target, "draft_shape": preset.draft,
    }
    for key in ("prompts", "max_new_tokens", "prompt_length", "max_length"):
        if settings[key] < 1:
            raise UserError(f"--{key.replace('_', '-')} must be >= 1, got {settings[key]}")
    if args.backend == "static" and settings["prompt_length"] + settings["max_new_tokens"] + DRAFT_ROOM > \
            settings["max_length"]:
        raise UserError(f"a {settings['prompt_length']}-token prompt plus {settings['max_new_tokens']} new tokens "
                        f"(and {DRAFT_ROOM} for drafts) exceed --max-length {settings['max_length']}")
    if args.time_limit is not None and args.time_limit <= 0:
        raise UserError(f"--time-limit must be > 0 seconds, got {args.time_limit}")
    return settings


def build_pair(settings: dict, seed: int) -> tuple[Pair, BigramPair, dict]:
    preset, device = PRESETS[settings["shapes"]], torch.device(settings["device"])
    began = time.perf_counter()
    target = random_llama(preset.target, device, preset.dtype, seed=seed)
    draft = random_llama(preset.draft, device, preset.dtype, seed=seed + 1)
    bigram = BigramPair(target, draft, preset.rank, seed, (preset.chains, settings["max_new_tokens"]))
    built = time.perf_counter() - began
    tau_trace = bigram.calibrate_tau(seed)
    checks = {name: bigram_check(model, preset.target["vocab_size"], device)
              for name, model in (("target", target), ("draft", draft))}
    backend = BACKENDS[settings["backend"]]
    options = {"max_length": settings["max_length"]} if settings["backend"] == "static" else {}
    pair = Pair(backend.runner(target, **options), backend.runner(draft, **options), name=f"e2e-{settings['shapes']}")
    info = {"build_seconds": built, "tau": bigram.tau, "tau_calibration": tau_trace,
            "bigram_check_max_abs_diff": checks,
            "weight_bytes": {name: sum(p.numel() * p.element_size() for p in {id(p): p for p in m.parameters()}.values())
                             for name, m in (("target", target), ("draft", draft))}}
    return pair, bigram, info


def main(argv=None) -> dict:
    args = parse_args(argv)
    with one_line_errors():
        settings = settings_of(args)
        device = torch.device(settings["device"])
        meter = build_meter(settings["meter"], [device])
    started = time.perf_counter()
    out = Path(args.out or f"results/bench/e2e-{settings['shapes']}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    results = {"what": "end-to-end decoding at controlled acceptance (scripts/bench_e2e.py)",
               "environment": environment(), "settings": settings, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
               "energy": {"source": meter.source}, "levels": []}

    def elapsed() -> float:
        return time.perf_counter() - started

    def save() -> None:
        results["seconds"] = elapsed()
        write_atomic(out, json.dumps(results, indent=1) + "\n")

    def out_of_time() -> bool:
        return settings["time_limit"] is not None and elapsed() > settings["time_limit"]

    print(f"building {settings['shapes']} target and draft on {device} ...", flush=True)
    pair, bigram, info = build_pair(settings, args.seed)
    results["models"] = info
    results["energy"]["idle_watts"] = meter.idle_watts(1.0) if meter.source != "none" else None
    print(f"built in {info['build_seconds']:.1f} s; tau {info['tau']:.3f}; bigram check (max |logit diff|) "
          f"{info['bigram_check_max_abs_diff']}; energy meter: {meter.source}", flush=True)
    save()

    vocab = PRESETS[settings["shapes"]].target["vocab_size"]
    prompt_gen = torch.Generator().manual_seed(args.seed)
    prompts = [torch.randint(0, vocab, (settings["prompt_length"],), generator=prompt_gen).tolist()
               for _ in range(settings["prompts"] + 1)]  # the first one: the warm-ups'
    decoders = {name: build_decoder(name) for name in settings["decoders"]}
    run = dict(max_new_tokens=settings["max_new_tokens"], sampling=SAMPLING, count=False)
    warmed: dict[str, float] = {}

    for acceptance in settings["acceptance"]:
        level = {"requested_acceptance": acceptance, "prompts_run": 0, "stopped_by_time_limit": False,
                 "decoders": {}}
        results["levels"].append(level)
        if out_of_time():
            level["stopped_by_time_limit"] = True
            print(f"acceptance {acceptance}: not started, past --time-limit", flush=True)
            save()
            continue
        calibrated, trace = bigram.calibrate_sigma(acceptance, args.seed)
        level.update(sigma=calibrated["sigma"], estimated_acceptance=calibrated["acceptance"],
                     top1_target=calibrated["top1_target"], top1_draft=calibrated["top1_draft"],
                     sigma_calibration=trace)
        print(f"acceptance {acceptance}: sigma {calibrated['sigma']:.4f}, estimated acceptance "
              f"{calibrated['acceptance']:.4f} (top-1 target {calibrated['top1_target']:.2f}, "
              f"draft {calibrated['top1_draft']:.2f})", flush=True)
        for name, decoder in decoders.items():  # warm-ups: the shapes compile here, untimed
            if name not in warmed:
                out_, _ = measure(pair, decoder, prompts[0], seed=0, **run)
                warmed[name] = out_.stats.compile_seconds
                print(f"  warm-up {name}: compile {warmed[name]:.1f} s", flush=True)
        level["warmup_compile_seconds"] = dict(warmed)
        runs: dict[str, list[dict]] = {name: [] for name in decoders}
        for k, prompt in enumerate(prompts[1:]):
            if out_of_time():
                level["stopped_by_time_limit"] = True
                break
            for name, decoder in decoders.items():
                before = meter.joules()
                generation, overhead = measure(pair, decoder, prompt, seed=k, **run)
                after = meter.joules()
                runs[name].append({"stats": generation.stats.as_dict(), "rounds": overhead.rounds or 1,
                                   "joules": None if before is None else after - before})
            level["prompts_run"] = k + 1
            ar = runs.get("ar")
            ar_tps = (sum(r["stats"]["new_tokens"] for r in ar) / sum(r["stats"]["wall_seconds"] for r in ar)
                      if ar else None)
            level["decoders"] = {name: row_of(r, ar_tps) for name, r in runs.items()}
            spd, mtad = level["decoders"].get("spd"), level["decoders"].get("mtad")
            level["measured_acceptance"] = spd["token_acceptance"] if spd else None
            if spd and mtad:  # the paper's claim: 1.42x faster, 1.54x less energy
                level["mtad_vs_spd"] = {
                    "speedup": mtad["tokens_per_second"]["total"] / spd["tokens_per_second"]["total"],
                    "energy_ratio": (spd["joules_per_token"] / mtad["joules_per_token"]
                                     if spd["joules_per_token"] and mtad["joules_per_token"] else None)}
            print(f"  prompt {k + 1}/{len(prompts) - 1} done ({elapsed():.0f} s)", flush=True)
            save()
        if level["decoders"]:
            print(f"acceptance {acceptance} (sigma {level['sigma']:.4f}; SpD measured "
                  f"{fmt(level['measured_acceptance'], '.3f')}), {level['prompts_run']} prompts x "
                  f"{settings['max_new_tokens']} tokens, backend {settings['backend']}, {device}:", flush=True)
            print_table(level)
            if "mtad_vs_spd" in level:
                ratio = level["mtad_vs_spd"]["energy_ratio"]
                energy = "no energy meter" if ratio is None else f"{ratio:.2f}x less energy per token"
                print(f"  mtad vs spd: {level['mtad_vs_spd']['speedup']:.2f}x tokens/s, {energy} "
                      "(paper: 1.42x faster, 1.54x less energy)", flush=True)
        if level["stopped_by_time_limit"]:
            print(f"  stopped by --time-limit after {level['prompts_run']} prompts", flush=True)
        save()
    meter.close()
    save()
    print(f"wrote {out} ({elapsed():.0f} s)", flush=True)
    return results


if __name__ == "__main__":
    main()
