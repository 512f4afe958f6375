"""The report answers first (issue 37): the paper's claims against the store by a stated rule
(mtad/report/claims.py), from the same rows as comparisons.json; every plot has its caption; no
two series of one plot's axes look alike. The page in a browser: test_report_browser.py."""

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from mtad.report import plots
from mtad.report.claims import CLAIMS, VERDICTS, claim_rows, verdict
from mtad.report.html import claims_table
from mtad.report.paired import Estimate, quality_verdict
from mtad.report.rows import load_paper
from tasks.catalogue import TASKS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
PAPER = load_paper(RESULTS / "paper_table.csv")
SPEED, ENERGY, VS_SPD, VS_AR = CLAIMS


def quality(value, ci, p_holm):
    """A comparison row's quality, judged as comparisons.md judges it."""
    row = {"quality": Estimate(value, ci), "p_holm": p_holm}
    return {**row, "verdict": quality_verdict(row)}


def test_speed_and_energy_verdicts_are_their_interval_against_no_difference():
    assert verdict(SPEED, {"speed": Estimate(1.2, (1.05, 1.31))}) == "holds"
    assert verdict(SPEED, {"speed": Estimate(0.91, (0.86, 0.98))}) == "contradicted"
    assert verdict(SPEED, {"speed": Estimate(0.95, (0.88, 1.04))}) == "cannot tell"
    assert verdict(SPEED, {"speed": Estimate(0.95, None)}) == "cannot tell"
    # less energy is the paper's side
    assert verdict(ENERGY, {"energy": Estimate(0.8, (0.7, 0.9))}) == "holds"
    assert verdict(ENERGY, {"energy": Estimate(1.2, (1.1, 1.3))}) == "contradicted"
    # no meter, no speed sitting, no comparison at all
    assert verdict(ENERGY, {"speed": Estimate(0.95, (0.88, 1.04)), "energy": None}) == "not measured here"
    assert verdict(SPEED, quality(3.9, (-2.6, 10.0), 1.0)) == "not measured here"
    assert verdict(VS_AR, None) == "not measured here"


def test_a_quality_claim_holds_only_where_holm_agrees_with_the_interval():
    # the interval clears 0 but Holm's p does not (the committed Spider MTAD - AR): cannot tell
    assert verdict(VS_AR, quality(8.0, (2.5, 13.5), 0.226)) == "cannot tell"
    assert verdict(VS_AR, quality(8.0, (2.5, 13.5), 0.01)) == "holds"
    assert verdict(VS_SPD, quality(-8.0, (-13.5, -2.5), 0.01)) == "contradicted"
    assert verdict(VS_SPD, quality(3.0, (-1.0, 7.0), 0.01)) == "cannot tell"  # a small p, an interval holding 0
    assert verdict(VS_SPD, quality(None, None, None)) == "not measured here"  # answers not rated yet


def comparison(b, speed=None, energy=None, q=None, task="humaneval"):
    return {"task": task, "pair": "ours", "a": "mtad (tau=0.5)", "b": b, "speed": speed, "energy": energy,
            **(q or quality(None, None, None))}


def test_claim_lines_carry_the_papers_ratio_and_difference_beside_ours():
    metrics = {name: task.metric for name, task in TASKS.items()}
    rows = [comparison("ar", q=quality(2.6, (-3.3, 8.5), 1.0)),
            comparison("spd", Estimate(0.95, (0.88, 1.04)), None, quality(3.9, (-2.6, 10.0), 1.0))]
    lines = {(r["claim"], r["task"]): r for r in claim_rows(rows, PAPER, metrics)}
    speed = lines[(SPEED.says, "humaneval")]
    # the paper's MTAD / SpD on llama3 (25.6 / 22.2) and llama3-instruct (24.8 / 22.2): above our interval
    assert (speed["paper"], speed["ours"], speed["p_holm"], speed["paper_in_ours"], speed["verdict"]) == \
        ("1.15 / 1.12", "0.95 [0.88, 1.04]", "-", "above", "cannot tell")
    energy = lines[(ENERGY.says, "humaneval")]
    assert (energy["paper"], energy["ours"], energy["verdict"]) == ("0.85 / 0.97", "no meter", "not measured here")
    better = lines[(VS_SPD.says, "humaneval")]
    assert (better["paper"], better["ours"], better["p_holm"], better["paper_in_ours"]) == \
        ("+6.1 / +5.5", "+3.9 [-2.6, +10.0]", "1.000", "inside")
    assert lines[(VS_AR.says, "humaneval")]["paper"] == "not in paper"  # the paper ran no AR
    # a task the paper ran and we did not: every claim not measured here
    for claim in CLAIMS:
        assert lines[(claim.says, "spider")]["verdict"] == lines[(claim.says, "mtbench")]["verdict"] == \
            "not measured here"


def test_a_second_pair_adds_measured_lines_but_no_second_not_measured_line():
    metrics = {name: task.metric for name, task in TASKS.items()}
    first = [comparison("spd", Estimate(0.84, (0.77, 0.91)), None, quality(3.9, (-2.6, 10.0), 1.0))]
    second = [{**r, "pair": "ours+llamacpp", **quality(None, None, None)}  # speed only, nothing rated
              for r in [comparison("spd", Estimate(0.79, (0.71, 0.88)))]]
    lines = [r for r in claim_rows(first + second, PAPER, metrics) if r["task"] == "humaneval"]
    by_claim = {claim.says: [(r["pair"], r["verdict"]) for r in lines if r["claim"] == claim.says] for claim in CLAIMS}
    assert by_claim[SPEED.says] == [("ours", "contradicted"), ("ours+llamacpp", "contradicted")]
    assert by_claim[ENERGY.says] == [("ours", "not measured here")]  # the second pair's says nothing new
    assert by_claim[VS_SPD.says] == [("ours", "cannot tell")]
    assert by_claim[VS_AR.says] == [("ours", "not measured here")]  # no AR comparison in either pair


def committed_comparisons() -> list[dict]:
    """comparisons.json, its estimates as Estimates again."""
    rows = json.loads((RESULTS / "comparisons.json").read_text())
    return [{k: Estimate(v["value"], tuple(v["ci"]) if v["ci"] else None) if isinstance(v, dict) and "ci" in v else v
             for k, v in row.items()} for row in rows]


def test_the_committed_page_shows_the_claims_of_comparisons_json():
    rows = committed_comparisons()
    metrics = {name: task.metric for name, task in TASKS.items()}
    lines = claim_rows(rows, PAPER, metrics)
    assert {line["verdict"] for line in lines} <= set(VERDICTS)
    assert all(line["verdict"] == "not measured here" for line in lines if line["claim"] == ENERGY.says)  # no meter
    page = (RESULTS / "report" / "index.html").read_text()
    assert claims_table(lines, PAPER, len({r["pair"] for r in rows}) > 1) in page
    assert page.index("id=claims") < page.index("id=comparisons") < page.index("id=plots") < page.index("id=table")


def test_every_plot_has_a_caption():
    made = sorted((RESULTS / "plots").glob("*.png"))
    assert made and all(len(plots.caption(path)) > 40 for path in made)
    with pytest.raises(KeyError, match="no caption"):
        plots.caption(Path("a_new_plot.png"))


def looks(ax) -> list[tuple]:
    return [(line.get_color(), line.get_marker(), line.get_linestyle()) for line in ax.get_lines()]


def test_no_two_series_of_one_axes_look_alike(monkeypatch, tmp_path):
    """14 series over three tasks, one of them with MTAD at 12 values of tau (one colour)."""
    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, folder, name: drawn.append(fig) or [])
    run = lambda task, decoder, params: {"task": task, "pair": "ours", "decoder": decoder,  # noqa: E731
                                         "decoder_params": params, "acceptance_per_position": [0.8, 0.6, 0.5]}
    runs = [run("a", d, {}) for d in ("bild", "typical", "spd", "hf_assisted", "spectr", "specinfer", "mcss", "mtad")]
    runs += [run("b", "spd", {}), run("b", "mtad", {})]
    runs += [run("c", "mtad", {"tau": t / 10}) for t in range(12)] + [run("c", "spd", {}), run("c", "ar", {})]
    plots.acceptance_per_position(runs, tmp_path)
    (fig,) = drawn
    assert [ax.get_title() for ax in fig.axes] == ["a (ours)", "b (ours)", "c (ours)"]
    for ax in fig.axes:
        assert len(set(looks(ax))) == len(looks(ax)), looks(ax)
    colours = [c for c, _, _ in looks(fig.axes[2])]
    assert len(set(colours)) == 3  # one colour per decoder, told apart by marker and line style
    assert [line.get_label() for line in fig.axes[2].get_lines()][:2] == ["ar", "spd"]
    # negative control: matplotlib's own cycle repeats a colour, marker and style from the 11th line
    fig, ax = plt.subplots()
    for i in range(11):
        ax.plot([0, 1], [i, i], "o-")
    assert len(set(looks(ax))) == 10
    plt.close("all")
