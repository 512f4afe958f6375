"""Speed that can be compared: several decoders on one loaded pair, in one sitting, taking turns
example by example.

    python -m mtad.job.interleave --decoders ar,spd,mtad,mtad:tau=0.3 --sweep speed-humaneval \\
        task=humaneval task.limit=40 pair.backend=static pair.draft_quant=int8 results_dir=results/speed

Each decoder makes an ordinary run (the run id ``run.py`` would give the same config, records in
the results store, resumable after a kill); only the order differs from a ``run.py -m`` sweep:
on example i every decoder generates before any moves to example i + 1, starting from decoder
i mod n, so a drift in machine speed (heat, a neighbour's load) hits all of them alike. The runs
share one sweep name, so their tokens/s may be divided (``mtad/job/comparison.py``).
``name:key=value:key=value`` sets decoder parameters; the other arguments are Hydra overrides
shared by all decoders.
"""

from __future__ import annotations

import argparse
from contextlib import closing
from pathlib import Path

from hydra import compose, initialize_config_dir
from tqdm import tqdm

from mtad.job.energy import build_meter
from mtad.errors import UserError, one_line_errors
from mtad.job.harness import Job, cached_pair
from mtad.job.records import REPO


def decoder_overrides(spec: str) -> list[str]:
    """``mtad:tau=0.3:width=2`` -> ``["decoder=mtad", "decoder.tau=0.3", "decoder.width=2"]``."""
    name, *params = spec.split(":")
    if not name or any("=" not in p for p in params):
        raise UserError(f"--decoders: {spec!r} is not name[:key=value...]")
    return [f"decoder={name}"] + [f"decoder.{p}" for p in params]


def interleave(specs: list[str], overrides: list[str], sweep: str) -> list[dict]:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        configs = [compose("config", overrides=overrides + decoder_overrides(spec)) for spec in specs]
    out = Path(configs[0].results_dir) / "jobs" / sweep
    jobs = [Job(cfg, out / str(k), sweep=str(out)) for k, cfg in enumerate(configs)]
    summaries: dict[int, dict] = {k: job.finished_before() for k, job in enumerate(jobs) if job.recorder.finished}
    running = [job for k, job in enumerate(jobs) if k not in summaries]
    if running:
        running[0].task.preflight()
        pair = cached_pair(running[0].config["pair"])
        todo = {id(job): dict(job.todo(pair)) for job in running}
        cfg = running[0].cfg
        with closing(build_meter(cfg.meter, [pair.target.device, pair.draft.device])) as meter:
            idle_watts = meter.idle_watts(cfg.meter_idle_seconds)
            for job in running:
                if todo[id(job)]:
                    job.warm_up(pair)
            indices = sorted(set().union(*(todo[id(job)] for job in running)))
            for i in tqdm(indices, desc=f"{len(running)} decoders interleaved", leave=False):
                for turn in range(len(running)):
                    job = running[(i + turn) % len(running)]
                    if i in todo[id(job)]:
                        job.run(pair, i, todo[id(job)][i], meter)
            for job in running:
                summaries[jobs.index(job)] = job.finish(pair, meter, idle_watts)
    return [summaries[k] for k in range(len(jobs))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decoders", required=True, help="comma-separated name[:key=value...]")
    parser.add_argument("--sweep", default="interleaved", help="sweep name; jobs go to <results_dir>/jobs/<sweep>/")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides shared by every decoder")
    args = parser.parse_args()
    with one_line_errors():
        summaries = interleave(args.decoders.split(","), args.overrides, args.sweep)
    from mtad.job.sweep_table import format_table
    print(format_table(summaries), flush=True)


if __name__ == "__main__":
    main()
