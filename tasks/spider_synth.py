"""Synthetic test-suite databases for Spider, built from ``tables.json`` alone.

The official SQLite databases are not always at hand. Following the idea of distilled test
suites (Zhong et al. 2020), each schema gets several small random databases: column types,
primary keys (unique) and foreign keys (every value exists in the referenced column) are kept,
values come from small pools so joins, groups and duplicates happen, and every literal that the
database's gold queries compare a column with is planted in that column, so WHERE clauses select
something. A prediction counts as correct only if it matches the gold result on all of them.

Databases are reproducible byte for byte from (schema, seed, index) and cached as files.
"""

from __future__ import annotations

import os
import random
import sqlite3
import tempfile
from collections import defaultdict
from pathlib import Path

ROWS = 12         # rows per table
POOL = 6          # distinct random values per non-key column (so values repeat)
NULL_SHARE = 0.05
VERSION = 1       # part of every file name: bump it when the data a seed gives changes, so caches rebuild
SQL_TYPES = {"number": "NUMERIC", "boolean": "NUMERIC"}  # text, time, others: TEXT


def gold_literals(sql: dict, out: dict[int, set] | None = None) -> dict[int, set]:
    """{column index: values} that the parsed gold query (dev.json ``sql``) compares columns with,
    nested queries included. LIKE patterns give their text without the % wildcards."""
    out = {} if out is None else out
    conditions = sql["where"] + sql["having"] + sql["from"]["conds"]
    for condition in conditions:
        if isinstance(condition, str):  # "and" / "or"
            continue
        _negated, _op, val_unit, *values = condition
        column = val_unit[1][1]
        for value in values:
            if isinstance(value, dict):
                gold_literals(value, out)
            elif isinstance(value, (int, float, str)) and not isinstance(value, bool) and column > 0:
                out.setdefault(column, set()).add(_clean(value))
    for unit in sql["from"]["table_units"]:
        if unit[0] == "sql":
            gold_literals(unit[1], out)
    for key in ("intersect", "union", "except"):
        if sql.get(key):
            gold_literals(sql[key], out)
    return out


def _clean(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        return value.replace("%", "")
    return value


class SchemaDatabases:
    """Builds and caches the synthetic databases of one schema (an entry of tables.json)."""

    def __init__(self, schema: dict, literals: dict[int, set], cache_dir: Path, seed: int = 0, count: int = 3):
        self.schema, self.seed, self.count = schema, seed, count
        self.folder = Path(cache_dir) / schema["db_id"]
        # a literal compared with a foreign-key column must exist in the column it references too
        planted = {c: set(v) for c, v in literals.items()}
        changed = True
        while changed:
            changed = False
            for column, referenced in schema["foreign_keys"]:
                missing = planted.get(column, set()) - planted.get(referenced, set())
                if missing:
                    planted.setdefault(referenced, set()).update(missing)
                    changed = True
        self.planted = {c: sorted(v, key=repr) for c, v in planted.items()}  # column index -> values

    def paths(self) -> list[Path]:
        """The database files, built where missing."""
        self.folder.mkdir(parents=True, exist_ok=True)
        paths = [self.folder / f"v{VERSION}-seed{self.seed}-{i}.sqlite" for i in range(self.count)]
        for index, path in enumerate(paths):
            if not path.exists():
                self._write(path, self.rows(index))
        return paths

    # -- data -------------------------------------------------------------------------------
    def rows(self, index: int) -> dict[int, list[tuple]]:
        """{table index: rows} of database ``index``."""
        schema = self.schema
        rng = random.Random(f"{schema['db_id']}:{self.seed}:{index}")
        columns = schema["column_names_original"]
        table_columns = defaultdict(list)
        for c, (table, _) in enumerate(columns):
            if table >= 0:
                table_columns[table].append(c)
        references = defaultdict(list)
        for column, referenced in schema["foreign_keys"]:
            references[column].append(referenced)
        primary = {c for c in schema["primary_keys"]
                   if sum(columns[p][0] == columns[c][0] for p in schema["primary_keys"]) == 1}  # single-column keys
        # a table has room for every literal planted in any of its columns
        size = {t: max([ROWS] + [len(self.planted.get(c, ())) for c in cs]) for t, cs in table_columns.items()}
        values: dict[int, list] = {}

        def fill(c: int, visiting: frozenset = frozenset()) -> list:
            if c in values:
                return values[c]
            parents = [r for r in references[c] if r not in visiting and r != c]
            if parents:
                allowed = set.intersection(*(set(v for v in fill(r, visiting | {c}) if v is not None) for r in parents))
                pool = sorted(allowed, key=repr) or sorted({v for v in values[parents[0]] if v is not None}, key=repr)
                values[c] = self._draw_from(pool, self.planted.get(c, []), size[columns[c][0]], c in primary, rng)
            else:
                values[c] = self._random_column(c, size[columns[c][0]], c in primary, rng)
            return values[c]

        for c in range(1, len(columns)):
            fill(c)
        return {t: list(zip(*(values[c] for c in cs))) for t, cs in table_columns.items()}

    @staticmethod
    def _draw_from(pool: list, planted: list, rows: int, unique: bool, rng: random.Random) -> list:
        """Values of a foreign-key column: its literals that the referenced column holds, then draws."""
        first = [v for v in planted if v in set(pool)]
        rest = [v for v in pool if v not in first]
        if unique and len(first) + len(rest) >= rows:
            column = first + rng.sample(rest, rows - len(first))
        else:
            column = first + [rng.choice(pool) for _ in range(rows - len(first))]
        rng.shuffle(column)
        return column

    def _random_column(self, c: int, rows: int, unique: bool, rng: random.Random) -> list:
        kind = self.schema["column_types"][c]
        name = self.schema["column_names_original"][c][1]
        planted = self.planted.get(c, [])
        if kind in ("number", "boolean"):
            near = sorted({n + d for n in planted if isinstance(n, (int, float)) for d in (-1, 1)}, key=repr)
            if unique:
                fresh = [v for v in range(1, 3 * rows) if v not in planted]
            else:
                fresh = [rng.randint(0, 1) if kind == "boolean" else rng.randint(1, 100) for _ in range(POOL)]
            pool = near + fresh
        elif kind == "time":
            pool = [f"{rng.randint(1990, 2020)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}" for _ in range(POOL)]
        else:
            pool = [f"{name} {rng.randint(1, 9999)}" for _ in range(3 * rows if unique else POOL)]
        if unique:
            pool = sorted(set(pool) - set(planted), key=repr)
            column = planted + rng.sample(pool, rows - len(planted))
        else:
            column = [rng.choice(pool + planted) for _ in range(rows)]
            column = [None if rng.random() < NULL_SHARE else v for v in column]
            column[: len(planted)] = planted  # every literal at least once (rows >= literals)
        rng.shuffle(column)
        return column

    # -- files -------------------------------------------------------------------------------
    def _write(self, path: Path, rows: dict[int, list[tuple]]) -> None:
        """Write atomically: a half-written database is never left under its final name."""
        schema = self.schema
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        try:
            connection = sqlite3.connect(tmp)
            with connection:
                for t, table in enumerate(schema["table_names_original"]):
                    if table.lower().startswith("sqlite_"):  # SQLite's own (sqlite_sequence): reserved
                        continue
                    cols = [(c, name) for c, (owner, name) in enumerate(schema["column_names_original"]) if owner == t]
                    spec = ", ".join(f'"{name}" {SQL_TYPES.get(schema["column_types"][c], "TEXT")}' for c, name in cols)
                    connection.execute(f'CREATE TABLE "{table}" ({spec})')
                    marks = ", ".join("?" * len(cols))
                    connection.executemany(f'INSERT INTO "{table}" VALUES ({marks})', rows.get(t, []))
            connection.close()
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
