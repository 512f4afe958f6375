"""Safe SQL execution and result matching for Spider.

The official evaluation script opens databases read-write (a predicted ``DROP TABLE`` destroys
data) and its timeout does not work. Here a query runs on a connection that
- opens the file read-only (``mode=ro`` URI) with ``query_only`` set,
- admits only reading statements (an authorizer refuses ATTACH, PRAGMA, writes, DDL ...),
- is interrupted by a progress handler once its deadline passes,
- decodes text leniently (one dev database holds bytes that are not UTF-8).
"""

from __future__ import annotations

import itertools
import re
import sqlite3
import time
from collections import Counter
from pathlib import Path

# what a SELECT needs; everything else (ATTACH, PRAGMA, INSERT, CREATE ...) is refused
_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
_PROGRESS_STEPS = 1000  # virtual-machine instructions between deadline checks
MAX_ROWS = 100_000
MAX_PERMUTATIONS = 10_000  # column assignments tried (many equal columns would explode the product)


class QueryError(Exception):
    """The query failed: a syntax or schema error, a refused statement, or its deadline."""


def _authorize(action, *_):
    return sqlite3.SQLITE_OK if action in _ALLOWED else sqlite3.SQLITE_DENY


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def execute(database: Path, sql: str, timeout: float = 5.0) -> list[tuple]:
    """Rows of ``sql`` on ``database``, read-only, within ``timeout`` seconds."""
    if not Path(database).is_file():
        raise FileNotFoundError(f"no database at {database}")
    connection = sqlite3.connect(f"file:{Path(database).resolve()}?mode=ro", uri=True, timeout=timeout,
                                 check_same_thread=False)
    try:
        connection.text_factory = _text
        connection.execute("PRAGMA query_only = ON")
        connection.set_authorizer(_authorize)
        deadline = time.monotonic() + timeout
        connection.set_progress_handler(lambda: int(time.monotonic() > deadline), _PROGRESS_STEPS)
        try:
            cursor = connection.execute(sql)  # one statement: sqlite3 refuses several
            rows = cursor.fetchmany(MAX_ROWS + 1)
        except (sqlite3.Error, sqlite3.Warning, OverflowError, ValueError) as err:
            if time.monotonic() > deadline:
                raise QueryError(f"interrupted after {timeout:g} s") from None
            raise QueryError(str(err)) from None
        if len(rows) > MAX_ROWS:
            raise QueryError(f"more than {MAX_ROWS} rows")
        return rows
    finally:
        connection.close()


def has_order_by(sql: str) -> bool:
    """Whether the outermost query orders its rows (an ORDER BY outside any parentheses)."""
    depth = 0
    for token in re.findall(r"\(|\)|'[^']*'|\"[^\"]*\"|\bORDER\s+BY\b", sql, flags=re.IGNORECASE):
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        elif token[0] not in "'\"" and depth == 0:
            return True
    return False


def results_match(gold: list[tuple], predicted: list[tuple], ordered: bool) -> bool:
    """Equal as bags of rows (as lists when ``ordered``), up to a permutation of the predicted
    columns: ``SELECT a, b`` answers a question whose gold query is ``SELECT b, a``."""
    if len(gold) != len(predicted):
        return False
    if not gold:
        return True
    width = len(gold[0])
    if len(predicted[0]) != width:
        return False
    columns = list(zip(*gold))
    pred_columns = list(zip(*predicted))
    # a predicted column can stand for a gold column only if it holds the same bag of values
    candidates = [[j for j in range(width) if Counter(pred_columns[j]) == Counter(col)] for col in columns]
    for permutation in itertools.islice(itertools.product(*candidates), MAX_PERMUTATIONS):
        if len(set(permutation)) != width:
            continue
        rows = [tuple(row[j] for j in permutation) for row in predicted]
        if (rows == gold) if ordered else (Counter(rows) == Counter(gold)):
            return True
    return False
