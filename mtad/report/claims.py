"""The paper's claims beside what our store measures: the report's first section. Every number
comes from the paper's table (``results/paper_table.csv``) and from the rows of
``paired.comparisons``, the rows ``comparisons.json`` holds; none is written by hand.

A claim is a direction: MTAD against a reference decoder, on tokens/s or J/token as a ratio
(MTAD / reference) or on the task's declared quality as a difference (MTAD - reference, in the
metric's points), per task. The paper measured its pairs on its hardware and we measure ours on
ours; a tokens/s, a J/token or a score does not carry from one pair or machine to another, so the
two meet only as ratios and differences, each taken within its own pair and machine.

The verdict (``verdict``), per task and MTAD variant:
- ``holds``: our 95% interval lies wholly on the paper's side of no difference (ratio 1,
  difference 0), and for quality the Holm-adjusted p is below ``ALPHA`` as well, which is
  ``comparisons.md``'s quality verdict (``paired.quality_verdict``): quality is one test of a
  family of every decoder against AR and SpD on every task, and among ~25 tests an interval that
  just clears 0 turns up by chance;
- ``contradicted``: the same test establishes the other direction (MTAD slower, more energy per
  token, lower quality);
- ``cannot tell``: neither (the interval holds no difference, or the Holm p is not below ALPHA);
- ``not measured here``: the store holds no such comparison (no energy meter on the machine, a
  task or reference decoder not run, MTAD not in a speed sitting, answers not yet rated).
Speed and energy use the interval alone, as ``comparisons.md``'s tok/s verdict does: one sitting
per task makes one such test per claim and task.
Whether the paper's own value lies inside our interval is shown beside the verdict and decides
none: the paper's size was measured on another pair and machine, where drafting pays off
differently, so an interval that excludes the paper's 1.15x says that size did not carry over to
this pair and machine, not that MTAD is not faster. Calling that 'contradicted' would let a change
of hardware refute a claim made on other hardware; a reviewer asks first whether the direction
holds here, then how far the size differs, and the page answers both, apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from mtad.report.paired import ALPHA, Estimate, p_text
from tasks.base import Metric

HOLDS, CONTRADICTED, CANNOT_TELL, NOT_MEASURED = "holds", "contradicted", "cannot tell", "not measured here"
VERDICTS = (HOLDS, CONTRADICTED, CANNOT_TELL, NOT_MEASURED)
SUBJECT = "mtad"  # the paper's decoder: the comparisons' rows whose A is one of its variants


@dataclass(frozen=True)
class Claim:
    says: str         # the claim, as the page states it
    measure: str      # the comparison row's estimate: 'speed', 'energy' or 'quality'
    paper: str        # the paper table's metric behind the paper's value
    reference: str    # the decoder MTAD is compared with
    ratio: bool       # MTAD / reference (else MTAD - reference)
    higher: bool      # the paper's side: above no difference (else below)


CLAIMS = (
    Claim("MTAD is faster than SpD (tokens/s, MTAD / SpD)", "speed", "tokens_per_s", "spd", True, True),
    Claim("MTAD uses less energy than SpD (J/token, MTAD / SpD)", "energy", "joules_per_token", "spd", True, False),
    Claim("MTAD's output is better than SpD's (quality, MTAD - SpD)", "quality", "quality", "spd", False, True),
    Claim("MTAD's output is better than AR's (quality, MTAD - AR)", "quality", "quality", "ar", False, True),
)

RULE = (f"Verdict: holds when our 95% interval lies wholly on the paper's side of no difference (ratio 1, "
        f"difference 0), for quality also with the Holm-adjusted p < {ALPHA:g}; contradicted when the same test "
        "shows the other direction; cannot tell otherwise; not measured here when the store has no such "
        "measurement. Whether the paper's value falls inside our interval is shown apart and decides no verdict: "
        "it was measured on another pair and machine.")


def paper_pairs(paper: dict[tuple, dict]) -> list[str]:
    """The pairs the paper's table covers."""
    return sorted({pair for _, pair, _ in paper})


def verdict(claim: Claim, row: dict | None) -> str:
    """The claim's verdict on one comparison row (None: no row; see the module doc for the rule)."""
    estimate = row.get(claim.measure) if row else None
    if not isinstance(estimate, Estimate) or estimate.value is None:
        return NOT_MEASURED
    if claim.measure == "quality":  # the interval and the Holm p, as comparisons.md decides it
        direction = {"higher": 1, "lower": -1}.get(row["verdict"], 0)
    else:
        direction = {"higher": 1, "lower": -1}.get(estimate.verdict(1.0 if claim.ratio else 0.0), 0)
    side = 1 if claim.higher else -1
    return HOLDS if direction == side else CONTRADICTED if direction == -side else CANNOT_TELL


def paper_values(claim: Claim, task: str, paper: dict[tuple, dict]) -> list[tuple[str, float | None]]:
    """(paper pair, the paper's MTAD / reference or MTAD - reference on it) for each of its pairs;
    None where its table lacks either row (it ran no AR)."""
    out = []
    for pair in paper_pairs(paper):
        mine, theirs = paper.get((task, pair, SUBJECT), {}), paper.get((task, pair, claim.reference), {})
        if claim.paper in mine and claim.paper in theirs:
            a, b = mine[claim.paper], theirs[claim.paper]
            out.append((pair, a / b if claim.ratio else a - b))
        else:
            out.append((pair, None))
    return out


def where(value: float, ci: tuple[float, float] | None) -> str:
    """Where the paper's value lies against our interval."""
    if ci is None:
        return "-"
    return "below" if value < ci[0] else "above" if value > ci[1] else "inside"


def assess(claim: Claim, task: str, pair: str, subject: str, row: dict | None, paper: dict[tuple, dict],
           metric: Metric | None) -> dict:
    """One line of the claims table, as text: the paper's values, ours with its interval, the Holm
    p (quality), where the paper's values lie against our interval, and the verdict."""
    digits = 2 if claim.ratio else metric.paired_digits if metric else 1
    form = f".{digits}f" if claim.ratio else f"+.{digits}f"
    values = paper_values(claim, task, paper)
    estimate = row.get(claim.measure) if row else None
    if isinstance(estimate, Estimate) and estimate.value is not None:
        ours = estimate.text(digits, signed=not claim.ratio)
    else:  # why there is no number
        missing = {"speed": "no speed sitting", "quality": "not rated",
                   "energy": "no meter" if row and row.get("speed") else "no speed sitting"}
        ours = "not run" if row is None else missing[claim.measure]
    known = [v for _, v in values if v is not None]
    places = [where(v, estimate.ci) for v in known] if isinstance(estimate, Estimate) and estimate.ci else []
    return {"claim": claim.says, "task": task, "pair": pair, "subject": subject,
            "paper": " / ".join("-" if v is None else f"{v:{form}}" for _, v in values) if known else "not in paper",
            "ours": ours, "p_holm": p_text(row.get("p_holm")) if row and claim.measure == "quality" else "-",
            "paper_in_ours": (places[0] if len(set(places)) == 1 else " / ".join(places)) if places else "-",
            "verdict": verdict(claim, row)}


def claim_rows(rows: list[dict], paper: dict[tuple, dict], metrics: dict[str, Metric | None]) -> list[dict]:
    """Per claim, one line per task, pair and MTAD variant our comparisons hold (``rows``:
    ``paired.comparisons``), then one per task only the paper ran (``not measured here``)."""
    ours = [r for r in rows if r["a"].split(" ")[0] == SUBJECT]
    subjects = list(dict.fromkeys((r["task"], r["pair"], r["a"]) for r in ours))
    unrun = sorted({task for task, _, _ in paper} - {task for task, _, _ in subjects})
    out = []
    for claim in CLAIMS:
        for task, pair, subject in subjects:
            found = [r for r in ours if (r["task"], r["pair"], r["a"], r["b"]) == (task, pair, subject, claim.reference)]
            out += [assess(claim, task, pair, subject, row, paper, metrics.get(task)) for row in found or [None]]
        out += [assess(claim, task, "-", "-", None, paper, metrics.get(task)) for task in unrun]
    # a further pair (another backend) that did not measure a claim adds nothing to the task's first
    # line saying so: drop it, so the answer stays on the first screen
    said: set[tuple] = set()
    kept = []
    for line in out:
        key = (line["claim"], line["task"], line["subject"])
        if line["verdict"] == NOT_MEASURED and key in said:
            continue
        said.add(key)
        kept.append(line)
    return kept
