"""The catalogues: every decoder and task by its unique name and version; configs and code agree."""

from dataclasses import dataclass

import pytest

from baselines.spd import SpD
from mtad.catalogue import DECODERS
from mtad.registry import by_name
from mtad.decoding.base import Decoder
from tasks.catalogue import TASKS


def test_every_decoder_and_task_has_its_own_version():
    for cls in [*DECODERS.values(), *TASKS.values()]:
        assert isinstance(cls.__dict__["version"], int) and cls.version >= 1, cls


def test_a_duplicate_name_is_refused_in_one_line():
    @dataclass
    class OtherSpD(Decoder):
        name = "spd"
        version = 1

        def step(self, ctx):
            raise NotImplementedError

    with pytest.raises(ValueError) as err:
        by_name("decoder", [SpD, OtherSpD])
    assert str(err.value) == "two decoders are named 'spd': SpD and test_a_duplicate_name_is_refused_in_one_line.<locals>.OtherSpD"


def test_a_class_without_its_own_version_is_refused():
    @dataclass
    class Unversioned(SpD):
        name = "spd2"

    with pytest.raises(ValueError, match="must set its own integer version"):
        by_name("decoder", [Unversioned])
