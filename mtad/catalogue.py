"""The decoder catalogue: the one place that imports the decoders and names them.

A decoder's ``version`` goes into the id of every run it makes (``mtad/job/records.py``): bump it in
the same commit as any change to what the decoder generates, and the same command runs again
instead of serving the old records.
"""

from __future__ import annotations

import dataclasses

from baselines.ar import AR
from baselines.bild import BiLD
from baselines.hf_assisted import HFAssisted
from baselines.llamacpp_plain import LlamaCppPlain
from baselines.mcss import MCSS
from baselines.mtjd import MTJD
from baselines.spd import SpD
from baselines.specinfer import SpecInfer
from baselines.spectr import SpecTr
from baselines.typical import Typical
from mtad.decoding.base import Decoder
from mtad.errors import UserError
from mtad.registry import by_name
from mtad.decoding.mtad import MTAD


DECODERS: dict[str, type[Decoder]] = by_name("decoder", [AR, SpD, MTAD, SpecInfer, MCSS, SpecTr, Typical, BiLD, MTJD,
                                                     HFAssisted, LlamaCppPlain])


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
    return cls(**{name: _coerce(value, defaults[name]) for name, value in params.items()})


def _coerce(value, default):
    """A number given as text (``tau=.inf`` on a command line reaches us as a string) becomes the
    type of the parameter's default; anything else, and text that is no such number, is left for
    the decoder's range check (mtad/ranges.py) to refuse."""
    if not isinstance(value, str) or isinstance(default, bool) or not isinstance(default, (int, float)):
        return value
    try:
        return type(default)(value.replace(".inf", "inf"))
    except ValueError:
        return value
