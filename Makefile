# One entry point for people and CI. Override PYTHON or TORCH_SPEC on the command line, e.g.
#   make install TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
ASSETS ?= build/assets/tiny
export DS_BUILD_OPS := 0
export DS_ACCELERATOR ?= cpu
export RAY_AUTH_MODE ?= disabled
export HF_HUB_OFFLINE ?= 1
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/build/torch_extensions

.PHONY: install assets demo test test-slow bench clean

install:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -c "import torch, ray, deepspeed, wtpsplit, hanzidentifier; print('mimir installed: torch', torch.__version__, 'ray', ray.__version__, 'deepspeed', deepspeed.__version__)"

assets:
	$(PY) -m jobs.assets tiny --out $(ASSETS)

demo:
	$(PY) -m jobs.demo --config jobs/configs/demo.yaml

test:
	$(PY) -m pytest -q -m "not slow"

test-slow:
	$(PY) -m pytest -q -m slow

bench:
	$(PY) -m jobs.bench

clean:
	rm -rf build
