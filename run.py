"""Command-line entry point: `python run.py -m decoder=ar,spd,mtad model=tiny task=synthetic`."""

import hydra
from omegaconf import DictConfig

from mtad.harness import run_job, stats_line


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    print(stats_line(run_job(cfg)), flush=True)


if __name__ == "__main__":
    main()
