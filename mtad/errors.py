"""Errors caused by the user's input (configs, arguments, files): the CLI prints them as one line."""

import os
import sys
from contextlib import contextmanager


class UserError(ValueError):
    pass


@contextmanager
def one_line_errors():
    """For command-line entry points: a ``UserError`` becomes ``error: ...`` on stderr and exit
    code 2 (``HYDRA_FULL_ERROR=1`` shows the traceback instead)."""
    try:
        yield
    except UserError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)


def refuse_unknown(what: str, given, known) -> None:
    """A config group ``what`` with keys outside ``known`` is refused in one line that lists the
    known ones: a misspelt key must never be dropped silently (it would run the defaults)."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise UserError(f"{what} has no key {', '.join(map(repr, unknown))} (known: {', '.join(sorted(known)) or 'none'})")
