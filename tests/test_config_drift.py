"""Every decoder and task config under conf/ agrees with its class: the dataclass defaults are the
one source; a YAML file only repeats them so that Hydra can override them by name."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mtad.catalogue import DECODERS, build_decoder
from tasks.catalogue import TASKS, build_task

CONF = Path(__file__).resolve().parent.parent / "conf"


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
