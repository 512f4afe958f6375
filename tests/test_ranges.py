"""Every numeric or enumerated field of every config group states its valid range beside its default
(mtad/ranges.py), and the path run.py takes (Hydra's composed config -> ``JobConfig`` -> ``Job``)
refuses each value outside it in one ``UserError`` naming the field, before the results store is
opened or a model loads; values on the boundary pass. A new field with neither a range nor a place
in ``FREE_TEXT`` fails here."""

import dataclasses
import math
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from mtad.catalogue import DECODERS
from mtad.decoding.sampling import SamplingConfig
from mtad.errors import UserError
from mtad.job import harness
from mtad.job.config import JobConfig
from mtad.job.wandb_log import WandbSettings
from mtad.judging.clients import JUDGES
from mtad.ranges import Each, Flag, Number, OneOf, Range, check_ranges, range_of
from mtad.runners.cpu import machine_cores
from mtad.runners.load import PairConfig
from tasks.catalogue import TASKS

CONF = Path(__file__).resolve().parent.parent / "conf"

# (config group, option selected, class); the root group is "".
GROUPS = ([("decoder", name, cls) for name, cls in DECODERS.items()]
          + [("task", name, cls) for name, cls in TASKS.items() if (CONF / "task" / f"{name}.yaml").exists()]
          + [("judge", name, cls) for name, cls in JUDGES.items()]
          + [("logger", "wandb", WandbSettings), ("pair", "tiny", PairConfig), ("sampling", None, SamplingConfig),
             ("", None, JobConfig)])

# Fields with no range, and why: free text (names, paths, model ids, URLs), or a group of its own.
FREE_TEXT = {
    PairConfig: {"name", "target", "draft",  # the pair's name and model sources: checked when loaded
                 "device",  # auto, cpu, cuda, cuda:N ...: torch's to parse
                 "attn_implementation",  # transformers' to check, per model
                 "stop_tokens"},  # any strings
    TASKS["spider"]: {"data_dir"}, TASKS["mtbench"]: {"data_dir"},
    JUDGES["openai"]: {"model", "base_url", "api_key_env"}, JUDGES["local"]: {"model", "device"},
    WandbSettings: {"project", "entity"},
    JobConfig: {"results_dir",  # a folder, checked writable by the recorder
                "pair", "decoder", "task", "sampling", "judge", "logger", "resolved"},  # groups, checked above
}
NUMERIC = r"\b(int|float|bool)\b"  # in a field's type, as written or as a class


def config_fields(cls):
    return [f for f in dataclasses.fields(cls) if f.init]


def field_cases():
    for group, option, cls in GROUPS:
        for f in config_fields(cls):
            if range_of(f) is not None:
                yield pytest.param(group, option, cls, f.name, id=f"{group or 'root'}-{option or ''}-{f.name}")


def unstated(cls, free: set[str]) -> tuple[list[str], list[str]]:
    """(fields with no range that are not free text, free-text fields whose type is numeric)."""
    unranged = [f.name for f in config_fields(cls) if range_of(f) is None and f.name not in free]
    numeric_free = [f.name for f in config_fields(cls) if f.name in free
                    and re.search(NUMERIC, f.type if isinstance(f.type, str) else repr(f.type))]
    return unranged, numeric_free


@pytest.mark.parametrize("group, option, cls", [(g, o, c) for g, o, c in GROUPS], ids=lambda x: str(x))
def test_every_field_states_its_range_or_is_free_text(group, option, cls):
    free = FREE_TEXT.get(cls, set())
    unranged, numeric_free = unstated(cls, free)
    assert not unranged, f"{cls.__name__}: state the valid range of {unranged} beside the default (mtad/ranges.py)"
    assert not numeric_free, f"{cls.__name__}: a numeric field is never free text: {numeric_free}"
    assert free <= {f.name for f in dataclasses.fields(cls)}, "FREE_TEXT names a field that is gone"


def test_a_new_field_without_a_range_is_caught():
    """Negative control: a decoder that grows a plain ``int`` field (or hides one as free text)."""
    @dataclasses.dataclass
    class Grown(DECODERS["spd"]):
        lookahead: int = 2
        note: str = ""
        count: int | None = None

    assert unstated(Grown, {"note"}) == (["lookahead", "count"], [])
    assert unstated(Grown, {"note", "lookahead", "count"}) == ([], ["lookahead", "count"])


def tries(rule: Range) -> list:
    """Values to try: zero, negatives, NaN, infinities, a fraction, a bool, each bound and just past it."""
    if isinstance(rule, Each):
        return [[], *([value] for value in tries(rule.item))]
    if isinstance(rule, OneOf):
        return [*rule.choices, "nope", "", 1]
    if isinstance(rule, Flag):
        return [True, False, 1, 0, "yes"]
    assert isinstance(rule, Number), rule
    values = [0, -1, -2.5, math.nan, math.inf, -math.inf, 0.5, 1, 3, True, "abc"]
    if rule.none:
        values.append(None)
    for bound in (rule.min, rule.max, rule.above, rule.below):
        if bound is not None and math.isfinite(bound):
            values += [bound, bound - 1, bound + 1] if rule.integer else [bound, bound - 0.001, bound + 0.001]
    return values


def literal(value) -> str:
    """``value`` as a Hydra command-line override writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # nan, inf, -inf: Hydra's float grammar
    if isinstance(value, list):
        return "[" + ",".join(map(literal, value)) + "]"
    if isinstance(value, str):
        return f"'{value}'"  # quoted: a string, never a number
    return repr(value)


class Reached(Exception):
    """The job got past every check to where it would open the results store / load a judge model."""


@pytest.fixture
def job_path(tmp_path, monkeypatch):
    """``run.py``'s path (compose, ``JobConfig.from_hydra``, ``Job``) up to the results store,
    which is replaced by a ``Reached`` raise; so is the local judge's model loading."""
    def recorder(*args, **kwargs):
        raise Reached("results store")

    def load(*args, **kwargs):
        raise Reached("judge model")

    monkeypatch.setattr(harness, "JobRecorder", recorder)
    import mtad.runners.prepare
    monkeypatch.setattr(mtad.runners.prepare, "resolve_source", load)

    def run(group: str, option: str | None, overrides: list[str]) -> None:
        # decoder ar needs nothing of any backend; synthetic reads no data
        chosen = {"pair": "tiny", "decoder": "ar", "task": "synthetic"}
        if group in ("decoder", "task", "logger", "judge") and option:
            chosen[group] = option
        if group == "judge":
            chosen["task"] = "mtbench"  # the task a judge grades
            overrides = ["judge.model=m", *overrides]
        base = [f"{g}={o}" for g, o in chosen.items()] + [f"results_dir={tmp_path / 'results'}"]
        if any(o.startswith("pair.threads=") for o in overrides):
            base.append("pair.backend=llamacpp")  # the backend that takes pair.threads (others refuse it)
        with initialize_config_dir(str(CONF), version_base=None):
            cfg = compose("config", overrides=base + overrides)
        harness.Job(JobConfig.from_hydra(cfg), tmp_path / "job")
    return run


@pytest.mark.parametrize("group, option, cls, name", list(field_cases()))
def test_the_job_refuses_exactly_the_values_outside_each_range(job_path, tmp_path, group, option, cls, name):
    rule = range_of(next(f for f in dataclasses.fields(cls) if f.name == name))
    key = f"{group}.{name}" if group else name
    wrong = []
    for value in tries(rule):
        try:
            job_path(group, option, [f"{key}={literal(value)}"])
            outcome = "ran"
        except Reached:
            outcome = "accepted"
        except UserError as err:
            outcome, message = "refused", str(err)
        expected = "accepted" if rule.accepts(value) else "refused"
        if outcome == expected == "refused" and not message.startswith(f"{key} must be {rule.describe()}, got "):
            wrong.append(f"{key}={literal(value)}: refused elsewhere or unclearly: {message}")
        elif outcome != expected and not (outcome == "refused" and value in extra_refusals(key)):
            wrong.append(f"{key}={literal(value)}: {outcome}, expected {expected} ({rule.describe()})")
    assert not wrong, "\n".join(wrong)
    assert not (tmp_path / "results").exists()


def extra_refusals(key: str) -> list:
    """Values a field's range admits that another check refuses, with its own message: one across
    fields, or what this machine lacks."""
    return {"task.k": [[3], [2]],  # k > num_samples (1)
            "task.mode": ["official"],  # the official Spider databases are not here
            "pair.threads": [n for n in range(machine_cores() + 1, 64)]}.get(key, [])  # above this machine's cores


def test_the_ranges_hold_the_obviously_bad_values():
    """Negative control for the walk above, which takes each range's word for what is valid: NaN is
    never a valid number, a bool or a fraction never an integer, and every range names a bound."""
    for group, option, cls in GROUPS:
        for f in config_fields(cls):
            rule = range_of(f)
            item = rule.item if isinstance(rule, Each) else rule
            if isinstance(item, Number):
                assert not item.accepts(math.nan) and not item.accepts(True) and not item.accepts("1")
                assert not item.accepts(-math.inf)
                if item.integer:
                    assert not item.accepts(0.5) and not item.accepts(2.0)
                assert any(b is not None for b in (item.min, item.max, item.above, item.below)) or item.integer


@pytest.mark.parametrize("group, option, override", [
    ("task", "humaneval", "task.timeout=0"), ("task", "humaneval", "task.timeout=-1"),
    ("task", "spider", "task.timeout=0"), ("task", "spider", "task.timeout=-2"),
    ("task", "mtbench", "task.retries=-1"), ("", None, "meter_idle_seconds=-1"), ("", None, "warmup=-1"),
    ("", None, "meter=joulemeter"), ("logger", "wandb", "logger.mode=cloud"), ("pair", None, "pair.dtype=int3"),
    ("sampling", None, "sampling.temperature=nan"), ("decoder", "mtad", "decoder.tau=nan"),
])
def test_the_values_of_issue_39_are_refused(job_path, group, option, override):
    with pytest.raises(UserError, match=f"^{override.split('=')[0]} must be "):
        job_path(group, option, [override])


@pytest.mark.parametrize("group, option, override", [
    ("task", "humaneval", "task.timeout=0.5"), ("task", "mtbench", "task.retries=0"), ("", None, "warmup=0"),
    ("", None, "meter_idle_seconds=0"), ("decoder", "mtad", "decoder.tau=inf"), ("sampling", None, "sampling.top_p=1"),
    ("sampling", None, "sampling.temperature=0"), ("sampling", None, "sampling.top_k=0"),
])
def test_the_boundaries_that_are_valid_pass(job_path, group, option, override):
    with pytest.raises(Reached):
        job_path(group, option, [override])


def test_the_message_names_field_range_and_value():
    from mtad.ranges import Int, Real, ranged

    @dataclasses.dataclass
    class Settings:
        timeout: float = ranged(10.0, Real(above=0, note="seconds"))
        limit: int | None = ranged(None, Int(min=1, none="all"))
        tau: float = ranged(0.5, Real(above=0, max=math.inf))

    with pytest.raises(UserError, match=r"^task\.timeout must be a finite number > 0 \(seconds\), got 0$"):
        check_ranges(Settings(timeout=0), "task")
    with pytest.raises(UserError, match=r"^task\.limit must be an integer >= 1 or null \(null: all\), got 0$"):
        check_ranges(Settings(limit=0), "task")
    with pytest.raises(UserError, match=r"^task\.tau must be a number in \(0, inf\], got nan$"):
        check_ranges(Settings(tau=math.nan), "task")
    check_ranges(Settings(tau=math.inf, limit=None), "task")
