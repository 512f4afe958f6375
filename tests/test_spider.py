"""Spider: safe execution, execution match, synthetic test-suite databases, the paper's prompt."""

import hashlib
import json
import sqlite3
import time
from pathlib import Path

import pytest

from tasks.base import shared_data
from tasks.spider import Spider, extract_sql, paper_prompt, sql_ended
from tasks.spider_synth import SchemaDatabases, gold_literals
from tasks.sqlexec import QueryError, execute, has_order_by, results_match

DATA = Path(__file__).resolve().parent.parent / shared_data("spider")  # $MTAD_DATA, else ../shared/data


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "shop.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE item (id INTEGER, name TEXT, price REAL, shop TEXT)")
        db.executemany("INSERT INTO item VALUES (?, ?, ?, ?)", [
            (1, "pen", 1.5, "a"), (2, "ink", 3.0, "a"), (3, "pad", 2.0, "b"), (4, "pen", 1.5, "b")])
        db.execute("INSERT INTO item VALUES (5, CAST(X'636166E9' AS TEXT), 9.0, 'c')")  # text that is not UTF-8
    return path


def match(path, gold, predicted):
    return results_match(execute(path, gold), execute(path, predicted), has_order_by(gold))


def test_execution_match(database):
    assert match(database, "SELECT name FROM item WHERE shop = 'a'", "SELECT name FROM item WHERE shop = 'a'")
    assert match(database, "SELECT name, price FROM item WHERE shop = 'a'",
                 "SELECT price, name FROM item WHERE shop = 'a'")                      # columns permuted
    assert match(database, "SELECT name FROM item WHERE shop = 'a'",
                 "SELECT name FROM item WHERE shop = 'a' ORDER BY name")               # gold is unordered
    assert not match(database, "SELECT name FROM item ORDER BY price",
                     "SELECT name FROM item ORDER BY price DESC")                        # gold orders
    assert not match(database, "SELECT name FROM item WHERE shop = 'a'", "SELECT name FROM item")  # no WHERE
    assert not match(database, "SELECT name FROM item", "SELECT DISTINCT name FROM item")  # bags, not sets
    assert not match(database, "SELECT name, shop FROM item", "SELECT name, name FROM item")
    assert has_order_by("SELECT a FROM t ORDER BY a") and not has_order_by("SELECT a FROM (SELECT a FROM t ORDER BY a)")
    assert "caf" in execute(database, "SELECT name FROM item WHERE id = 5")[0][0]   # lenient decoding


@pytest.mark.parametrize("sql", [
    "DROP TABLE item", "DELETE FROM item", "UPDATE item SET price = 0", "INSERT INTO item VALUES (9, 'x', 1, 'a')",
    "ATTACH DATABASE '{tmp}/new.sqlite' AS other", "PRAGMA writable_schema = ON", "PRAGMA query_only = OFF",
    "CREATE TABLE evil (x)", "SELECT 1; DROP TABLE item", "VACUUM",
])
def test_hostile_predictions_leave_the_database_untouched(database, tmp_path, sql):
    before = hashlib.sha256(database.read_bytes()).hexdigest()
    with pytest.raises(QueryError):
        execute(database, sql.format(tmp=tmp_path))
    assert hashlib.sha256(database.read_bytes()).hexdigest() == before
    assert not (tmp_path / "new.sqlite").exists()
    assert execute(database, "SELECT count(*) FROM item") == [(5,)]


def test_runaway_query_is_interrupted_within_its_limit(database):
    began = time.monotonic()
    with pytest.raises(QueryError, match="interrupted"):
        execute(database, "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT max(x) FROM n",
                timeout=0.5)
    assert time.monotonic() - began < 2.0


REPLIES = [" SELECT a FROM t; \n\nExample\nSchema:", "```sql\nSELECT a\nFROM t;\n```\nExplanation",
           "SELECT a FROM t", "```sqlite\nSELECT a FROM t\n```\nthen; more", "SELECT a FROM t; ```sql\nSELECT b```",
           "Here it is:\n```SQL\nSELECT 1```", "```;"]


def test_extract_sql():
    assert [extract_sql(reply) for reply in REPLIES] == [
        "SELECT a FROM t", "SELECT a\nFROM t", "SELECT a FROM t", "SELECT a FROM t", "SELECT a FROM t", "SELECT 1", ""]


def test_any_prefix_where_the_sql_has_ended_has_the_whole_replys_sql():
    for reply in REPLIES:
        for n in range(len(reply) + 1):
            if sql_ended(reply[:n]):
                assert extract_sql(reply[:n]) == extract_sql(reply), (reply, n)
    assert not sql_ended("SELECT a FROM t") and not sql_ended("```sql\nSELECT a") and sql_ended("```sql\nSELECT a`` `;")


EXPECTED_PROMPT_0 = (
    "[INST] <<SYS>> You are a SQL expert. You need to write the correct SQL based on the user question and database "
    "schemas. Below are some examples <</SYS>>\nExample\nSchema:\n"
    "Table department, columns = [*,Department_ID,Name,Creation,Ranking,Budget_in_Billions,Num_Employees]\n"
    "Table head, columns = [*,head_ID,name,born_state,age]\n"
    "Table management, columns = [*,department_ID,head_ID,temporary_acting]\n"
    "Foreign_keys = [management.head_ID = head.head_ID,management.department_ID = department.Department_ID]\n"
    "Question: \"How many heads of the departments are older than 56 ?\"\n"
    "SQL: SELECT count(*) FROM head WHERE age  >  56; \n\n"
    "Schema:\n"
    "Table concert, columns = [*,concert_ID,concert_Name,Theme,Stadium_ID,Year]\n"
    "Table singer, columns = [*,Singer_ID,Name,Country,Song_Name,Song_release_year,Age,Is_male]\n"
    "Table singer_in_concert, columns = [*,concert_ID,Singer_ID]\n"
    "Table stadium, columns = [*,Stadium_ID,Location,Name,Capacity,Highest,Lowest,Average]\n"
    "\nQuestion: How many singers do we have?\nSQL:"
)


@pytest.fixture(scope="module")
def dev():
    tables = {s["db_id"]: s for s in json.loads((DATA / "tables.json").read_text())}
    return json.loads((DATA / "dev.json").read_text()), tables


def test_paper_prompt_of_dev_item_0(dev):
    questions, tables = dev
    assert paper_prompt(questions[0]["question"], tables[questions[0]["db_id"]]) == EXPECTED_PROMPT_0


def literals_by_database(questions):
    out = {}
    for q in questions:
        for column, values in gold_literals(q["sql"]).items():
            out.setdefault(q["db_id"], {}).setdefault(column, set()).update(values)
    return out


def test_synthetic_databases_are_reproducible_keep_foreign_keys_and_hold_the_literals(dev, tmp_path):
    questions, tables = dev
    literals = literals_by_database(questions)
    for db_id in sorted(literals):  # the 20 dev databases
        schema = tables[db_id]
        first = SchemaDatabases(schema, literals[db_id], tmp_path / "a", seed=7).paths()
        again = SchemaDatabases(schema, literals[db_id], tmp_path / "b", seed=7).paths()
        other = SchemaDatabases(schema, literals[db_id], tmp_path / "c", seed=8).paths()
        assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
        assert first[0].read_bytes() != other[0].read_bytes() and first[0].read_bytes() != first[1].read_bytes()
        names = schema["column_names_original"]
        table = lambda c: schema["table_names_original"][names[c][0]]  # noqa: E731
        for path in first:
            for column, referenced in schema["foreign_keys"]:
                orphans = execute(path, f'SELECT "{names[column][1]}" FROM "{table(column)}" WHERE "{names[column][1]}" '
                                        f'IS NOT NULL AND "{names[column][1]}" NOT IN '
                                        f'(SELECT "{names[referenced][1]}" FROM "{table(referenced)}")')
                assert not orphans, f"{db_id}: foreign key {names[column]} -> {names[referenced]} broken"
            for column, values in literals[db_id].items():
                present = {v for (v,) in execute(path, f'SELECT "{names[column][1]}" FROM "{table(column)}"')}
                assert {str(v) for v in values} <= {str(v) for v in present}, f"{db_id}: {names[column]} lacks literals"
    assert literals["concert_singer"][tables["concert_singer"]["column_names_original"].index([1, "Country"])] >= {
        "France"}


def test_gold_against_itself_is_correct_on_every_question_whose_gold_runs(dev, tmp_path, monkeypatch):
    monkeypatch.setenv("MTAD_HOME", str(tmp_path))
    questions, _ = dev
    task = Spider(data_dir=str(DATA), limit=None, mode="synthetic")
    verdicts = [task.execution_match(q["query"], q["query"], q["db_id"]) for q in questions]
    runs = [v for v in verdicts if not v["gold_failed"]]
    assert len(runs) > 0.95 * len(questions)
    assert all(v["correct"] for v in runs)
    assert sum(v["gold_nonempty"] for v in runs) > 0.8 * len(runs)
    wrong = task.execution_match(questions[0]["query"], "SELECT count(*) + 1 FROM singer", questions[0]["db_id"])
    assert not wrong["correct"] and wrong["mode"] == "synthetic"


def test_bad_configuration_is_one_clear_error(tmp_path):
    from mtad.errors import UserError

    with pytest.raises(UserError, match="dev.json, tables.json not found"):
        Spider(data_dir=str(tmp_path))
    with pytest.raises(UserError, match="task.mode=official but 20 databases are missing"):
        Spider(data_dir=str(DATA), limit=None, mode="official")
    with pytest.raises(UserError, match="task.limit must be an integer >= 1"):
        Spider(data_dir=str(DATA), limit=0)
