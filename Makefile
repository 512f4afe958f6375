# Set-up installs the local CPU torch wheel FIRST, so the torch requirement of the project
# is already met and pip never pulls a multi-GB CUDA build on a CPU machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1

.PHONY: setup demo test test-all clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

demo: setup
	$(PY) run.py -m decoder=ar,spd,mtad model=tiny task=synthetic

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
