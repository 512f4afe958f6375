"""MT-Bench: 80 two-turn questions through the pair's chat template, graded by an LLM judge.

The second turn is conditioned on the model's own first answer. Answers are saved in the job
folder as FastChat ``model_answer`` JSONL, so they are generated once and judged later, by one
judge or several (``judge.py``), or right after generation when the job names a ``judge``.
Judgments go to ``model_judgment/<judge>_single.jsonl`` beside them (``mtad.judging.clients``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from mtad.errors import UserError
from mtad.judging.clients import Judge
from mtad.judging.fastchat import judge_answers, load_prompts, load_references, ratings
from mtad.judging.fastchat import scores as fastchat_scores
from mtad.ranges import Int, ranged
from mtad.runners.pair import PairInfo
from tasks.base import Example, Metric, Task, shared_data, spread

ANSWERS = "model_answer"
JUDGMENTS = "model_judgment"


def example_id(question_id: int) -> str:
    """The id of a question's example: its records and its judge ratings meet on it."""
    return f"mtbench/{question_id}"


def judgment_path(out_dir: Path, judge_name: str) -> Path:
    """A job's FastChat judgment file for one judge: ``model_judgment/<judge>_single.jsonl``."""
    safe_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in judge_name)
    return Path(out_dir) / JUDGMENTS / f"{safe_name}_single.jsonl"


@dataclass
class MTBench(Task):
    name = "mtbench"
    version = 1
    graded_by_judge = True
    data_dir: str = field(default_factory=lambda: shared_data("mt_bench"))
    limit: int | None = ranged(None, Int(min=1, none="all 80"))  # the first N questions
    sample: int | None = ranged(None, Int(min=1, none="all of limit"))  # N of those, round-robin over categories
    # judge replies without a rating asked again, then counted missing
    retries: int = ranged(2, Int(min=0))
    metric = Metric(
        key="mt_bench_score", title="MT-Bench", paired_digits=2, labels=(("judge", "judge {}"),),
        note="MT-Bench quality: the mean 1-10 rating of the rated turns by {judge} (FastChat single grading; a reply "
             "without a rating is left out; intervals over questions); the paper's judge was GPT-4, so the scales "
             "differ. A judge far smaller than GPT-4, like the embedded 1.5B coder model, is weak: noisy and partial "
             "to its own style (that model is also the default pair's target, so it may favour what it finds likely, "
             "which MTAD seeks); its differences are indicative only.",
        paired_note="MT-Bench quality: the mean rating over the turns the judge rated for both A and B (a turn rated "
                    "for one only is left out of both).")

    @classmethod
    def scores(cls, verdict: dict) -> list[float | None]:
        """The judge's rating of each turn (None: no rating); all None until a judge has graded
        the answers (``judge_job`` then rescores the records)."""
        if verdict.get("ratings"):
            return list(verdict["ratings"])
        return [None] * len(verdict.get("answers") or [])

    def __post_init__(self):
        super().__post_init__()
        root = Path(self.data_dir)
        self.files = {"questions": root / "question.jsonl", "prompts": root / "judge_prompts.jsonl",
                      "references": root / "reference_answer" / "gpt-4.jsonl"}
        missing = [str(p) for p in self.files.values() if not p.is_file()]
        if missing:
            raise UserError(f"mtbench: missing {', '.join(missing)} (task.data_dir={root})")
        questions = [json.loads(line) for line in self.files["questions"].read_text().splitlines() if line.strip()]
        chosen = spread(questions[: self.limit], self.sample, lambda question: question["category"])
        self.questions = {q["question_id"]: q for q in chosen}

    def examples(self, pair: PairInfo) -> list[Example]:
        if pair.tokenizer is None or not getattr(pair.tokenizer, "chat_template", None):
            raise UserError(f"mtbench needs a model pair whose tokenizer has a chat template; {pair.name!r} has none")
        return [Example(example_id(qid), self._chat(pair, [q["turns"][0]], []), {"question": q})
                for qid, q in self.questions.items()]

    @staticmethod
    def _chat(pair: PairInfo, questions: list[str], answers: list[str]) -> list[int]:
        messages = []
        for i, question in enumerate(questions):
            messages.append({"role": "user", "content": question})
            if i < len(answers):
                messages.append({"role": "assistant", "content": answers[i]})
        return list(pair.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                       return_dict=False))

    def converse(self, example, generate_turn, pair: PairInfo) -> list[list[int]]:
        turns = example.data["question"]["turns"]
        replies, answers = [], []
        for turn in range(len(turns)):
            prompt = example.prompt_ids if turn == 0 else self._chat(pair, turns[: turn + 1], answers)
            replies.append(generate_turn(prompt))
            answers.append(self._text(pair, replies[-1]))
        return replies

    @staticmethod
    def _text(pair: PairInfo, tokens: list[int]) -> str:
        return pair.tokenizer.decode(tokens, skip_special_tokens=True).strip()

    def score(self, example, replies, pair: PairInfo) -> dict:
        question = example.data["question"]
        return {"question_id": question["question_id"], "category": question["category"],
                "answers": [self._text(pair, tokens) for tokens in replies]}

    def quality(self, verdicts) -> dict:
        return {"answered": len(verdicts)}  # ratings come from a judge (judge=, or judge.py later)

    def write_outputs(self, out_dir: Path, verdicts: list[dict], model_id: str) -> None:
        """The answers in FastChat's model_answer format: <out_dir>/model_answer/<model_id>.jsonl."""
        folder = out_dir / ANSWERS
        folder.mkdir(exist_ok=True)
        lines = [json.dumps({"question_id": v["question_id"], "answer_id": f"{model_id}-{v['question_id']}",
                             "model_id": model_id, "choices": [{"index": 0, "turns": v["answers"]}],
                             "tstamp": time.time()}) for v in verdicts]
        (folder / f"{model_id}.jsonl").write_text("".join(line + "\n" for line in lines))

    def judge(self, out_dir: Path, judge: Judge) -> tuple[dict, dict[str, dict]]:
        """Rate the saved answers of a job (resuming earlier judgments): the scores, and per
        example the judge and its rating of each turn (None: missing), for per-question intervals."""
        files = sorted((out_dir / ANSWERS).glob("*.jsonl"))
        if not files:
            raise UserError(f"no MT-Bench answers under {out_dir / ANSWERS}")
        answers = [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]
        unknown = sorted({a["question_id"] for a in answers} - set(self.questions))
        if unknown:
            raise UserError(f"answers for questions {unknown[:5]} that task.limit={self.limit} "
                            f"task.sample={self.sample} leave out")
        judgments = judge_answers(answers, self.questions, judge, judgment_path(out_dir, judge.name),
                                  load_prompts(self.files["prompts"]), load_references(self.files["references"]),
                                  self.retries)
        return self.graded(judgments, self.questions, judge.name)

    @staticmethod
    def graded(judgments: list[dict], questions: dict[int, dict], judge_name: str) -> tuple[dict, dict[str, dict]]:
        """From one judge's judgments (sorted by question and turn): the scores for the summary's
        ``quality``, and per example the judge and its rating of each turn (None: missing).
        ``questions`` needs only each question's ``category``."""
        per_question = {example_id(qid): {"judge": judge_name, "ratings": turns}
                        for qid, turns in ratings(judgments).items()}
        return {**fastchat_scores(judgments, questions), "judge": judge_name}, per_question
