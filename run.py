"""Command-line entry point.

    python run.py -m decoder=ar,spd,mtad task=humaneval task.limit=20   # a sweep, one job per decoder
    python run.py decoder=mtad decoder.tau=0.3 pair=tiny task=synthetic

A sweep's jobs run one after another, so its closing table shows no speed-ups (load or heat may
differ between jobs); ``python -m mtad.job.interleave --decoders ar,spd,mtad ...`` runs the same
jobs taking turns on one loaded pair, and its table does.
"""

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mtad.errors import one_line_errors
from mtad.job.harness import run_job
from mtad.job.sweep_table import format_table


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    sweep = hydra_cfg.sweep.dir if hydra_cfg.mode == RunMode.MULTIRUN else None
    with one_line_errors():
        summary = run_job(cfg, hydra_cfg.runtime.output_dir, sweep)
    if sweep is None:
        print(format_table([summary]), flush=True)


if __name__ == "__main__":
    main()
