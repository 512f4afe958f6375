"""One benchmark job: model pair x decoder x task, with warm-up, records and a summary."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from omegaconf import DictConfig
from tqdm import tqdm

from mtad.catalogue import build_decoder
from mtad.decoding.base import GenerationStats, generate
from mtad.decoding.sampling import SAMPLING_VERSION
from mtad.errors import UserError
from mtad.job.config import JobConfig
from mtad.job.energy import build_meter
from mtad.job.metrics import hit_max_new_tokens, perplexity, target_log_probs
from mtad.job.records import (JobRecorder, fingerprint, machine, timed_example, update_summary, update_verdicts,
                              write_atomic)
from mtad.job.wandb_log import log_job
from mtad.judging.clients import JudgeUnavailable, build_judge
from mtad.runners.catalogue import backend
from mtad.runners.load import PairConfig, load_pair
from mtad.runners.pair import Pair
from tasks.catalogue import build_task

# What the harness measures (timing, energy, per-generation statistics, perplexity): bump with
# any change to how these are measured. With the decoder's, the task's, the backend's and those of
# the shared code that generates (sampling, quantization, matmuls), it is part of the run id.
HARNESS_VERSION = 2  # 2: each turn's generator seed hashed from (seed, example id, turn), not seed + i (issue 36)
TIMING = ("tokens_per_second = total emitted tokens / total generate() seconds (ratio of sums), after warm-up, "
          "over the examples whose generation compiled nothing (compiled_examples: the others)")
ENERGY = ("joules over the timed generate() calls of the same examples, idle power included (idle_watts says how "
          "much to subtract)")

_PAIRS: dict[str, Pair] = {}


def cached_pair(spec: PairConfig) -> Pair:
    """Load a pair once per process: the jobs of a Hydra multirun share it."""
    key = repr(spec)
    if key not in _PAIRS:
        _PAIRS.clear()  # one pair in memory at a time
        _PAIRS[key] = load_pair(spec)
    return _PAIRS[key]


class Job:
    """One run: model pair x decoder x task, with its records. ``run_jobs`` runs a list of them
    on one loaded pair, taking turns example by example; ``run_job`` is that with one job."""

    def __init__(self, config: JobConfig, out_dir: Path, sweep: str | None = None):
        self.config, self.sweep = config, sweep
        self.decoder_params = dict(config.decoder)
        self.decoder = build_decoder(self.decoder_params.pop("name"), **self.decoder_params)
        task_params = dict(config.task)
        self.task = build_task(task_params.pop("name"), **task_params)
        self.judge = build_judge(config.judge)
        if self.judge is not None:
            require_judged(self.task)  # before anything is generated
        # The backend is asked whether its runners do all the decoder needs, before any model loads
        # (the pair config itself, backend name, device and quantizations, was checked when built).
        pair_backend = backend(config.pair.backend)
        pair_backend.require(self.decoder.needs, f"decoder {self.decoder.name!r}")
        pair_backend.check_sequences(self.decoder.sequences(), f"decoder {self.decoder.name!r}")
        versions = {"harness": HARNESS_VERSION, "decoder": self.decoder.version, "task": self.task.version,
                    "sampling": SAMPLING_VERSION, **pair_backend.code_versions()}
        self.recorder = JobRecorder(Path(out_dir), Path(config.results_dir), config.resolved, versions,
                                    resume=config.resume)
        self.recorder.rescore(self.task.scores, only_missing=True)  # records of a try before scores were kept
        self.fingerprint = fingerprint(config.pair)
        self.refuse_other_machines()
        self.examples: list = []
        self.resumed = 0  # examples an earlier try recorded

    def refuse_other_machines(self) -> None:
        """Stop before any model loads when examples this run recorded came from another
        fingerprint (another CPU, ISA, GPU or torch: other numerics), unless ``resume_elsewhere``."""
        other = [r.get("fingerprint") for r in self.recorder.done.values() if r.get("fingerprint") != self.fingerprint]
        if other and not self.config.resume_elsewhere:
            raise UserError(
                f"run {self.recorder.run_id}: {len(other)} of its {len(self.recorder.done)} recorded examples come "
                f"from another machine ({machine(other[0])}; this one: {machine(self.fingerprint)}), whose numerics "
                "differ; resume_elsewhere=true resumes anyway (the summary lists both), resume=false starts over")

    def finished_before(self) -> dict:
        """The summary of this run as completed before (graded now if a judge was asked for)."""
        summary = self.recorder.finished
        print(f"run {self.recorder.run_id} finished before ({summary['output_dir']}); not run again "
              "(resume=false reruns it)", flush=True)
        if self.judge is not None:  # its saved answers can still be graded
            summary = judge_job(Path(summary["output_dir"]), self.judge, self.task)
        write_atomic(self.recorder.out_dir / "summary.json", json.dumps(summary, indent=2, default=str))
        return summary

    def todo(self, pair: Pair) -> dict[int, object]:
        """{index: example} of the examples not recorded yet; a prompt too long for a static
        cache stops the job before any work."""
        self.examples = self.task.examples(pair.info)
        for example in self.examples:
            pair.check_fits(len(example.prompt_ids), self.config.max_new_tokens)
        todo = {i: example for i, example in enumerate(self.examples) if example.id not in self.recorder.done}
        self.resumed = len(self.examples) - len(todo)
        return todo

    def warm_up(self, pair: Pair) -> None:
        for _ in range(self.config.warmup):
            generate(pair, self.decoder, self.examples[0].prompt_ids, max_new_tokens=self.config.max_new_tokens,
                     sampling=self.config.sampling, seed=self.config.seed)

    def run(self, pair: Pair, i: int, example, meter) -> None:
        record = run_example(pair, self.decoder, self.task, example, self.config.sampling,
                             self.config.max_new_tokens, self.config.seed, meter)
        self.recorder.sample({**record, "fingerprint": self.fingerprint})

    def finish(self, pair: Pair, meter, idle_watts, sitting: str) -> dict:
        """The summary from every example's record; written, logged and graded as configured."""
        records = [self.recorder.done[example.id] for example in self.examples]
        timed_records = [record for record in records if timed_example(record)]  # no compile inside
        total, timed = GenerationStats(), GenerationStats()
        for record in records:
            total.add(GenerationStats.from_dict(record["stats"]))
        for record in timed_records:
            timed.add(GenerationStats.from_dict(record["stats"]))
        joules = [record["energy_joules"] for record in timed_records]
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
            "decoder_params": self.decoder_params, "seed": self.config.seed,
            "sampling": self.config.resolved["sampling"],
            "max_new_tokens": self.config.max_new_tokens, "examples": len(self.examples),
            "resumed_examples": self.resumed,
            "hit_max_new_tokens": hit_max_new_tokens(records, self.config.max_new_tokens),
            "tokens_per_second": timed.tokens_per_second, "block_efficiency": total.block_efficiency,
            "acceptance_rate": total.acceptance_rate, "acceptance_per_position": total.acceptance_per_position,
            "compiled_examples": len(records) - len(timed_records),
            "energy_source": meter.source if energy_joules is not None else "none", "energy_joules": energy_joules,
            "joules_per_token": energy_joules / timed.new_tokens if energy_joules is not None and timed.new_tokens
            else None,
            "idle_watts": idle_watts, "quality": quality, "metric": metric_record(self.task),
            "totals": total.as_dict(), "timing": TIMING, "energy": ENERGY, "sitting": sitting,
            "fingerprints": distinct([record.get("fingerprint") for record in records]),
        })
        if self.judge is not None:
            summary = judge_job(recorder.out_dir, self.judge, self.task)
        if self.config.logger.get("name", "none") != "none":
            log_job(summary, records, recorder.out_dir, self.config.logger)
        return summary


def run_jobs(jobs: list[Job], between: Callable[[int], None] | None = None) -> list[dict]:
    """The one path that times generations: run the examples that ``jobs`` have not recorded
    yet on one loaded pair and return their summaries, in order. Runs already in the results
    store are not run again. The others take turns example by example: on example i every job
    generates before any moves on, starting from job i mod n, so a drift in machine speed (heat,
    a neighbour's load) hits all of them alike. Their summaries carry one ``sitting`` id, new for
    each call: runs with the same sitting took turns on one machine, so their tokens/s may be
    divided (``mtad/job/sweep_table.py``); runs of different sittings ran one after another.
    ``between(i)``, if given, runs after every job's turn on example i, outside their timing: a
    benchmark's outside yardstick (another program) takes its turn there too."""
    summaries = {k: job.finished_before() for k, job in enumerate(jobs) if job.recorder.finished}
    running = [job for k, job in enumerate(jobs) if k not in summaries]
    if running:
        first = running[0].config
        for job in running[1:]:  # one pair loaded, one meter read: what they share must agree
            for field in ("pair", "meter", "meter_idle_seconds"):
                if getattr(job.config, field) != getattr(first, field):
                    raise UserError(f"jobs taking turns share one {field}: {getattr(first, field)!r} and "
                                    f"{getattr(job.config, field)!r} differ")
        for task in {job.task.name: job.task for job in running}.values():
            task.preflight()  # before the models load
        pair = cached_pair(first.pair)
        todo = [job.todo(pair) for job in running]
        sitting = uuid.uuid4().hex[:12]
        with closing(build_meter(first.meter, [pair.target.device, pair.draft.device])) as meter:
            idle_watts = meter.idle_watts(first.meter_idle_seconds)
            for job, left in zip(running, todo):
                if left:
                    job.warm_up(pair)
            indices = sorted(set().union(*todo))
            total = max(len(job.examples) for job in running)
            desc = (f"{running[0].decoder.name} on {running[0].task.name}" if len(running) == 1
                    else f"{len(running)} decoders taking turns")
            for i in tqdm(indices, desc=desc, leave=False, initial=total - len(indices), total=total):
                for turn in range(len(running)):
                    k = (i + turn) % len(running)
                    if i in todo[k]:
                        running[k].run(pair, i, todo[k][i], meter)
                if between is not None:
                    between(i)
            for job in running:
                summaries[jobs.index(job)] = job.finish(pair, meter, idle_watts, sitting)
    return [summaries[k] for k in range(len(jobs))]


def run_job(cfg: DictConfig, out_dir: Path, sweep: str | None = None) -> dict:
    """``run.py``'s job: ``run_jobs`` with one job from the Hydra config."""
    return run_jobs([Job(JobConfig.from_hydra(cfg), out_dir, sweep)])[0]


def distinct(values: list) -> list:
    """``values`` without repeats, in order of first appearance (dicts compared by value)."""
    seen = {}
    for value in values:
        seen.setdefault(json.dumps(value, sort_keys=True), value)
    return list(seen.values())


def stream_seed(seed: int, example_id: str, turn: int) -> int:
    """The generator seed of one turn of one example in a run seeded ``seed``: a hash of all three,
    so the random streams of different seeds, examples and turns are unrelated (with seed + i,
    seed 43's stream for example i was seed 42's for example i + 1)."""
    digest = hashlib.blake2b(f"{seed}\x1f{example_id}\x1f{turn}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # 63 bits: any torch.Generator takes it


def run_example(pair, decoder, task, example, sampling, max_new_tokens: int, seed: int, meter) -> dict:
    """Generate every turn of one example (turn t with ``stream_seed(seed, example.id, t)``), score
    it, and return its record."""
    turns = []  # (prompt, generation) per turn
    settled = task.stop_rule(example, pair.info)

    def generate_turn(prompt_ids: list[int]) -> list[int]:
        out = generate(pair, decoder, prompt_ids, max_new_tokens=max_new_tokens, sampling=sampling,
                       seed=stream_seed(seed, example.id, len(turns)), settled=settled)
        turns.append((prompt_ids, out))
        return out.tokens

    before = meter.joules()
    replies = task.converse(example, generate_turn, pair.info)
    after = meter.joules()
    stats, log_probs = GenerationStats(), []
    for prompt_ids, out in turns:
        stats.add(out.stats)
        log_probs += target_log_probs(pair.target, prompt_ids, out.tokens)
    verdict = task.score(example, replies, pair.info)
    record = {"id": example.id, "prompt_tokens": len(example.prompt_ids),
              "new_tokens": [t for _, out in turns for t in out.tokens], "stop_reason": turns[-1][1].stop_reason,
              "stats": stats.as_dict(), "energy_joules": None if after is None else after - before,
              "verdict": verdict, "scores": task.scores(verdict),
              "target_log_prob_mean": sum(log_probs) / len(log_probs) if log_probs else None}
    if len(turns) > 1:
        record["turn_tokens"] = [len(out.tokens) for _, out in turns]
        record["turn_stop_reasons"] = [out.stop_reason for _, out in turns]
    return record


def metric_record(task) -> dict | None:
    """The task's metric declaration as its run summaries carry it (``metric``)."""
    return None if task.metric is None else task.metric.to_record()


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
    update_verdicts(job_dir, verdicts, task.scores)  # the examples' scores follow their new ratings
    return update_summary(job_dir, {"quality": {**summary["quality"], **judged}, "metric": metric_record(task)})
