"""What a sampled tree round costs outside the models on a CPU, part by part, at the embedded
pair's vocabulary (V = 151,936), with the issue-35 choices beside what they replaced:

- children: ``draws`` (inverse CDF, one uniform a child) against a clock per vocabulary id
  (the exponential race ``draw`` uses, which the tree drew its children with before);
- ``process`` at a [4, 2, 2] tree's 29 target rows, and its tie count in float32 against long;
- the MSS and K-SEQ plans of the 13 internal rows over the drafts' support (``tree.Support``)
  against the whole vocabulary.

Random logits stand in for the models (the costs do not depend on the values); min of
``--repeats`` runs each. Run it alone on the machine:

    PYTHONPATH=. .venv/bin/python scripts/profile_tree_round.py [--repeats 5] [--out results/bench/tree-round-parts.json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from baselines.spectr import kseq_plan
from baselines.specinfer import mss_plan
from mtad.decoding.sampling import SamplingConfig, draws, process
from mtad.decoding.tree import Support, draw_children, topology
from mtad.job.records import environment

VOCAB = 151_936


def best_ms(fn, repeats: int) -> float:
    fn()  # warm: first allocations, lazy inits
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return round(min(times) * 1e3, 3)


def tie_count(z: torch.Tensor, kth: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``process``'s count of the ties before each token, in ``dtype`` (float32 now, long before)."""
    tied = (z == kth).to(dtype)
    return tied.cumsum(-1) - tied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="results/bench/tree-round-parts.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    cfg = SamplingConfig(temperature=1.0, top_k=10, top_p=0.9)
    t = topology((4, 2, 2), torch.device("cpu"))
    logits = torch.randn(1 + len(t), VOCAB) * 3  # the target's 29 rows
    p = process(logits, cfg)
    q = process(logits[: t.rows] + torch.randn(t.rows, VOCAB), cfg)  # the drafts' 13 rows
    kth = torch.topk(logits, cfg.top_k, dim=-1).values[..., -1:]
    children = torch.cat([draw_children(q[rows], k, True, g)[0].flatten()
                          for rows, k in ((slice(0, 1), 4), (slice(1, 5), 2), (slice(5, 13), 2))])
    candidates = children[t.child_nodes]
    mask = q.gt(0).any(0)
    support = Support.of(mask, int(mask.sum()))
    pc, qc, cc = support.compact(p[: t.rows]), support.compact(q), support.column[candidates]
    spectr = topology((4, 1, 1, 1), torch.device("cpu"))
    drafts = children[:16].view(4, 4)[spectr.row_level]

    def clocks(rows: int, k: int):  # a clock per id and child: the old draw_children
        return (q[:rows, None, :] / torch.empty(rows, k, VOCAB).exponential_(1, generator=g)).argmax(-1)

    parts = {
        "children_13_rows_inverse_cdf": best_ms(lambda: [draws(q[:n], g, k) for n, k in ((1, 4), (4, 2), (8, 2))],
                                                args.repeats),
        "children_13_rows_clock_per_id": best_ms(lambda: [clocks(n, k) for n, k in ((1, 4), (4, 2), (8, 2))],
                                                 args.repeats),
        "process_29_rows": best_ms(lambda: process(logits, cfg), args.repeats),
        "process_1_row": best_ms(lambda: process(logits[:1], cfg), args.repeats),
        "tie_count_29_rows_float32": best_ms(lambda: tie_count(logits, kth, torch.float32), args.repeats),
        "tie_count_29_rows_long": best_ms(lambda: tie_count(logits, kth, torch.long), args.repeats),
        "mss_plan_13_rows_support": best_ms(lambda: mss_plan(pc, qc, cc, False, t.real_child), args.repeats),
        "mss_plan_13_rows_vocabulary": best_ms(lambda: mss_plan(p[: t.rows], q, candidates, False, t.real_child),
                                               args.repeats),
        "kseq_plan_13_rows_support": best_ms(lambda: kseq_plan(pc, qc, support.column[drafts]), args.repeats),
        "kseq_plan_13_rows_vocabulary": best_ms(lambda: kseq_plan(p[: t.rows], q, drafts), args.repeats),
        "support_columns": len(support.ids),
    }
    for name, value in parts.items():
        print(f"{name:32s} {value}")
    result = {"command": "PYTHONPATH=. .venv/bin/python scripts/profile_tree_round.py "
                         f"--repeats {args.repeats} --out {args.out}",
              "unit": "ms, min of repeats (support_columns: a count)", "vocab": VOCAB,
              "sampling": {"temperature": 1.0, "top_k": 10, "top_p": 0.9}, "parts": parts,
              "environment": environment()}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
