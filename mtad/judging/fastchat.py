"""MT-Bench grading as FastChat's ``gen_judgment.py`` does it (single-answer mode), over saved
answers, with any judge of ``mtad/judging/clients.py``.

Turn 1 is graded with ``single-v1`` (or ``single-math-v1`` and the reference answer for math,
reasoning and coding), turn 2 with the ``-multi-turn`` prompts over the whole conversation; the
rating is the number in the reply's first ``[[N]]``, read only when 1 <= N <= 10 (``parse_rating``).
Grading is resumable: judgments are appended one per line to a FastChat ``model_judgment`` file,
and ratings already there are not asked for again.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from tqdm import tqdm

from mtad.errors import UserError
from mtad.judging.clients import Judge

NEEDS_REFERENCE = ("math", "reasoning", "coding")
RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")  # FastChat's pattern: [[7]], [[7.5]]
SCALE = (1.0, 10.0)  # the judge prompts' scale


def _first_rating(text: str) -> float | None:
    match = RATING.search(text)
    return float(match.group(1)) if match else None


def parse_rating(text: str) -> float | None:
    """The number in the reply's first ``[[N]]`` (FastChat's rule: the first match), when it lies on
    the 1-10 scale; None otherwise (no ``[[N]]``, or a first one off the scale: ``[[0]]``, ``[[11]]``).
    FastChat's fallback ``[N]`` is not read: it took array indices (``arr[0]``) in quoted code for
    ratings."""
    rating = _first_rating(text)
    return rating if rating is not None and SCALE[0] <= rating <= SCALE[1] else None


def off_scale(text: str) -> bool:
    """Whether a reply's first ``[[N]]`` lies off the 1-10 scale (a rating given, but not one)."""
    rating = _first_rating(text)
    return rating is not None and not SCALE[0] <= rating <= SCALE[1]


def load_prompts(path: Path) -> dict[str, dict]:
    return {p["name"]: p for p in map(json.loads, Path(path).read_text().splitlines())}


def load_references(path: Path) -> dict[int, list[str]]:
    """Reference answers by question id (not by judge name)."""
    return {r["question_id"]: r["choices"][0]["turns"] for r in map(json.loads, Path(path).read_text().splitlines())}


def grading_prompt(question: dict, answers: list[str], turn: int, prompts: dict[str, dict],
                   references: dict[int, list[str]]) -> tuple[str, str, str]:
    """(prompt name, system prompt, user prompt) for grading ``turn`` (1 or 2) of one answer."""
    reference = references.get(question["question_id"]) if question["category"] in NEEDS_REFERENCE else None
    if question["category"] in NEEDS_REFERENCE and reference is None:
        raise UserError(f"MT-Bench question {question['question_id']} ({question['category']}) needs a reference "
                        "answer and has none")
    name = ("single-math-v1" if reference else "single-v1") + ("-multi-turn" if turn == 2 else "")
    template = prompts[name]
    fields = {}
    if turn == 1:
        fields.update(question=question["turns"][0], answer=answers[0])
        if reference:
            fields["ref_answer_1"] = reference[0]
    else:
        fields.update(question_1=question["turns"][0], question_2=question["turns"][1],
                      answer_1=answers[0], answer_2=answers[1])
        if reference:
            fields.update(ref_answer_1=reference[0], ref_answer_2=reference[1])
    return name, template["system_prompt"], template["prompt_template"].format(**fields)


def judge_answers(answers: list[dict], questions: dict[int, dict], judge: Judge, out_path: Path,
                  prompts: dict[str, dict], references: dict[int, list[str]], retries: int = 2) -> list[dict]:
    """Rate every turn of every answer (FastChat ``model_answer`` records) not yet rated in
    ``out_path``; append each judgment as it comes. Returns all judgments in the file.

    A reply without a rating on the 1-10 scale (``parse_rating``) is asked again up to ``retries``
    times (never by a deterministic judge), then recorded with ``score: -1`` (FastChat's marker)
    and counted as missing.
    """
    out_path.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if out_path.exists():
        for record in map(json.loads, out_path.read_text().splitlines()):
            done[(record["question_id"], record["turn"])] = record
    todo = [(a, turn, grading_prompt(questions[a["question_id"]], a["choices"][0]["turns"], turn, prompts, references))
            for a in answers for turn in (1, 2) if (a["question_id"], turn) not in done]
    if judge.batch_size > 1:  # batch prompts of like length: a batch is padded to its longest (turn 2's are ~2x)
        todo.sort(key=lambda item: judge.prompt_length(*item[2][1:]))
    progress = tqdm(total=len(todo), desc=f"judging with {judge.name}", leave=False)
    with open(out_path, "a") as out, progress:
        for start in range(0, len(todo), judge.batch_size):
            batch = todo[start:start + judge.batch_size]  # (answer, turn, (prompt name, system, user))
            replies: dict[int, str] = {}
            scored: dict[int, float] = {}
            for _ in range(1 if judge.deterministic else retries + 1):  # ask again those without a rating
                pending = [i for i in range(len(batch)) if i not in scored]
                if not pending:
                    break
                for i, reply in zip(pending, judge.complete_many([batch[i][2][1:] for i in pending])):
                    replies[i] = reply
                    if (score := parse_rating(reply)) is not None:
                        scored[i] = score
            for i, (answer, turn, (prompt_name, _, user)) in enumerate(batch):
                record = {"question_id": answer["question_id"], "model": answer["model_id"],
                          "judge": [judge.name, prompt_name], "user_prompt": user, "judgment": replies[i],
                          "score": scored.get(i, -1), "turn": turn, "tstamp": time.time()}
                out.write(json.dumps(record) + "\n")
                done[(answer["question_id"], turn)] = record
            out.flush()
            os.fsync(out.fileno())
            progress.update(len(batch))
    return sorted(done.values(), key=lambda j: (j["question_id"], j["turn"]))


def ratings(judgments: list[dict]) -> dict[int, list[float | None]]:
    """Per question, the rating of each turn in order (None: missing)."""
    out: dict[int, dict[int, float | None]] = {}
    for j in judgments:
        out.setdefault(j["question_id"], {})[j["turn"]] = j["score"] if j["score"] >= 0 else None
    return {qid: [turns[t] for t in sorted(turns)] for qid, turns in out.items()}


def scores(judgments: list[dict], questions: dict[int, dict]) -> dict:
    """Mean rating over turns and questions, per turn and per category; missing ratings counted
    (``judge_missing``), and of those the replies whose ``[[N]]`` lay off the scale (``judge_off_scale``)."""
    rated = [j for j in judgments if j["score"] >= 0]
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    out = {"mt_bench_score": mean([j["score"] for j in rated]), "judge_missing": len(judgments) - len(rated),
           "judge_off_scale": sum(j["score"] < 0 and off_scale(j.get("judgment", "")) for j in judgments)}
    for turn in (1, 2):
        out[f"mt_bench_turn{turn}"] = mean([j["score"] for j in rated if j["turn"] == turn])
    categories = sorted({questions[j["question_id"]]["category"] for j in rated})
    for category in categories:
        out[f"mt_bench_{category}"] = mean([j["score"] for j in rated
                                            if questions[j["question_id"]]["category"] == category])
    return out
