"""Command-line entry point.

    python run.py -m decoder=ar,spd,mtad task=humaneval task.limit=20   # a sweep, one job per decoder
    python run.py decoder=mtad decoder.tau=0.3 model=tiny task=synthetic
"""

import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mtad.errors import UserError
from mtad.harness import run_job
from mtad.sweep_table import format_table


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    sweep = hydra_cfg.sweep.dir if hydra_cfg.mode == RunMode.MULTIRUN else None
    try:
        summary = run_job(cfg, hydra_cfg.runtime.output_dir, sweep)
    except UserError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    if sweep is None:
        print(format_table([summary]), flush=True)


if __name__ == "__main__":
    main()
