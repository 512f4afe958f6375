"""One benchmark job: model pair x decoder x task, with warm-up and aggregated statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from mtad.decoding import GenerationStats, build_decoder, generate
from mtad.engine import Engine
from mtad.models import PairConfig, load_pair
from mtad.sampling import SamplingConfig
from tasks import build_task

_PAIRS: dict[str, Engine] = {}


def cached_pair(model_cfg: DictConfig) -> Engine:
    """Load a pair once per process: the jobs of a Hydra multirun share it."""
    spec = PairConfig(**OmegaConf.to_container(model_cfg, resolve=True))
    key = repr(spec)
    if key not in _PAIRS:
        _PAIRS.clear()  # one pair in memory at a time
        _PAIRS[key] = load_pair(spec)
    return _PAIRS[key]


@dataclass
class JobResult:
    decoder: str
    stats: GenerationStats
    quality: dict[str, float]
    samples: list[dict[str, Any]] = field(default_factory=list)


def run_job(cfg: DictConfig) -> JobResult:
    engine = cached_pair(cfg.model)
    decoder_params = OmegaConf.to_container(cfg.decoder, resolve=True)
    decoder = build_decoder(decoder_params.pop("name"), **decoder_params)
    task_params = OmegaConf.to_container(cfg.task, resolve=True)
    task = build_task(task_params.pop("name"), **task_params)
    sampling = SamplingConfig(**cfg.sampling)
    examples = task.examples(engine)

    def run(example, seed):
        return generate(engine, decoder, example.prompt_ids, max_new_tokens=cfg.max_new_tokens, sampling=sampling,
                        seed=seed)

    for _ in range(cfg.warmup):
        run(examples[0], cfg.seed)
    total = GenerationStats()
    samples, verdicts = [], []
    for i, example in enumerate(tqdm(examples, desc=f"{decoder.name} on {task.name}", leave=False)):
        out = run(example, cfg.seed + i)
        verdict = task.score(example, out.tokens, engine)
        total.add(out.stats)
        verdicts.append(verdict)
        samples.append({"id": example.id, "new_tokens": out.tokens, "stop_reason": out.stop_reason,
                        "stats": out.stats.as_dict(), "verdict": verdict})
    return JobResult(decoder.name, total, task.quality(verdicts), samples)


def stats_line(result: JobResult) -> str:
    s = result.stats
    parts = [f"{result.decoder:<6}", f"tokens={s.new_tokens}", f"tok/s={s.tokens_per_second:.1f}",
             f"block_eff={s.block_efficiency:.2f}", f"accept={s.acceptance_rate:.2f}",
             f"per_pos=[{', '.join(f'{a:.2f}' for a in s.acceptance_per_position)}]",
             f"target_calls={s.target_calls}", f"draft_calls={s.draft_calls}",
             f"target_s={s.target_seconds:.2f}", f"draft_s={s.draft_seconds:.2f}", f"wall_s={s.wall_seconds:.2f}"]
    parts += [f"{k}={v:.3f}" for k, v in result.quality.items()]
    return "  ".join(parts)
