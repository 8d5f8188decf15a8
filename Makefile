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

# The lock (README "Dependencies"): every package of the CPU install at an exact version with
# its hashes, resolved by uv from pyproject.toml's ranges; the container image's subset (no
# test tools) and the GPU host's kit for CPython 3.12, both at the same versions.
LOCKS ?= locks
LOCK := $(LOCKS)/requirements-cpu.txt
IMAGE_LOCK := $(LOCKS)/requirements-image.txt
GPU_LOCK := $(LOCKS)/requirements-gpu-py312.txt
# Where uv finds torch's CPU build to resolve against: this machine's copy, else PyTorch's index.
TORCH_WHEELS ?= $(if $(wildcard /opt/wheels/torch-2.13.0+cpu-*),/opt/wheels,https://download.pytorch.org/whl/cpu/torch/)
UV_COMPILE = $(VENV)/bin/uv pip compile --quiet --generate-hashes --custom-compile-command "make lock" \
	--python-platform x86_64-manylinux_2_28 $(UPGRADE)

.PHONY: install lock lock-check gpu-kit assets demo test test-slow rehearsal bench bench-gpu clean

install:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	$(PY) -c "import torch, ray, deepspeed, wtpsplit, hanzidentifier; print('mimir installed: torch', torch.__version__, 'ray', ray.__version__, 'deepspeed', deepspeed.__version__)"

# Keeps every pin that still satisfies pyproject.toml; `make lock UPGRADE=--upgrade` moves all
# to their newest allowed versions, UPGRADE="--upgrade-package NAME" one of them.
lock:
	$(UV_COMPILE) --python-version 3.11 --find-links $(TORCH_WHEELS) --no-emit-package torch \
		pyproject.toml locks/lock.in --extra test --extra dev -o $(LOCK)
	$(UV_COMPILE) --python-version 3.11 --find-links $(TORCH_WHEELS) --no-emit-package torch \
		--no-annotate -c $(LOCK) pyproject.toml locks/lock.in -o $(IMAGE_LOCK)
	$(UV_COMPILE) --python-version 3.12 --no-deps --no-annotate -c $(LOCK) locks/gpu-kit.in \
		-o $(GPU_LOCK)

# Fails when the committed lock no longer agrees with pyproject.toml: re-resolving it must
# change nothing.
lock-check:
	@tmp=$$(mktemp -d) && cp $(LOCK) $(IMAGE_LOCK) $(GPU_LOCK) $$tmp/ \
	&& $(MAKE) --no-print-directory lock LOCKS=$$tmp \
	&& for f in $(LOCK) $(IMAGE_LOCK) $(GPU_LOCK); do diff -u $$f $$tmp/$$(basename $$f) || exit 1; done \
	&& rm -rf $$tmp && echo "lock agrees with pyproject.toml" \
	|| { echo "the lock disagrees with pyproject.toml: run 'make lock' and commit it" >&2; rm -rf $$tmp; exit 1; }

# .whl/: wheels for the offline GPU host (Python 3.12), at the lock's versions (README "GPU").
gpu-kit:
	bash infra/gpu/kit.sh $(GPU_LOCK)

assets:
	$(PY) -m jobs.assets tiny --out $(ASSETS)

demo:
	$(PY) -m jobs.demo --config configs/demo.yaml

test:
	$(PY) -m pytest -q -m "not slow"

test-slow:
	$(PY) -m pytest -q -m slow

# Every job the way a cluster runs it: `ray start` nodes, moto's S3, `ray job submit`
# (tests/test_rehearsal.py); writes build/rehearsal/report.json.
rehearsal:
	$(PY) -m pytest -q -m slow tests/test_rehearsal.py

bench:
	$(PY) -m jobs.bench

# The one prepared GPU measurement (README "Benchmarks on a GPU node"): OUT gets results.json.
# Uses .venv if there is one, else python3 with the GPU kit (.whl/) installed into /tmp/site.
# ARGS go to jobs.bench_gpu, e.g. ARGS="--assets DIR --only runtime".
OUT ?= build/bench-gpu
bench-gpu:
	bash infra/gpu/bench.sh $(OUT) $(ARGS)

clean:
	rm -rf build
