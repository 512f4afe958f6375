"""One benchmark job: model pair x decoder x task, with warm-up, records and a summary."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from mtad.catalogue import build_decoder
from mtad.decoding.base import GenerationStats, generate
from mtad.job.energy import build_meter
from mtad.runners.pair import Pair
from mtad.job.metrics import perplexity, target_log_probs
from mtad.runners.load import PairConfig, load_pair
from mtad.errors import UserError
from mtad.judging.clients import JudgeUnavailable, build_judge
from mtad.job.records import JobRecorder, update_summary, update_verdicts, write_atomic
from mtad.decoding.sampling import SAMPLING_VERSION, SamplingConfig
from mtad.job.wandb_log import log_job
from mtad.runners.catalogue import backend
from tasks.catalogue import build_task

# What the harness measures (timing, energy, per-generation statistics, perplexity): bump with
# any change to how these are measured. With the decoder's, the task's, the backend's and those of
# the shared code that generates (sampling, quantization, matmuls), it is part of the run id.
HARNESS_VERSION = 1
TIMING = "tokens_per_second = total emitted tokens / total generate() seconds (ratio of sums), after warm-up"
ENERGY = "joules over the timed generate() calls, idle power included (idle_watts says how much to subtract)"

_PAIRS: dict[str, Pair] = {}


def cached_pair(pair_cfg: dict) -> Pair:
    """Load a pair once per process: the jobs of a Hydra multirun share it."""
    spec = PairConfig(**pair_cfg)
    key = repr(spec)
    if key not in _PAIRS:
        _PAIRS.clear()  # one pair in memory at a time
        _PAIRS[key] = load_pair(spec)
    return _PAIRS[key]


class Job:
    """One run: model pair x decoder x task, with its records. ``run_job`` runs one alone;
    ``mtad.job.interleave`` runs several on one loaded pair, taking turns example by example."""

    def __init__(self, cfg: DictConfig, out_dir: Path, sweep: str | None = None):
        self.cfg, self.sweep = cfg, sweep
        self.config = OmegaConf.to_container(cfg, resolve=True)
        self.decoder_params = dict(self.config["decoder"])
        self.decoder = build_decoder(self.decoder_params.pop("name"), **self.decoder_params)
        task_params = dict(self.config["task"])
        self.task = build_task(task_params.pop("name"), **task_params)
        self.judge = build_judge(self.config.get("judge"))
        if self.judge is not None:
            require_judged(self.task)  # before anything is generated
        self.sampling = SamplingConfig(**self.config["sampling"])
        # The pair config is checked (backend name, device, quantizations) and the backend asked
        # whether its runners do all the decoder needs, before any model loads.
        pair_backend = backend(PairConfig(**self.config["pair"]).backend)
        pair_backend.require(self.decoder.needs, f"decoder {self.decoder.name!r}")
        versions = {"harness": HARNESS_VERSION, "decoder": self.decoder.version, "task": self.task.version,
                    "sampling": SAMPLING_VERSION, **pair_backend.code_versions()}
        self.recorder = JobRecorder(Path(out_dir), Path(self.config["results_dir"]), self.config, versions,
                                    resume=cfg.resume)
        self.examples: list = []
        self.resumed = 0  # examples an earlier try recorded

    def finished_before(self) -> dict:
        """The summary of this run as completed before (graded now if a judge was asked for)."""
        summary = self.recorder.finished
        print(f"run {self.recorder.run_id} finished before ({summary['output_dir']}); not run again "
              "(resume=false reruns it)", flush=True)
        if self.judge is not None:  # its saved answers can still be graded
            summary = judge_job(Path(summary["output_dir"]), self.judge, self.task)
        write_atomic(self.recorder.out_dir / "summary.json", json.dumps(summary, indent=2, default=str))
        return summary

    def todo(self, pair: Pair) -> list[tuple[int, object]]:
        """(index, example) of the examples not recorded yet; a prompt too long for a static
        cache stops the job before any work."""
        self.examples = self.task.examples(pair.info)
        for example in self.examples:
            pair.check_fits(len(example.prompt_ids), self.cfg.max_new_tokens)
        todo = [(i, example) for i, example in enumerate(self.examples) if example.id not in self.recorder.done]
        self.resumed = len(self.examples) - len(todo)
        return todo

    def warm_up(self, pair: Pair) -> None:
        for _ in range(self.cfg.warmup):
            generate(pair, self.decoder, self.examples[0].prompt_ids, max_new_tokens=self.cfg.max_new_tokens,
                     sampling=self.sampling, seed=self.cfg.seed)

    def run(self, pair: Pair, i: int, example, meter) -> None:
        self.recorder.sample(run_example(pair, self.decoder, self.task, example, self.sampling,
                                         self.cfg.max_new_tokens, self.cfg.seed + i, meter))

    def finish(self, pair: Pair, meter, idle_watts) -> dict:
        """The summary from every example's record; written, logged and graded as configured."""
        records = [self.recorder.done[example.id] for example in self.examples]
        total = GenerationStats()
        for record in records:
            total.add(GenerationStats.from_dict(record["stats"]))
        joules = [record["energy_joules"] for record in records]
        energy_joules = None if None in joules else sum(joules)
        quality = self.task.quality([record["verdict"] for record in records])
        mean_log_probs = [r["target_log_prob_mean"] for r in records if r["target_log_prob_mean"] is not None]
        if mean_log_probs:
            quality["target_ppl"] = perplexity(mean_log_probs)
        recorder, decoder = self.recorder, self.decoder
        self.task.write_outputs(recorder.out_dir, [record["verdict"] for record in records],
                                model_id=f"{pair.name}-{decoder.name}-{recorder.run_id[:8]}")
        summary = recorder.finish({
            "sweep": self.sweep, "task": self.task.name, "pair": pair.name, "decoder": decoder.name,
            "decoder_params": self.decoder_params, "seed": self.cfg.seed, "sampling": self.config["sampling"],
            "max_new_tokens": self.cfg.max_new_tokens, "examples": len(self.examples),
            "resumed_examples": self.resumed,
            "tokens_per_second": total.tokens_per_second, "block_efficiency": total.block_efficiency,
            "acceptance_rate": total.acceptance_rate, "acceptance_per_position": total.acceptance_per_position,
            "energy_source": meter.source if energy_joules is not None else "none", "energy_joules": energy_joules,
            "joules_per_token": energy_joules / total.new_tokens if energy_joules is not None and total.new_tokens
            else None,
            "idle_watts": idle_watts, "quality": quality, "totals": total.as_dict(), "timing": TIMING,
            "energy": ENERGY,
        })
        if self.judge is not None:
            summary = judge_job(recorder.out_dir, self.judge, self.task)
        if self.config.get("logger", {}).get("name", "none") != "none":
            log_job(summary, records, recorder.out_dir, self.config["logger"])
        return summary


def run_job(cfg: DictConfig, out_dir: Path, sweep: str | None = None) -> dict:
    """Run the examples of the task that this run (same config, same run id) has not recorded
    yet; write records; return the summary. A run already in the results store is not rerun."""
    job = Job(cfg, out_dir, sweep)
    if job.recorder.finished:
        return job.finished_before()
    job.task.preflight()  # before the models load
    pair = cached_pair(job.config["pair"])
    todo = job.todo(pair)
    with closing(build_meter(cfg.meter, [pair.target.device, pair.draft.device])) as meter:
        idle_watts = meter.idle_watts(cfg.meter_idle_seconds)
        if todo:
            job.warm_up(pair)
        for i, example in tqdm(todo, desc=f"{job.decoder.name} on {job.task.name}", leave=False,
                               initial=job.resumed, total=len(job.examples)):
            job.run(pair, i, example, meter)
        return job.finish(pair, meter, idle_watts)


def run_example(pair, decoder, task, example, sampling, max_new_tokens: int, seed: int, meter) -> dict:
    """Generate every turn of one example, score it, and return its record."""
    turns = []  # (prompt, generation) per turn
    settled = task.stop_rule(example, pair.info)

    def generate_turn(prompt_ids: list[int]) -> list[int]:
        out = generate(pair, decoder, prompt_ids, max_new_tokens=max_new_tokens, sampling=sampling, seed=seed,
                       settled=settled)
        turns.append((prompt_ids, out))
        return out.tokens

    before = meter.joules()
    replies = task.converse(example, generate_turn, pair.info)
    after = meter.joules()
    stats, log_probs = GenerationStats(), []
    for prompt_ids, out in turns:
        stats.add(out.stats)
        log_probs += target_log_probs(pair.target, prompt_ids, out.tokens)
    record = {"id": example.id, "prompt_tokens": len(example.prompt_ids),
              "new_tokens": [t for _, out in turns for t in out.tokens], "stop_reason": turns[-1][1].stop_reason,
              "stats": stats.as_dict(), "energy_joules": None if after is None else after - before,
              "verdict": task.score(example, replies, pair.info),
              "target_log_prob_mean": sum(log_probs) / len(log_probs) if log_probs else None}
    if len(turns) > 1:
        record["turn_tokens"] = [len(out.tokens) for _, out in turns]
    return record


def require_judged(task) -> None:
    if not task.graded_by_judge:
        raise UserError(f"task {task.name!r} is not graded by an LLM judge; leave judge=none")


def judge_job(job_dir: Path, judge, task=None) -> dict:
    """Grade a finished job's saved answers with ``judge`` (resuming earlier judgments) and record
    the scores in its summary and the results store. The answers stay whatever happens."""
    job_dir = Path(job_dir)
    summary_path = job_dir / "summary.json"
    if not summary_path.is_file():
        raise UserError(f"{job_dir} holds no finished job (no summary.json)")
    summary = json.loads(summary_path.read_text())
    if task is None:
        task_params = dict(summary["config"]["task"])
        task = build_task(task_params.pop("name"), **task_params)
    require_judged(task)
    try:
        judged, verdicts = task.judge(job_dir, judge)
    except JudgeUnavailable as err:
        raise UserError(f"{err}. The answers are kept in {job_dir}; grade them later with: "
                        f"python judge.py job={job_dir} judge=...") from None
    update_verdicts(job_dir, verdicts)
    return update_summary(job_dir, {"quality": {**summary["quality"], **judged}})
