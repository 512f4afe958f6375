"""Grade the saved answers of a finished MT-Bench job with an LLM judge (resumable).

    python judge.py job=<job folder> judge=openai judge.model=gpt-4
    python judge.py job=<job folder> judge=openai judge.base_url=http://127.0.0.1:8000/v1 judge.model=<served name>
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from mtad.errors import one_line_errors
from mtad.job.harness import judge_job
from mtad.judging.clients import build_judge


@hydra.main(config_path="conf", config_name="judge_job", version_base=None)
def main(cfg: DictConfig) -> None:
    with one_line_errors():
        summary = judge_job(cfg.job, build_judge(OmegaConf.to_container(cfg.judge, resolve=True)))
    quality = summary["quality"]
    print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in quality.items()), flush=True)


if __name__ == "__main__":
    main()
