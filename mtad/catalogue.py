"""The decoder catalogue: the one place that imports the decoders and names them.

A decoder's ``version`` goes into the id of every run it makes (``mtad/records.py``): bump it in
the same commit as any change to what the decoder generates, and the same command runs again
instead of serving the old records.
"""

from __future__ import annotations

import dataclasses

from baselines.ar import AR
from baselines.bild import BiLD
from baselines.hf_assisted import HFAssisted
from baselines.mcss import MCSS
from baselines.mtjd import MTJD
from baselines.spd import SpD
from baselines.specinfer import SpecInfer
from baselines.spectr import SpecTr
from baselines.typical import Typical
from mtad.decoding import Decoder
from mtad.errors import UserError
from mtad.mtad import MTAD


def by_name(kind: str, classes: list[type]) -> dict[str, type]:
    """``{cls.name: cls}``, refusing a name used twice and a class without its own integer version."""
    catalogue: dict[str, type] = {}
    for cls in classes:
        if cls.name in catalogue:
            raise ValueError(f"two {kind}s are named {cls.name!r}: {catalogue[cls.name].__qualname__} and "
                             f"{cls.__qualname__}")
        version = cls.__dict__.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ValueError(f"{kind} {cls.name!r} ({cls.__qualname__}) must set its own integer version >= 1")
        catalogue[cls.name] = cls
    return catalogue


DECODERS: dict[str, type[Decoder]] = by_name("decoder", [AR, SpD, MTAD, SpecInfer, MCSS, SpecTr, Typical, BiLD, MTJD,
                                                     HFAssisted])


def build_decoder(name: str, **params) -> Decoder:
    """A decoder by catalogue name, with hyper-parameter overrides; bad input raises one clear line."""
    if name not in DECODERS:
        raise UserError(f"unknown decoder {name!r} (known: {', '.join(sorted(DECODERS))})")
    cls = DECODERS[name]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise UserError(f"decoder {name!r} has no parameter {', '.join(map(repr, unknown))} "
                        f"(it takes: {', '.join(sorted(known)) or 'nothing'})")
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    return cls(**{name: _coerce(name, value, defaults[name]) for name, value in params.items()})


def _coerce(name: str, value, default):
    """A number given as text (``tau=.inf`` on a command line reaches us as a string) becomes the
    type of the parameter's default; anything else is left for the decoder to check."""
    if not isinstance(value, str) or isinstance(default, bool) or not isinstance(default, (int, float)):
        return value
    try:
        return type(default)(value.replace(".inf", "inf"))
    except ValueError:
        raise UserError(f"decoder parameter {name} must be a number, got {value!r}") from None
