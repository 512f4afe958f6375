"""The job: one decoder x task x pair run with its records, timing and energy.

``config`` (one job's config, checked once), ``harness`` (a job, and ``run_jobs``: the one driver
that times generations), ``interleave`` (several decoders taking turns on one pair), ``records`` (run
ids, the results store), ``energy`` (meters), ``metrics`` (target perplexity), ``comparison`` and
``sweep_table`` (which runs compare, the table after a sweep), ``migrate`` (records written before
metric declarations), ``wandb_log`` (the mirror), ``overhead`` (host ops, device reads and host time
between forwards, per round: scripts/bench_overhead.py).
"""
