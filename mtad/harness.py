"""One benchmark job: model pair x decoder x task, with warm-up, records and a summary."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from mtad.decoding import GenerationStats, build_decoder, generate
from mtad.engine import Engine
from mtad.metrics import perplexity, target_log_probs
from mtad.models import PairConfig, load_pair
from mtad.records import JobRecorder
from mtad.sampling import SamplingConfig
from tasks import build_task

TIMING = "tokens_per_second = total emitted tokens / total generate() seconds (ratio of sums), after warm-up"

_PAIRS: dict[str, Engine] = {}


def cached_pair(model_cfg: dict) -> Engine:
    """Load a pair once per process: the jobs of a Hydra multirun share it."""
    spec = PairConfig(**model_cfg)
    key = repr(spec)
    if key not in _PAIRS:
        _PAIRS.clear()  # one pair in memory at a time
        _PAIRS[key] = load_pair(spec)
    return _PAIRS[key]


def run_job(cfg: DictConfig, out_dir: Path, sweep: str | None = None) -> dict:
    """Run every example of the task with the decoder; write records; return the summary."""
    config = OmegaConf.to_container(cfg, resolve=True)
    decoder_params = dict(config["decoder"])
    decoder = build_decoder(decoder_params.pop("name"), **decoder_params)
    task_params = dict(config["task"])
    task = build_task(task_params.pop("name"), **task_params)
    sampling = SamplingConfig(**config["sampling"])
    recorder = JobRecorder(Path(out_dir), Path(config["results_dir"]), config)
    engine = cached_pair(config["model"])
    examples = task.examples(engine)

    def run(example, seed):
        return generate(engine, decoder, example.prompt_ids, max_new_tokens=cfg.max_new_tokens, sampling=sampling,
                        seed=seed)

    for _ in range(cfg.warmup):
        run(examples[0], cfg.seed)
    total = GenerationStats()
    verdicts, mean_log_probs = [], []
    for i, example in enumerate(tqdm(examples, desc=f"{decoder.name} on {task.name}", leave=False)):
        out = run(example, cfg.seed + i)
        verdict = task.score(example, out.tokens, engine)
        log_probs = target_log_probs(engine.target, example.prompt_ids, out.tokens)
        if log_probs:
            mean_log_probs.append(sum(log_probs) / len(log_probs))
        total.add(out.stats)
        verdicts.append(verdict)
        recorder.sample({"id": example.id, "prompt_tokens": len(example.prompt_ids), "new_tokens": out.tokens,
                         "stop_reason": out.stop_reason, "stats": out.stats.as_dict(), "verdict": verdict,
                         "target_log_prob_mean": mean_log_probs[-1] if log_probs else None})
    quality = task.quality(verdicts)
    if mean_log_probs:
        quality["target_ppl"] = perplexity(mean_log_probs)
    return recorder.finish({
        "sweep": sweep, "task": task.name, "model": engine.name, "decoder": decoder.name,
        "decoder_params": decoder_params, "seed": cfg.seed, "sampling": config["sampling"],
        "max_new_tokens": cfg.max_new_tokens, "examples": len(examples),
        "tokens_per_second": total.tokens_per_second, "block_efficiency": total.block_efficiency,
        "acceptance_rate": total.acceptance_rate, "acceptance_per_position": total.acceptance_per_position,
        "quality": quality, "totals": total.as_dict(), "timing": TIMING,
    })
