"""Paired comparisons (mtad/report/paired.py): known answers, the exact McNemar test, and pairing."""

import numpy as np
import pytest

from mtad.report.paired import (Estimate, beside_paper, comparisons, frames_of, matrices, mcnemar_exact, paired,
                               to_markdown)
from mtad.report.rows import collect, load_paper
from tasks.catalogue import TASKS

from test_tables import PAPER, add_run, speed_sweep, store  # noqa: F401 (the fixture)


def test_mcnemar_exact_known_values():
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact(3, 3) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024) == mcnemar_exact(9, 1)


def as_matrix(*seeds):
    num = np.array(seeds, float).T
    return num, np.ones_like(num)


def test_identical_decoders_differ_by_exactly_nothing_and_a_constant_shift_is_exact():
    rng = np.random.default_rng(1)
    x = rng.random((50, 1))
    same = paired((x, np.ones_like(x)), (x, np.ones_like(x)), "diff")
    assert same.value == 0 and same.ci == (0.0, 0.0) and same.verdict(0) == "cannot tell"
    shifted = paired((x + 1, np.ones_like(x)), (x, np.ones_like(x)), "diff")
    assert shifted.value == pytest.approx(1) and shifted.ci == pytest.approx((1, 1)) and shifted.verdict(0) == "higher"


def test_pairing_sees_a_small_consistent_gain_that_independent_intervals_would_not():
    rng = np.random.default_rng(2)
    hardness = rng.random(200)  # problem difficulty dominates the spread
    b = (hardness[:, None] > 0.5).astype(float)
    a = b.copy()
    a[np.flatnonzero(b[:, 0] == 0)[:12], 0] = 1.0  # A also solves 12 problems B misses, never the reverse
    result = paired(as_matrix(a[:, 0]), as_matrix(b[:, 0]), "diff")
    assert result.value == pytest.approx(12 / 200) and result.ci[0] > 0 and result.verdict(0) == "higher"
    assert mcnemar_exact(12, 0) < 0.001


def test_seeds_are_resampled_within_problems():
    """Seed-to-seed variation alone (the same mean on every problem) still widens the interval."""
    a = np.tile([0.0, 1.0], (30, 1))
    result = paired((a, np.ones_like(a)), as_matrix(np.full(30, 0.5)), "diff")
    assert result.value == pytest.approx(0) and result.ci[0] < -0.05 and result.ci[1] > 0.05
    fixed = paired(as_matrix(np.full(30, 0.5)), as_matrix(np.full(30, 0.5)), "diff")
    assert fixed.ci == (0.0, 0.0)


def test_comparisons_of_a_store(store):  # noqa: F811
    rows = comparisons(collect(store), None)
    mtad_ar = next(r for r in rows if (r["a"], r["b"]) == ("mtad", "ar"))
    assert mtad_ar["quality_a"].value == pytest.approx(62.5) and mtad_ar["quality_b"].value == pytest.approx(25)
    assert mtad_ar["quality"].value == pytest.approx(37.5) and mtad_ar["seeds_a"] == [1, 2]
    assert mtad_ar["mcnemar"] == {"seed": 1, "a_only": 2, "b_only": 0, "p": pytest.approx(0.5)}
    assert mtad_ar["examples"] == 4 and "speed" not in mtad_ar
    text = to_markdown(rows, collect(store).metrics)
    assert "| mtad | ar | 1,2 / 1 | 4 | 62.5 | 25.0 | +37.5 [" in text and "2 / 0, p = 0.500 (seed 1)" in text


def test_a_decoder_only_the_speed_sweep_ran_is_compared_on_speed_alone(store):  # noqa: F811
    rows = comparisons(collect(store), collect(speed_sweep(store, ("ar", 2.0), ("bild", 0.5))))
    bild = next(r for r in rows if (r["a"], r["b"]) == ("bild", "ar"))
    assert bild["speed"].value == pytest.approx(4.0) and bild["examples"] == 0 and bild["seeds_a"] == []
    assert bild["quality"].value is None and "mcnemar" not in bild  # 3 sweep examples are no quality run
    assert not any(r["a"] == "bild" and r["b"] == "spd" for r in rows)  # the sweep ran no SpD to compare with
    metrics = {"humaneval": TASKS["humaneval"].metric}
    line = next(line for line in to_markdown(rows, metrics).splitlines() if line.startswith("| bild | ar |"))
    assert line.startswith("| bild | ar | - / 1 | - | - | - | - | - | - |") and "| 4.00 [4.00, 4.00] higher |" in line
    mtad = next(r for r in rows if (r["a"], r["b"]) == ("mtad", "ar"))
    assert mtad["quality"].value == pytest.approx(37.5) and "speed" not in mtad  # quality as before, no sweep of MTAD


def test_estimate_text():
    assert Estimate(1.234, (0.5, 2.0)).text(2) == "1.23 [0.50, 2.00]"
    assert Estimate(-3.0, (-5.0, 1.0)).text(signed=True) == "-3.0 [-5.0, +1.0]"
    assert Estimate(None, None).text() == "-"


def test_every_decoder_beside_the_papers_decoders_against_its_spd(store):  # noqa: F811
    text = beside_paper(comparisons(collect(store), None), load_paper(PAPER))
    mtad = next(line for line in text.splitlines() if line.startswith("| mtad |"))
    # ours: +37.5 vs AR, +12.5 vs SpD; the paper's HumanEval Llama-3 MTAD vs its SpD, from paper_table.csv
    assert mtad.startswith("| mtad | +37.5 [") and "| +12.5 [" in mtad
    paper = load_paper(PAPER)
    expected = paper[("humaneval", "llama3", "mtad")]["quality"] - paper[("humaneval", "llama3", "spd")]["quality"]
    assert f"{expected:+.1f}" in mtad


def test_mt_bench_before_judging_is_compared_on_speed_and_perplexity_alone(tmp_path):
    """Unrated MT-Bench runs: the comparison rows carry the sweep's speed-up and the full runs'
    problem count, and no paired quality or McNemar."""
    (tmp_path / "samples").mkdir()
    add_run(tmp_path, "ar-q", "ar", 1, 1.0, [True] * 4, task="mtbench")
    add_run(tmp_path, "spd-q", "spd", 1, 0.5, [False] * 4, task="mtbench")
    speed = speed_sweep(tmp_path, ("ar", 2.0), ("spd", 0.5), examples=2, task="mtbench")
    (spd,) = [r for r in comparisons(collect(tmp_path), collect(speed)) if r["task"] == "mtbench"]
    assert (spd["a"], spd["b"]) == ("spd", "ar") and spd["speed"].value == pytest.approx(4.0)
    assert spd["examples"] == 4 and spd["quality"].value is None and "mcnemar" not in spd


def test_judged_mt_bench_is_paired_over_questions_on_the_turns_both_were_rated_on(tmp_path):
    """Once rated, MT-Bench is compared on the turns rated for both decoders, questions resampled:
    A - B is exact when B is A shifted by a constant; no McNemar on ratings."""
    (tmp_path / "samples").mkdir()
    turns = [[6, 8], [3, None], [9, 9], [5, 6]]  # 7 rated turns, sum 46
    mtbench = dict(task="mtbench", quality={"mt_bench_score": 6.0, "judge": "j"})
    add_run(tmp_path, "ar-q", "ar", 1, 1.0, [True] * 4, verdicts=[{"ratings": t} for t in turns], **mtbench)
    add_run(tmp_path, "spd-q", "spd", 1, 0.5, [True] * 4, **mtbench,
            verdicts=[{"ratings": [r - 0.5 if r is not None else None for r in t]} for t in turns])
    (spd,) = comparisons(collect(tmp_path), None)
    assert spd["quality_b"].value == pytest.approx(46 / 7)
    assert spd["quality"].value == pytest.approx(-0.5) and spd["quality"].ci == pytest.approx((-0.5, -0.5))
    assert "mcnemar" not in spd
    assert "| spd | ar | 1 / 1 | 4 | 6.07 | 6.57 | -0.50 [-0.50, -0.50] | lower | - |" in to_markdown([spd], {"mtbench": TASKS["mtbench"].metric})


def test_a_turn_rated_for_one_decoder_only_drops_out_of_both(tmp_path):
    """SpD's turn 1 of question 0 is unrated: AR's rating of that turn leaves the comparison too,
    so the two (who agree on every turn both were rated on) differ by exactly nothing; per-question
    means of the rated turns would have scored SpD on its (higher) turn 2 alone (negative control)."""
    (tmp_path / "samples").mkdir()
    ar_turns, spd_turns = [[2, 9], [5, 7], [4, 8]], [[None, 9], [5, 7], [4, 8]]
    mtbench = dict(task="mtbench", quality={"mt_bench_score": 6.0, "judge": "j"})
    add_run(tmp_path, "ar-q", "ar", 1, 1.0, [True] * 3, verdicts=[{"ratings": t} for t in ar_turns], **mtbench)
    add_run(tmp_path, "spd-q", "spd", 1, 0.5, [True] * 3, verdicts=[{"ratings": t} for t in spd_turns], **mtbench)
    (spd,) = comparisons(collect(tmp_path), None)
    assert spd["quality"].value == pytest.approx(0.0) and spd["quality"].ci == pytest.approx((0.0, 0.0))
    assert spd["quality_a"].value == spd["quality_b"].value == pytest.approx((9 + 5 + 7 + 4 + 8) / 5)
    quality, _ = frames_of(collect(tmp_path))  # negative control: per-question means see a difference
    (qa, qb), _ = matrices(quality, *sorted(quality, key=lambda cell: cell[2] == "ar"), "quality", None)  # SpD, AR
    assert paired(qa, qb, "diff").value == pytest.approx(np.mean([9, 6, 6]) - np.mean([5.5, 6, 6]))


def test_a_question_with_no_turn_rated_for_both_is_left_out(tmp_path):
    (tmp_path / "samples").mkdir()
    mtbench = dict(task="mtbench", quality={"mt_bench_score": 6.0, "judge": "j"})
    add_run(tmp_path, "ar-q", "ar", 1, 1.0, [True] * 2, verdicts=[{"ratings": [None, 3]}, {"ratings": [6, 7]}],
            **mtbench)
    add_run(tmp_path, "spd-q", "spd", 1, 0.5, [True] * 2, verdicts=[{"ratings": [4, None]}, {"ratings": [8, 8]}],
            **mtbench)
    (spd,) = comparisons(collect(tmp_path), None)
    assert spd["quality"].value == pytest.approx(1.5) and spd["quality_b"].value == pytest.approx(6.5)


def test_every_variant_of_a_decoder_stands_beside_the_papers_decoder(store):  # noqa: F811
    rows = comparisons(collect(store), None)
    rows += [{**r, "a": "mtad (tau=0.3)"} for r in rows if r["a"] == "mtad"]
    paper = load_paper(PAPER)
    expected = paper[("humaneval", "llama3", "mtad")]["quality"] - paper[("humaneval", "llama3", "spd")]["quality"]
    line = next(line for line in beside_paper(rows, paper).splitlines() if line.startswith("| mtad (tau=0.3) |"))
    assert f"| {expected:+.1f} |" in line
