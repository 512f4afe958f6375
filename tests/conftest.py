import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One intra-op thread per worker: several workers each spinning several torch threads on
    # few cores slow the many tiny ops of the toy-model tests down by an order of magnitude.
    import torch

    torch.set_num_threads(1)

# Markers set here, by module or by test function, so that no test file has to carry them.
# `make test` (and CI) runs every test; `make test-fast`, the inner loop, deselects all three.
MARKERS = {
    "real_pair": "needs the prepared Qwen2.5-Coder pair (make prepare)",
    "browser": "needs headless Chromium, chromedriver and selenium",
    "slow": "tens of seconds of CPU or more: run.py subprocesses and sweeps, kill-and-resume, repository clones, "
            "torch.compile, G-tests of 5,000 generations on transformer pairs",
}
# "module" marks all its tests; "module::function" marks that function (every parametrisation).
# The slow ones took 10 s to 2 min each on the 2-core machine (pytest --durations).
MARKED = {
    "real_pair": {"test_real_pair"},
    "browser": {"test_report_browser"},
    "slow": {
        "test_cli",                # every test starts run.py (about 5 s of imports each); sweeps take a minute
        "test_resume",             # SIGKILLed sweeps resumed
        "test_committed_results",  # clones the repository and rebuilds the table
        "test_static",             # torch.compile
        "test_ranges::test_the_job_refuses_exactly_the_values_outside_each_range",  # ~1000 composed configs
        "test_distribution",       # G-tests
        "test_tables::test_make_table_after_a_tiny_sweep_with_two_seeds",
        "test_mtbench::test_sweep_with_a_judge_that_is_down_keeps_the_answers_and_judge_py_grades_them_later",
        "test_mtbench::test_sweep_with_a_live_judge_records_scores_also_for_answers_generated_before",
        "test_tree_decoders::test_tree_decoders_reproduce_ar",
        "test_tree_decoders::test_mcss_that_never_updates_q_fails",
        "test_tree_decoders::test_spectr_with_rho_fixed_to_one_fails",
        "test_tree_decoders::test_mcss_accepts_at_least_as_often_as_with_replacement",
        "test_lossy_decoders::test_typical_reject_all_is_ar_sampling",
        "test_lossy_decoders::test_bild_fallback_one_is_ar_sampling",
        "test_quant::test_spd_with_an_int8_draft_reproduces_the_target",
        "test_quant::test_spd_with_an_int8_draft_and_p_instead_of_the_residual_fails",
        "test_hf_assisted::test_hf_assisted_sampling_reproduces_the_target",
        "test_hf_assisted::test_hf_assisted_with_a_lossy_verification_fails",
        "test_llamacpp::test_spd_on_llamacpp_reproduces_its_target",
        "test_llamacpp::test_spd_on_llamacpp_with_p_instead_of_the_residual_fails",
    },
}


def pytest_configure(config):
    for name, why in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {why}")


def pytest_collection_modifyitems(config, items):
    modules = {}
    for item in items:
        module = item.module.__name__.rpartition(".")[2]
        modules[module] = item.module
        function = getattr(item, "originalname", item.name)
        for name, marked in MARKED.items():
            if module in marked or f"{module}::{function}" in marked:
                item.add_marker(getattr(pytest.mark, name))
    # a renamed test must not drop out of its marker silently (into the fast lane, say)
    stale = sorted(entry for marked in MARKED.values() for entry in marked if "::" in entry
                   and entry.split("::")[0] in modules and not hasattr(modules[entry.split("::")[0]], entry.split("::")[1]))
    if stale:
        raise pytest.UsageError(f"tests/conftest.py marks tests that do not exist: {', '.join(stale)}")

# The toy backend of tests/recompute_backend.py, registered for the whole session so every test
# parametrised over the registered backends (helpers.RUNNERS) runs on it too.
from mtad.runners.catalogue import register_backend  # noqa: E402
from recompute_backend import Recompute  # noqa: E402

register_backend(Recompute)
