"""One job's config, built once from the Hydra config: every group checked against the fields it
may have (a key nothing reads is refused with the list of known ones, never dropped), typed where
the harness reads it, and the resolved dict that records store and the run id is computed from."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from mtad.decoding.sampling import SamplingConfig
from mtad.errors import UserError, refuse_unknown
from mtad.job.energy import METERS
from mtad.job.wandb_log import WandbSettings
from mtad.ranges import FLAG, SEED, Int, OneOf, Real, check_ranges, ranged
from mtad.runners.load import PairConfig, pair_config_from

# each logger's settings (its group's keys besides its name); None: it has none
LOGGERS: dict[str, type | None] = {"none": None, "wandb": WandbSettings}


@dataclass(frozen=True)
class JobConfig:
    """conf/config.yaml's root keys. ``decoder``, ``task``, ``judge`` and ``logger`` stay dicts
    (name plus parameters): their catalogues build and check them (``build_decoder``,
    ``build_task``, ``build_judge``)."""

    pair: PairConfig
    decoder: dict
    task: dict
    sampling: SamplingConfig
    judge: dict
    logger: dict
    # The root defaults are conf/config.yaml's; their ranges are here, checked when the config is built.
    seed: int = ranged(range=SEED)  # each example's turns get seeds hashed from it (harness.stream_seed)
    max_new_tokens: int = ranged(range=Int(min=1))
    warmup: int = ranged(range=Int(min=0, note="untimed generations before measuring"))
    meter: str = ranged(range=OneOf(METERS))
    meter_idle_seconds: float = ranged(range=Real(min=0, note="0: skip the idle measurement"))
    results_dir: str
    resume: bool = ranged(range=FLAG)
    resume_elsewhere: bool = ranged(range=FLAG)  # resume examples another machine recorded (records.fingerprint)
    # the whole config, resolved: what config.yaml, the summaries and the run id hold
    resolved: dict = dataclasses.field(repr=False, compare=False, default_factory=dict)

    def __post_init__(self):
        check_ranges(self)

    @classmethod
    def from_hydra(cls, cfg: DictConfig | dict) -> JobConfig:
        resolved = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
        refuse_unknown("the config", resolved, [f.name for f in dataclasses.fields(cls) if f.name != "resolved"])
        logger = dict(resolved["logger"])
        kind = logger.pop("name", "none")
        if kind not in LOGGERS:
            raise UserError(f"unknown logger {kind!r} (known: {', '.join(LOGGERS)})")
        settings = LOGGERS[kind]
        refuse_unknown(f"logger {kind!r}", logger, [f.name for f in dataclasses.fields(settings)] if settings else ())
        if settings:
            settings(**logger)  # its ranges, before any work
        refuse_unknown("sampling", resolved["sampling"], [f.name for f in dataclasses.fields(SamplingConfig)])
        return cls(pair=pair_config_from(dict(resolved["pair"])), decoder=dict(resolved["decoder"]),
                   task=dict(resolved["task"]), sampling=SamplingConfig(**resolved["sampling"]),
                   judge=dict(resolved["judge"]), logger=dict(resolved["logger"]), seed=resolved["seed"],
                   max_new_tokens=resolved["max_new_tokens"], warmup=resolved["warmup"], meter=resolved["meter"],
                   meter_idle_seconds=resolved["meter_idle_seconds"], results_dir=resolved["results_dir"],
                   resume=resolved["resume"], resume_elsewhere=resolved["resume_elsewhere"], resolved=resolved)
