"""MT-Bench: two-turn conversations, FastChat answer files, judge prompts and ratings, and judging
through a stub OpenAI-compatible server on 127.0.0.1 (resumable, retries, a judge that is down)."""

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from mtad.judging.clients import Judge, OpenAIJudge
from mtad.judging.fastchat import grading_prompt, judge_answers, load_prompts, load_references, off_scale, parse_rating
from mtad.judging.fastchat import scores as fastchat_scores
from mtad.runners.load import load_pair
from tasks.base import shared_data
from tasks.mtbench import MTBench

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / shared_data("mt_bench")  # $MTAD_DATA, else ../shared/data from the repository root


class StubJudge(BaseHTTPRequestHandler):
    """Chat completions that rate every answer [[6]], except that the first request whose prompt
    holds NO_RATING_ONCE gets a reply without a rating and ALWAYS_UNRATED never gets one."""

    requests: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        StubJudge.requests.append(body)
        prompt = body["messages"][1]["content"]
        seen = sum("NO_RATING_ONCE" in r["messages"][1]["content"] for r in StubJudge.requests)
        if "ALWAYS_UNRATED" in prompt or ("NO_RATING_ONCE" in prompt and seen == 1):
            text = "I cannot decide."
        else:
            text = "A fine answer. Rating: [[6]]"
        reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub_url():
    StubJudge.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubJudge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    thread.join()


@pytest.fixture(scope="module")
def task():
    return MTBench(data_dir=str(DATA))


def test_ratings_parse_only_from_double_brackets_on_the_1_to_10_scale():
    assert parse_rating("Good. Rating: [[7]]") == 7.0
    assert parse_rating("Rating: [[7.5]]") == 7.5
    assert parse_rating("Rating: [[10]]") == 10.0 and parse_rating("[[1]]") == 1.0
    assert parse_rating("Rating: [[6]], on reflection [[3]]") == 6.0  # the first, as FastChat reads it
    for text in ("[[0]]", "Rating: [[11]]", "[[10.5]]", "Rating: [7]", "B = [0] * (n + 1); arr[0]", "Rating: 7", ""):
        assert parse_rating(text) is None, text  # FastChat's fallback [N] read array indices as ratings
    assert parse_rating("[[0]] out of 10, or rather [[4]]") is None  # the first [[N]] rules, off the scale or not
    assert off_scale("rated as [[0]] out of 10") and off_scale("[[11]]")
    assert not off_scale("[[7]]") and not off_scale("arr[0]") and not off_scale("no rating")


def test_scores_count_missing_ratings_and_those_off_the_scale():
    judgments = [{"question_id": 81, "turn": 1, "score": 8.0, "judgment": "[[8]]"},
                 {"question_id": 81, "turn": 2, "score": -1, "judgment": "worth [[0]]"},
                 {"question_id": 82, "turn": 1, "score": -1, "judgment": "x = arr[0]"},
                 {"question_id": 82, "turn": 2, "score": 6.0, "judgment": "[[6]]"}]
    questions = {81: {"category": "writing"}, 82: {"category": "math"}}
    out = fastchat_scores(judgments, questions)
    assert out["mt_bench_score"] == 7.0 and out["judge_missing"] == 2 and out["judge_off_scale"] == 1
    assert out["mt_bench_writing"] == 8.0 and out["mt_bench_math"] == 6.0


def test_math_judge_prompts_carry_the_reference_answer_of_their_question(task):
    prompts, references = load_prompts(DATA / "judge_prompts.jsonl"), load_references(DATA / "reference_answer" / "gpt-4.jsonl")
    math = next(q for q in task.questions.values() if q["category"] == "math")
    name, system, user = grading_prompt(math, ["A1", "A2"], 1, prompts, references)
    assert name == "single-math-v1" and references[math["question_id"]][0] in user and "A1" in user
    name, _, user = grading_prompt(math, ["A1", "A2"], 2, prompts, references)
    assert name == "single-math-v1-multi-turn"
    assert references[math["question_id"]][1] in user and "A2" in user and math["turns"][1] in user
    writing = next(q for q in task.questions.values() if q["category"] == "writing")
    name, system, user = grading_prompt(writing, ["A1", "A2"], 1, prompts, references)
    assert name == "single-v1" and "Reference" not in user and system == "You are a helpful assistant."


def test_second_turn_is_conditioned_on_the_first_answer(task):
    tiny = load_pair("tiny").info
    example = task.examples(tiny)[0]
    prompts = []

    def generate_turn(prompt_ids):
        prompts.append(prompt_ids)
        return tiny.tokenizer("FIRST ANSWER" if len(prompts) == 1 else "SECOND").input_ids

    replies = task.converse(example, generate_turn, tiny)
    assert len(replies) == 2 and prompts[0] == example.prompt_ids
    second = tiny.tokenizer.decode(prompts[1])
    assert second.index(example.data["question"]["turns"][0]) < second.index("FIRST ANSWER") < \
        second.index(example.data["question"]["turns"][1])
    assert task.score(example, replies, tiny)["answers"] == ["FIRST ANSWER", "SECOND"]


def answer(question_id, turns, model="m"):
    return {"question_id": question_id, "model_id": model, "choices": [{"index": 0, "turns": turns}]}


def test_judging_retries_counts_missing_and_resumes(task, stub_url, tmp_path):
    prompts, references = load_prompts(DATA / "judge_prompts.jsonl"), load_references(DATA / "reference_answer" / "gpt-4.jsonl")
    answers = [answer(81, ["NO_RATING_ONCE", "fine"]), answer(82, ["ALWAYS_UNRATED", "fine"])]
    judge = OpenAIJudge(model="stub", base_url=stub_url)
    out = tmp_path / "judgments.jsonl"
    judgments = judge_answers(answers, task.questions, judge, out, prompts, references, retries=2)
    by_key = {(j["question_id"], j["turn"]): j for j in judgments}
    assert by_key[(81, 1)]["score"] == 6 and by_key[(81, 2)]["score"] == 6
    assert by_key[(82, 1)]["score"] == -1 and by_key[(82, 2)]["score"] == -1  # turn 2 shows turn 1's answer too
    assert len(StubJudge.requests) == 2 + 1 + 3 + 3   # 81: one retry on turn 1; 82: 1 + 2 retries per turn
    assert all(r["temperature"] == 0 for r in StubJudge.requests)
    again = judge_answers(answers, task.questions, judge, out, prompts, references)
    assert len(StubJudge.requests) == 9 and len(again) == 4 and len(out.read_text().splitlines()) == 4


def test_batched_judging_asks_again_only_the_unrated_and_keeps_the_order(task, tmp_path):
    prompts, references = load_prompts(DATA / "judge_prompts.jsonl"), load_references(DATA / "reference_answer" / "gpt-4.jsonl")

    class Batched(Judge):
        name, batch_size = "batched", 3

        def __init__(self):
            self.batches, self.lengths = [], []

        def complete(self, system, user):
            return "Rating: [[7]]" if "GOODANSWER" in user else "no rating"

        def complete_many(self, requests):
            self.batches.append(len(requests))
            self.lengths.append([len(system) + len(user) for system, user in requests])
            return [self.complete(*r) for r in requests]

    answers = [answer(81, ["GOODANSWER", "GOODANSWER"]), answer(82, ["bad", "bad"]), answer(83, ["GOODANSWER"] * 2)]
    judge = Batched()
    judgments = judge_answers(answers, task.questions, judge, tmp_path / "j.jsonl", prompts, references, retries=2)
    assert judge.batches == [3, 1, 1, 3, 1, 1]  # (82, 1) and then (82, 2) asked twice more, alone
    firsts = [n for batch in judge.lengths if len(batch) == 3 for n in batch]
    assert firsts == sorted(firsts) and max(firsts[:3]) < min(firsts[3:])  # like lengths batched: turn 1s, turn 2s
    assert [(j["question_id"], j["turn"], j["score"]) for j in judgments] == \
        [(81, 1, 7), (81, 2, 7), (82, 1, -1), (82, 2, -1), (83, 1, 7), (83, 2, 7)]

    greedy = Batched()
    greedy.deterministic = True  # like LocalJudge: the same prompt gets the same reply, so no retries
    again = judge_answers(answers, task.questions, greedy, tmp_path / "g.jsonl", prompts, references, retries=2)
    assert greedy.batches == [3, 3]
    assert [(j["question_id"], j["turn"], j["score"]) for j in again] == \
        [(81, 1, 7), (81, 2, 7), (82, 1, -1), (82, 2, -1), (83, 1, 7), (83, 2, 7)]

    class Reversed(Batched):  # a judge that measures its prompts its own way gets batches in that order
        deterministic = True

        def prompt_length(self, system, user):
            return -len(system) - len(user)

    backwards = Reversed()
    judge_answers(answers, task.questions, backwards, tmp_path / "r.jsonl", prompts, references)
    lengths = [n for batch in backwards.lengths for n in batch]
    assert lengths == sorted(lengths, reverse=True) and lengths != sorted(lengths)


def run(script, tmp_path, *overrides):
    env = {"MTAD_RESULTS": str(tmp_path / "results"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, script, *overrides], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def test_sweep_with_a_judge_that_is_down_keeps_the_answers_and_judge_py_grades_them_later(tmp_path, stub_url):
    down = "http://127.0.0.1:9/v1"  # discard port: nothing listens
    proc = run("run.py", tmp_path, "-m", "pair=tiny", "task=mtbench", "task.limit=2", f"task.data_dir={DATA}",
               "decoder=ar,mtad", "max_new_tokens=6", "judge=openai", "judge.model=stub", f"judge.base_url={down}",
               f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert proc.returncode == 2
    assert f"error: judge endpoint {down} is unreachable" in proc.stderr and "python judge.py job=" in proc.stderr
    job = tmp_path / "sweep" / "0"
    samples = [json.loads(line) for line in (job / "samples.jsonl").read_text().splitlines()]
    assert [s["id"] for s in samples] == ["mtbench/81", "mtbench/82"] and all(len(s["turn_tokens"]) == 2 for s in samples)
    assert [s["scores"] for s in samples] == [[None, None]] * 2  # two turns, not rated yet
    (answers_file,) = (job / "model_answer").glob("*.jsonl")
    answers = [json.loads(line) for line in answers_file.read_text().splitlines()]
    assert [a["question_id"] for a in answers] == [81, 82]
    assert all(len(a["choices"][0]["turns"]) == 2 and a["model_id"] == answers_file.stem for a in answers)
    assert "mt_bench_score" not in json.loads((job / "summary.json").read_text())["quality"]

    proc = run("judge.py", tmp_path, f"job={job}", "judge=openai", "judge.model=stub", f"judge.base_url={stub_url}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((job / "summary.json").read_text())
    assert summary["quality"]["mt_bench_score"] == 6.0 and summary["quality"]["judge_missing"] == 0
    assert summary["quality"]["mt_bench_writing"] == 6.0 and summary["quality"]["judge"] == "stub"
    assert len((job / "model_judgment" / "stub_single.jsonl").read_text().splitlines()) == 4
    store = [json.loads(line) for line in (tmp_path / "results" / "runs.jsonl").read_text().splitlines()]
    assert store[-1]["run_id"] == summary["run_id"] and store[-1]["quality"]["mt_bench_score"] == 6.0
    for path in (job / "samples.jsonl", tmp_path / "results" / "samples" / f"{summary['run_id']}.jsonl"):
        rated = [json.loads(line) for line in path.read_text().splitlines()]  # per question, where tables read
        assert [(s["id"], s["verdict"]["judge"], s["verdict"]["ratings"]) for s in rated] == \
            [("mtbench/81", "stub", [6.0, 6.0]), ("mtbench/82", "stub", [6.0, 6.0])]
        assert [s["scores"] for s in rated] == [[6.0, 6.0], [6.0, 6.0]]  # rescored with the ratings
        assert all(s["verdict"]["answers"] for s in rated)  # the task's own verdict kept
    assert store[-1]["metric"] == MTBench.metric.to_record()


def test_sweep_with_a_live_judge_records_scores_also_for_answers_generated_before(tmp_path, stub_url):
    job = ["run.py", tmp_path, "-m", "pair=tiny", "task=mtbench", "task.limit=1", f"task.data_dir={DATA}",
           "max_new_tokens=4"]
    judge = ["judge=openai", "judge.model=stub", f"judge.base_url={stub_url}"]
    first = run(*job, "decoder=spd", *judge, f"hydra.sweep.dir={tmp_path / 'a'}")
    assert first.returncode == 0, first.stderr[-2000:]
    summary = json.loads((tmp_path / "a" / "0" / "summary.json").read_text())
    assert summary["quality"]["mt_bench_score"] == 6.0 and "mt_bench_score" in first.stdout

    assert run(*job, "decoder=ar", "judge=none", f"hydra.sweep.dir={tmp_path / 'b'}").returncode == 0
    requests = len(StubJudge.requests)
    again = run(*job, "decoder=ar", *judge, f"hydra.sweep.dir={tmp_path / 'c'}")  # same run: answers reused
    assert again.returncode == 0 and "finished before" in again.stdout, again.stderr[-2000:]
    assert len(StubJudge.requests) == requests + 2  # two turns graded, nothing generated again
    assert json.loads((tmp_path / "c" / "0" / "summary.json").read_text())["quality"]["mt_bench_score"] == 6.0


def test_local_judge_runs_a_chat_model_from_a_folder(tmp_path):
    from mtad.judging.clients import LocalJudge
    from mtad.runners.toy_models import tiny_llama, tiny_tokenizer

    tiny_llama(0).save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    judge = LocalJudge(model=str(tmp_path), dtype="float32", device="cpu", max_new_tokens=5)
    reply = judge.complete("You are a judge.", "Rate this.")
    assert isinstance(reply, str) and judge.name == tmp_path.name
    requests = [("You are a judge.", "Rate this."), ("Be fair.", "Rate this much longer answer, please: 42.")]
    assert judge.complete_many(requests) == [judge.complete(*r) for r in requests]  # left padding changes nothing
    # batches are sorted by the prompt's tokens under the chat template, not its characters
    ids = judge.tokenizer.apply_chat_template([{"role": "system", "content": "Be fair."}, {"role": "user", "content": "42"}],
                                              add_generation_prompt=True, tokenize=True, return_dict=False)
    assert judge.prompt_length("Be fair.", "42") == len(ids) != len("Be fair.") + len("42")


def test_loop_stop_fires_on_the_third_copy_of_a_window_and_only_in_the_reply():
    from mtad.judging.clients import LoopStop

    prompt = [5, 6, 7, 5, 6, 7, 5, 6, 7]  # a prompt's repeats are not the reply's
    cycle = [1, 2, 3, 1, 2, 3, 1, 2, 3]
    other = [1, 2, 3, 4, 1, 2, 3, 5, 1]   # windows of 3 recur, but never a third time
    stop = LoopStop(start=len(prompt), window=3)
    fired = []
    for t in range(len(cycle) + 1):  # called once per step, as generate does
        fired.append(stop(torch.tensor([prompt + cycle[:t], prompt + other[:t]])).tolist())
    assert [f[0] for f in fired].index(True) == len(cycle)  # (1, 2, 3) ends at 3, 6 and 9
    assert not any(f[1] for f in fired)
    assert fired[-1] == [True, False]


def test_local_judge_cuts_a_greedy_loop_short_and_keeps_its_tokens(tmp_path):
    from mtad.judging.clients import LoopStop, LocalJudge
    from mtad.runners.toy_models import tiny_llama, tiny_tokenizer

    tiny_llama(0).save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    requests = [("You are a judge.", "Rate this."), ("Be fair.", "Rate this much longer answer, please: 42.")]
    free = LocalJudge(model=str(tmp_path), dtype="float32", device="cpu", max_new_tokens=150, loop_window=0)
    cut = LocalJudge(model=str(tmp_path), dtype="float32", device="cpu", max_new_tokens=150, loop_window=2)
    for long, short in zip(free.reply_ids(requests), cut.reply_ids(requests)):
        assert len(short) < len(long) == 150 and long[:len(short)] == short  # the same greedy tokens, stopped early
        check = LoopStop(start=0, window=2)
        fired = [bool(check(torch.tensor([short[:t]]))[0]) for t in range(len(short) + 1)]
        assert fired.index(True) == len(short)  # stopped at the first third copy of a window, not later
