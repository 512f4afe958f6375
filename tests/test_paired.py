"""Paired comparisons (mtad/report/paired.py): known answers, the exact McNemar test, and pairing."""

import numpy as np
import pytest

from mtad.report.paired import (Estimate, adjust, beside_paper, comparisons, frames_of, holm, matrices, mcnemar_exact,
                               paired, permutation_p, to_markdown)
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
    assert mtad_ar["p"] == pytest.approx(0.5) and mtad_ar["p_test"] == "McNemar" and mtad_ar["family"] == 3
    text = to_markdown(rows, collect(store).metrics)
    assert "| mtad | ar | 1,2 / 1 | 4 | 62.5 | 25.0 | +37.5 [" in text
    assert "| 2 / 0 (seed 1) | 0.500 (McNemar) | 1.000 | cannot tell |" in text
    assert "the family of all 3 quality comparisons in this file" in text


def test_a_decoder_only_the_speed_sweep_ran_is_compared_on_speed_alone(store):  # noqa: F811
    rows = comparisons(collect(store), collect(speed_sweep(store, ("ar", 2.0), ("bild", 0.5))))
    bild = next(r for r in rows if (r["a"], r["b"]) == ("bild", "ar"))
    assert bild["speed"].value == pytest.approx(4.0) and bild["examples"] == 0 and bild["seeds_a"] == []
    assert bild["quality"].value is None and "mcnemar" not in bild  # 3 sweep examples are no quality run
    assert not any(r["a"] == "bild" and r["b"] == "spd" for r in rows)  # the sweep ran no SpD to compare with
    metrics = {"humaneval": TASKS["humaneval"].metric}
    line = next(line for line in to_markdown(rows, metrics).splitlines() if line.startswith("| bild | ar |"))
    assert line.startswith("| bild | ar | - / 1 | - | - | - | - | - | - | - | - |") and "| 4.00 [4.00, 4.00] higher |" in line
    assert "p" not in bild and bild["verdict"] == "-"  # no quality: outside the family
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
    assert "mcnemar" not in spd and spd["p_test"] == "permutation" and spd["p"] == pytest.approx(2 / 16, abs=0.01)
    # 4 questions, each decoder 1 run: 2^4 equally likely label swaps, 2 of them as far from 0 as the data
    # (all or none swapped), so 4 questions cannot tell, however consistent
    assert "| spd | ar | 1 / 1 | 4 | 6.07 | 6.57 | -0.50 [-0.50, -0.50] | - | 0.126 (permutation) | 0.126 | cannot tell |" \
        in to_markdown([spd], {"mtbench": TASKS["mtbench"].metric})


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


def test_holm_on_a_textbook_family():
    """Four p-values (hand-computed): sorted .005, .01, .03, .04 times 4, 3, 2, 1 is .02, .03, .06,
    .04, made non-decreasing: .02, .03, .06, .06; back in the input order."""
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0]) and holm([0.02]) == [0.02] and holm([]) == []


def test_holm_keeps_the_order_of_the_raw_p_values():
    raw = np.random.default_rng(4).random(25) ** 3
    adjusted = np.array(holm(raw))
    order = np.argsort(raw)
    assert np.all(np.diff(adjusted[order]) >= 0) and np.all(adjusted >= raw) and np.all(adjusted <= 1)
    assert adjusted[order[0]] == pytest.approx(25 * raw[order[0]])


def quality_row(p, value=8.0, ci=(2.5, 13.5)):
    return {"quality": Estimate(value, ci), "p": p}


def test_a_raw_p_below_005_that_holm_lifts_above_it_cannot_tell():
    """Spider's MTAD - AR: interval above 0, McNemar p = 0.009; in a family of 25 (the other 24
    far from significant) Holm makes it 0.225: cannot tell. Alone (no adjustment, the negative
    control) the same row would say higher."""
    family = adjust([quality_row(0.009)] + [quality_row(0.5, 1.0, (-4.0, 6.0)) for _ in range(24)])
    assert family[0]["p_holm"] == pytest.approx(0.225) and family[0]["verdict"] == "cannot tell"
    assert adjust([quality_row(0.009)])[0]["verdict"] == "higher"
    assert adjust([quality_row(0.001, -8.0, (-13.5, -2.5)), *[quality_row(0.5)] * 24])[0]["verdict"] == "lower"
    # a small adjusted p is not enough: the interval must exclude 0 too
    assert adjust([quality_row(0.001, 3.0, (-1.0, 7.0))])[0]["verdict"] == "cannot tell"


def test_holm_over_a_stores_comparisons(tmp_path):
    """200 problems, one seed each; SpD solves what AR solves; MTAD solves 21 more and misses 8
    (McNemar p = 0.024, interval above 0). The family is SpD - AR, MTAD - AR, MTAD - SpD: Holm
    makes both MTAD p-values 0.072, so neither says higher; the interval alone would."""
    (tmp_path / "samples").mkdir()
    base = [i % 3 == 0 for i in range(200)]
    mtad = list(base)
    for i in [i for i in range(200) if not base[i]][:21]:
        mtad[i] = True
    for i in [i for i in range(200) if base[i]][:8]:
        mtad[i] = False
    add_run(tmp_path, "ar1", "ar", 1, 1.0, base)
    add_run(tmp_path, "spd1", "spd", 1, 1.0, base)
    add_run(tmp_path, "mtad1", "mtad", 1, 1.0, mtad)
    rows = {(r["a"], r["b"]): r for r in comparisons(collect(tmp_path), None)}
    for pair in (("mtad", "ar"), ("mtad", "spd")):
        row = rows[pair]
        assert row["p"] == pytest.approx(mcnemar_exact(21, 8)) and 0.02 < row["p"] < 0.025
        assert row["p_holm"] == pytest.approx(3 * row["p"]) and row["verdict"] == "cannot tell"
        assert row["quality"].verdict(0.0) == "higher"  # negative control: the unadjusted reading
    assert rows[("spd", "ar")]["p_holm"] == 1.0 and rows[("spd", "ar")]["family"] == 3


def test_the_permutation_test_on_solved_or_not_at_one_seed_is_mcnemars():
    """One seed a side, scores 0/1: shuffling labels within each problem is the sign test on the
    discordant problems, i.e. McNemar's exact test (up to Monte Carlo error)."""
    a = np.zeros(120)
    b = np.zeros(120)
    a[:30], b[30:42] = 1, 1  # 30 A only, 12 B only, the rest solved by neither
    a[60:90] = b[60:90] = 1  # 30 by both
    assert permutation_p(as_matrix(a), as_matrix(b)) == pytest.approx(mcnemar_exact(30, 12), abs=0.004)
    assert permutation_p(as_matrix(a), as_matrix(a)) == 1.0


def test_the_permutation_test_pools_a_problems_runs_of_both_decoders():
    """A ran three seeds, B one: each problem's four runs are dealt again, three to A. A shift of
    every problem by a constant is found, equal outcomes are not, and one problem cannot decide."""
    rng = np.random.default_rng(6)
    hardness = rng.random((60, 1))
    a, b = hardness + rng.normal(0, 0.05, (60, 3)), hardness + rng.normal(0, 0.05, (60, 1))
    assert permutation_p(as_matrix(*(a + 0.2).T), as_matrix(b[:, 0])) < 0.001
    assert permutation_p(as_matrix(*a.T), as_matrix(b[:, 0])) > 0.05
    assert permutation_p(as_matrix([1.0], [1.0], [1.0]), as_matrix([0.0])) == pytest.approx(0.25, abs=0.02)
    assert permutation_p(as_matrix([np.nan]), as_matrix([1.0])) is None
