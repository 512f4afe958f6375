"""Spider (text-to-SQL), scored by execution accuracy on official or synthetic databases.

Data: the official layout under ``data_dir``: ``dev.json``, ``tables.json`` and, when the user
has them, ``database/<db_id>/<db_id>.sqlite``. Mode ``official`` runs queries on those files;
``synthetic`` on test-suite databases generated from ``tables.json`` (``spider_synth``); ``auto``
takes official when every needed database is present. Every verdict and summary names its mode.

Prompt ``paper``: the authors' one-shot prompt, byte for byte
(docs/decoders.md#spider-one-shot-prompt), fed as raw text; ``chat``: the same text as the user
turn of the pair's chat template. The SQL is the decoded output up to its first ``;`` (the content
of a code fence that opens before it); generation stops there.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path

from mtad.errors import UserError
from mtad.ranges import SEED, Int, OneOf, Real, ranged
from mtad.runners.prepare import mtad_home
from mtad.runners.pair import PairInfo
from tasks.base import Example, Metric, Task, shared_data, spread
from tasks.spider_synth import SchemaDatabases, gold_literals
from tasks.sqlexec import QueryError, execute, has_order_by, results_match

ONE_SHOT = (
    "[INST] <<SYS>> You are a SQL expert. You need to write the correct SQL based on the user question and "
    "database schemas. Below are some examples <</SYS>>\n"
    "Example\n"
    "Schema:\n"
    "Table department, columns = [*,Department_ID,Name,Creation,Ranking,Budget_in_Billions,Num_Employees]\n"
    "Table head, columns = [*,head_ID,name,born_state,age]\n"
    "Table management, columns = [*,department_ID,head_ID,temporary_acting]\n"
    "Foreign_keys = [management.head_ID = head.head_ID,management.department_ID = department.Department_ID]\n"
    'Question: "How many heads of the departments are older than 56 ?"\n'
    "SQL: SELECT count(*) FROM head WHERE age  >  56; \n"
    "\n"
)
MODES = ("auto", "official", "synthetic")


def schema_text(schema: dict) -> str:
    """``Table <name>, columns = [*,<col>,...]`` lines, tables sorted by name (the authors' pandas
    groupby order), original names, no foreign keys."""
    columns = [(schema["table_names_original"][t], name) for t, name in schema["column_names_original"] if t >= 0]
    lines = []
    for table, group in groupby(sorted(columns, key=lambda c: c[0]), key=lambda c: c[0]):
        lines.append(f"Table {table}, columns = [*,{','.join(name for _, name in group)}]\n")
    return "".join(lines)


def paper_prompt(question: str, schema: dict) -> str:
    return f"{ONE_SHOT}Schema:\n{schema_text(schema)}\nQuestion: {question}\nSQL:"


FENCE = re.compile(r"```(?:sqlite|sql)?", re.IGNORECASE)


def _sql_span(text: str) -> tuple[int, int | None]:
    """Where the SQL of a reply starts and ends (None: not ended yet). A code fence that opens
    before the first ';' starts it (the fence line dropped); it ends at the first ';' after
    its start or at the closing fence. Text appended to a reply whose SQL has ended cannot
    change the SQL, which is what lets generation stop there."""
    semicolon, fence = text.find(";"), text.find("```")
    start, closers = 0, [";"]
    if fence != -1 and (semicolon == -1 or fence < semicolon):
        start, closers = FENCE.match(text, fence).end(), [";", "```"]
    ends = [i for i in (text.find(c, start) for c in closers) if i != -1]
    return start, min(ends) if ends else None


def extract_sql(text: str) -> str:
    """The SQL of a reply: the first fenced block's content if it opens before any ';', else
    the text; up to the first ';'."""
    start, end = _sql_span(text)
    return text[start:end].strip()


def sql_ended(text: str) -> bool:
    return _sql_span(text)[1] is not None


@dataclass
class Spider(Task):
    name = "spider"
    version = 2  # 2: generation stops where the SQL ends (stop_rule); a fence after the first ';' is not read
    data_dir: str = field(default_factory=lambda: shared_data("spider"))
    limit: int | None = ranged(100, Int(min=1, none="all 1034"))  # the first N dev questions (the paper: 100)
    sample: int | None = ranged(None, Int(min=1, none="all of limit"))  # N of those, round-robin over databases
    mode: str = ranged("auto", OneOf(MODES))
    # paper (raw one-shot text) | chat (the same text through the chat template)
    prompt: str = ranged("paper", OneOf(("paper", "chat")))
    databases: int = ranged(3, Int(min=1, note="synthetic databases per schema"))
    database_seed: int = ranged(0, SEED)
    timeout: float = ranged(5.0, Real(above=0, note="seconds per query"))
    metric = Metric(key="execution_accuracy", title="exec. acc. %", solved_or_not=True,
                    labels=(("database_mode", "{} DBs"),))

    @classmethod
    def scores(cls, verdict: dict) -> list[float | None]:
        """100 if the prediction matched, else 0; unrated (None) when the gold query failed, which
        ``quality`` leaves out of execution accuracy too."""
        return [None] if verdict.get("gold_failed") else [100.0 if verdict.get("correct") else 0.0]

    def __post_init__(self):
        super().__post_init__()
        root = Path(self.data_dir)
        missing = [name for name in ("dev.json", "tables.json") if not (root / name).is_file()]
        if missing:
            raise UserError(f"spider: {', '.join(missing)} not found in task.data_dir={root}")
        self.dev = json.loads((root / "dev.json").read_text())  # all of it: synthetic data plants every literal
        self.questions = spread(self.dev[: self.limit], self.sample, lambda question: question["db_id"])
        self.schemas = {s["db_id"]: s for s in json.loads((root / "tables.json").read_text())}
        self._paths: dict[str, list[Path]] = {}
        self.resolved_mode = self._resolve_mode()

    def _official(self, db_id: str) -> Path:
        return Path(self.data_dir) / "database" / db_id / f"{db_id}.sqlite"

    def _resolve_mode(self) -> str:
        needed = {q["db_id"] for q in self.questions}
        have = all(self._official(db).is_file() for db in needed)
        if self.mode == "official" and not have:
            absent = sorted(db for db in needed if not self._official(db).is_file())
            raise UserError(f"spider: task.mode=official but {len(absent)} databases are missing, e.g. "
                            f"{self._official(absent[0])}; use task.mode=synthetic or auto")
        return "official" if self.mode == "official" or (self.mode == "auto" and have) else "synthetic"

    def database_paths(self, db_id: str) -> list[Path]:
        if db_id not in self._paths:
            if self.resolved_mode == "official":
                self._paths[db_id] = [self._official(db_id)]
            else:
                literals: dict[int, set] = {}  # from every dev query of this database, not only the subset
                for question in self.dev:
                    if question["db_id"] == db_id:
                        for column, values in gold_literals(question["sql"]).items():
                            literals.setdefault(column, set()).update(values)
                builder = SchemaDatabases(self.schemas[db_id], literals, mtad_home() / "spider_synthetic",
                                          self.database_seed, self.databases)
                self._paths[db_id] = builder.paths()
        return self._paths[db_id]

    def examples(self, pair: PairInfo) -> list[Example]:
        if pair.tokenizer is None:
            raise UserError(f"spider needs a model pair with a tokenizer; {pair.name!r} has none")
        out = []
        for i, question in enumerate(self.questions):
            text = paper_prompt(question["question"], self.schemas[question["db_id"]])
            if self.prompt == "chat":
                ids = pair.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=True,
                                                         add_generation_prompt=True, return_dict=False)
            else:
                ids = pair.tokenizer(text).input_ids
            out.append(Example(f"spider/{i}", list(ids), {"question": question}))
        return out

    def stop_rule(self, example: Example, pair: PairInfo):
        """Stop once the SQL has ended (its ';' or closing fence): the rest is never scored."""
        return lambda tokens: sql_ended(pair.tokenizer.decode(tokens, skip_special_tokens=True))

    def score(self, example: Example, replies: list[list[int]], pair: PairInfo) -> dict:
        (tokens,) = replies  # one turn
        question = example.data["question"]
        sql = extract_sql(pair.tokenizer.decode(tokens, skip_special_tokens=True))
        match = self.execution_match(question["query"], sql, question["db_id"])
        return {"db_id": question["db_id"], "sql": sql, **match}

    def execution_match(self, gold_sql: str, predicted_sql: str, db_id: str) -> dict:
        """Execution match of a prediction against the gold query on every database of ``db_id``."""
        verdict = {"mode": self.resolved_mode, "correct": False, "gold_failed": False, "gold_nonempty": False,
                   "error": None}
        paths = self.database_paths(db_id)
        try:
            golds = [execute(path, gold_sql, self.timeout) for path in paths]
        except QueryError as err:
            return {**verdict, "gold_failed": True, "error": f"gold: {err}"}
        verdict["gold_nonempty"] = any(golds)
        ordered = has_order_by(gold_sql)
        for path, gold in zip(paths, golds):
            try:
                predicted = execute(path, predicted_sql, self.timeout)
            except QueryError as err:
                return {**verdict, "error": str(err)}
            if not results_match(gold, predicted, ordered):
                return verdict
        return {**verdict, "correct": True}

    def quality(self, verdicts: list[dict]) -> dict:
        scored = [v for v in verdicts if not v["gold_failed"]]
        return {
            "execution_accuracy": 100.0 * sum(v["correct"] for v in scored) / len(scored) if scored else 0.0,
            "gold_failed": len(verdicts) - len(scored),
            "gold_nonempty_share": sum(v["gold_nonempty"] for v in scored) / len(scored) if scored else 0.0,
            "database_mode": self.resolved_mode,
        }
