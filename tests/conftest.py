import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One intra-op thread per worker: several workers each spinning several torch threads on
    # few cores slow the many tiny ops of the toy-model tests down by an order of magnitude.
    import torch

    torch.set_num_threads(1)

# The toy backend of tests/recompute_backend.py, registered for the whole session so every test
# parametrised over the registered backends (helpers.RUNNERS) runs on it too.
from mtad.runners.catalogue import register_backend  # noqa: E402
from recompute_backend import Recompute  # noqa: E402

register_backend(Recompute)
