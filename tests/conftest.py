import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One intra-op thread per worker: several workers each spinning several torch threads on
    # few cores slow the many tiny ops of the toy-model tests down by an order of magnitude.
    import torch

    torch.set_num_threads(1)

# Markers set here by module, so that no test file has to carry them. `make test` runs every test;
# `make test-fast` (the inner loop) deselects these three.
MARKERS = {
    "real_pair": "needs the prepared Qwen2.5-Coder pair (make prepare)",
    "browser": "needs headless Chromium and chromedriver",
    "slow": "a minute or more of CPU: crash-and-resume sweeps, repository clones, compiled backends, G-tests",
}
MODULES = {
    "real_pair": {"test_real_pair"},
    "browser": {"test_report_browser"},
    "slow": set(),
}


def pytest_configure(config):
    for name, why in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {why}")


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rpartition(".")[2]
        for name, modules in MODULES.items():
            if module in modules or item.nodeid in modules:
                item.add_marker(getattr(pytest.mark, name))
