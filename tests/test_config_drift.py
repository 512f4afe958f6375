"""Every decoder, task, pair, judge and sampling config under conf/ agrees with its class: the dataclass defaults are the
one source; a YAML file only repeats them so that Hydra can override them by name."""

import dataclasses
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mtad.catalogue import DECODERS, build_decoder
from mtad.decoding.sampling import SamplingConfig
from mtad.errors import UserError
from mtad.job.config import JobConfig
from mtad.job.harness import Job
from mtad.judging.clients import JUDGES, build_judge
from mtad.runners.load import PairConfig, pair_config, pair_config_from
from tasks.catalogue import TASKS, build_task

CONF = Path(__file__).resolve().parent.parent / "conf"
# pair fields whose value is the pair's own (its models, how it runs); the others repeat the defaults
PAIR_CHOICES = {"dtype", "device", "chat_template", "stop_tokens"}


def yaml_values(path: Path) -> tuple[str, dict]:
    values = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    return values.pop("name"), values


@pytest.mark.parametrize("path", sorted((CONF / "decoder").glob("*.yaml")), ids=lambda p: p.stem)
def test_decoder_yaml_is_the_dataclass_defaults(path):
    name, values = yaml_values(path)
    assert name == path.stem and name in DECODERS
    assert build_decoder(name, **values) == DECODERS[name](), f"{path} drifted from {DECODERS[name].__name__}"
    assert set(values) == {f for f in DECODERS[name].__dataclass_fields__}, "a parameter is missing from the YAML"


@pytest.mark.parametrize("path", sorted((CONF / "task").glob("*.yaml")), ids=lambda p: p.stem)
def test_task_yaml_is_the_dataclass_defaults(path):
    name, values = yaml_values(path)
    assert name == path.stem and name in TASKS
    assert build_task(name, **values) == TASKS[name](), f"{path} drifted from {TASKS[name].__name__}"
    assert set(values) == {f for f, spec in TASKS[name].__dataclass_fields__.items() if spec.init}


def test_every_catalogue_entry_has_a_config():
    assert {p.stem for p in (CONF / "decoder").glob("*.yaml")} == set(DECODERS)
    assert {p.stem for p in (CONF / "task").glob("*.yaml")} == set(TASKS)


def test_data_dir_follows_mtad_data_in_both(monkeypatch, tmp_path):
    monkeypatch.setenv("MTAD_DATA", str(tmp_path))
    for name, folder in (("spider", "spider"), ("mtbench", "mt_bench")):
        _, values = yaml_values(CONF / "task" / f"{name}.yaml")
        assert values["data_dir"] == TASKS[name].__dataclass_fields__["data_dir"].default_factory() == str(tmp_path / folder)


@pytest.mark.parametrize("path", sorted((CONF / "pair").glob("*.yaml")), ids=lambda p: p.stem)
def test_pair_yaml_lists_every_pair_config_field(path):
    """Every field, so that ``pair.<field>=`` overrides any of them without a ``+``."""
    values = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    assert set(values) == {f.name for f in dataclasses.fields(PairConfig)}
    assert values["name"] == path.stem and pair_config_from(values) == pair_config(path.stem)
    for f in dataclasses.fields(PairConfig):  # where the dataclass has a default, the YAML may differ on purpose
        if f.default is not dataclasses.MISSING and f.name not in PAIR_CHOICES:
            assert values[f.name] == f.default, f"{path}: {f.name} drifted from PairConfig"


@pytest.mark.parametrize("path", sorted((CONF / "judge").glob("*.yaml")), ids=lambda p: p.stem)
def test_judge_yaml_keys_are_the_judge_fields(path):
    name, values = yaml_values(path)
    assert name == path.stem
    if name == "none":
        assert values == {} and build_judge({"name": "none"}) is None
        return
    cls = JUDGES[name]
    assert set(values) == {f.name for f in dataclasses.fields(cls)}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            assert values[f.name] == f.default, f"{path}: {f.name} drifted from {cls.__name__}"


def test_sampling_keys_are_the_sampling_config():
    values = OmegaConf.to_container(OmegaConf.load(CONF / "config.yaml"), resolve=False)["sampling"]
    assert SamplingConfig(**values) == SamplingConfig()
    assert set(values) == {f.name for f in dataclasses.fields(SamplingConfig)}


def test_root_keys_are_the_job_config():
    values = OmegaConf.to_container(OmegaConf.load(CONF / "config.yaml"), resolve=False)
    groups = {"pair", "decoder", "task", "judge", "logger"}  # from the defaults list
    assert set(values) - {"defaults", "hydra"} | groups == {f.name for f in dataclasses.fields(JobConfig)} - {"resolved"}


@pytest.mark.parametrize("override, message", [
    ("+colour=red", "the config has no key 'colour' (known: decoder, judge, logger, max_new_tokens,"),
    ("+pair.colour=red", "pair has no key 'colour' (known: attn_implementation, backend, chat_template,"),
    ("+sampling.min_p=0.1", "sampling has no key 'min_p' (known: temperature, top_k, top_p)"),
    ("+task.colour=red", "task 'synthetic' has no key 'colour' (known: limit,"),
    ("+decoder.colour=red", "decoder 'mtad' has no parameter 'colour' (it takes: accept_rule,"),
    ("+logger.colour=red", "logger 'none' has no key 'colour' (known: none)"),
])
def test_an_unknown_key_is_refused_with_the_known_ones(tmp_path, override, message):
    with initialize_config_dir(str(CONF), version_base=None):
        cfg = compose("config", overrides=["pair=tiny", "task=synthetic", f"results_dir={tmp_path}", override])
    with pytest.raises(UserError) as err:
        Job(JobConfig.from_hydra(cfg), tmp_path / "job")
    assert message in str(err.value)


def test_a_judge_with_an_unknown_key_is_refused():
    with pytest.raises(UserError, match="judge 'openai' has no key 'colour' \\(known: api_key_env, base_url, "):
        build_judge({"name": "openai", "model": "m", "colour": "red"})


def test_every_pair_field_overrides_without_a_plus(tmp_path):
    with initialize_config_dir(str(CONF), version_base=None):
        cfg = compose("config", overrides=["pair=tiny", "pair.draft_head_rows=64", "pair.seed=3"])
    pair = JobConfig.from_hydra(cfg).pair
    assert (pair.draft_head_rows, pair.seed) == (64, 3)
