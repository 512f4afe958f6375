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
