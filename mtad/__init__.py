"""mtad: a benchmark harness for draft-and-verify LLM decoding.

The package is in rooms by role; each imports only from the rooms above it in this list
(tests/test_layering.py checks it):

    mtad.errors, registry, paths  one-line user errors; name -> class catalogues; where conf/ is;
    mtad.ranges                   each config field's valid range, beside its default, and their check
    mtad.runners                  models and KV caches: the backend catalogue, model pairs, loading
    mtad.decoding                 the generation loop, sampling, chain / tree drafting, MTAD
    baselines/                    the other decoders
    mtad.catalogue                decoder names -> classes
    mtad.judging                  LLM judge clients, MT-Bench's FastChat grading
    tasks/                        prompts, scoring, each task's quality metric
    mtad.job                      one job: records, timing, energy, the results store
    mtad.report                   ``make table``: tables, comparisons, plots, HTML, dashboard

In a script:

    from mtad.catalogue import build_decoder
    from mtad.decoding.base import generate
    from mtad.runners.load import load_pair

    pair = load_pair("tiny")
    decoder = build_decoder("mtad", gamma=4, width=4, tau=0.5)
    out = generate(pair, decoder, [1, 2, 3], max_new_tokens=32, seed=0)
    out.tokens, out.stats.block_efficiency
"""

__version__ = "0.1.0"
