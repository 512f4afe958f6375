"""Speed that can be compared: several decoders on one loaded pair, in one sitting, taking turns
example by example.

    python -m mtad.job.interleave --decoders ar,spd,mtad,mtad:tau=0.3 --sweep speed-humaneval \\
        task=humaneval task.limit=40 pair.backend=static pair.draft_quant=int8 results_dir=results/speed

Each decoder makes an ordinary run (the run id ``run.py`` would give the same config, records in
the results store, resumable after a kill) through the same driver as ``run.py``
(``mtad.job.harness.run_jobs``); only the order differs from a ``run.py -m`` sweep: on example i
every decoder generates before any moves to example i + 1, starting from decoder i mod n, so a
drift in machine speed (heat, a neighbour's load) hits all of them alike. The runs share one
sweep name and one sitting, so their tokens/s may be divided (``mtad/job/comparison.py``).
``name:key=value:key=value`` sets decoder parameters; the other arguments are Hydra overrides
shared by all decoders.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hydra import compose, initialize_config_dir

from mtad.errors import UserError, one_line_errors
from mtad.job.config import JobConfig
from mtad.job.harness import Job, run_jobs
from mtad.paths import CONF_DIR
from mtad.job.sweep_table import format_table


def decoder_overrides(spec: str) -> list[str]:
    """``mtad:tau=0.3:width=2`` -> ``["decoder=mtad", "decoder.tau=0.3", "decoder.width=2"]``."""
    name, *params = spec.split(":")
    if not name or any("=" not in p for p in params):
        raise UserError(f"--decoders: {spec!r} is not name[:key=value...]")
    return [f"decoder={name}"] + [f"decoder.{p}" for p in params]


def job_configs(specs: list[str], overrides: list[str]) -> list[JobConfig]:
    """One job config per decoder spec, with the shared Hydra overrides."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return [JobConfig.from_hydra(compose("config", overrides=overrides + decoder_overrides(spec)))
                for spec in specs]


def interleave(specs: list[str], overrides: list[str], sweep: str) -> list[dict]:
    """Run one job per decoder spec, taking turns; their summaries in the order of ``specs``.
    Job k's folder is ``<results_dir>/jobs/<sweep>/<k>``."""
    configs = job_configs(specs, overrides)
    out = Path(configs[0].results_dir) / "jobs" / sweep
    return run_jobs([Job(config, out / str(k), sweep=str(out)) for k, config in enumerate(configs)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decoders", required=True, help="comma-separated name[:key=value...]")
    parser.add_argument("--sweep", default="interleaved", help="sweep name; jobs go to <results_dir>/jobs/<sweep>/")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides shared by every decoder")
    args = parser.parse_args()
    with one_line_errors():
        summaries = interleave(args.decoders.split(","), args.overrides, args.sweep)
    print(format_table(summaries), flush=True)


if __name__ == "__main__":
    main()
