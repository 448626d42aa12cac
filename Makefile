# semantic-genesis: the two commands a fresh machine needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH_PIN ?= torch==2.13.0
DEMO_OUT ?= demo_out
# pytest-xdist workers for the default suite (2 cores on CI machines).
TEST_WORKERS ?= 2
# One CPU thread per process, as the tests run: the demo's numbers are then the same on every machine
# (examples/demo.py pins the same variables for each stage it runs).
PIN_THREADS := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1

.PHONY: install test test-slow test-install test-all demo demo-readme bench bench-transfer bench-transfer-gpu clean help

help:
	@echo "make demo       create .venv, install, run the end-to-end demo on the embedded phantom data;"
	@echo "                fails with a diff if its transfer table differs from the README's"
	@echo "make demo-readme  the demo, writing its transfer table into README.md"
	@echo "make test       create .venv, install (with dev extras), run the default test suite"
	@echo "make test-slow  the slow tests (DDP, long training) only"
	@echo "make test-install  build the wheel, install it into a fresh venv, run the CLI from outside the repo"
	@echo "make bench      run the benchmarks (prints figures)"
	@echo "make bench-transfer  transfer benchmark, CPU preset (sized for 2 cores and <= 90 min; resumes when rerun):"
	@echo "                label efficiency, linear probes, pretraining budgets -> $(TRANSFER_OUT)/report.md"
	@echo "make bench-transfer-gpu  the same with the paper-sized GPU preset (TRANSFER_DATA='pretrain=DIR ncc=DIR ncs=DIR')"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Torch is installed first and pinned, so the package's `torch` range is already satisfied and pip
# never pulls a different build (on a CPU machine the pin is the local CPU wheel).
$(VENV)/.installed: $(VENV)/bin/python pyproject.toml
	$(PIP) install --quiet "$(TORCH_PIN)"
	$(PIP) install --quiet -e ".[dev]"
	@touch $@

install: $(VENV)/.installed

test: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --durations=15

test-slow: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m slow --durations=15

# A real (non-editable) install: the wheel goes into a fresh venv that borrows this venv's dependencies.
test-install: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m slow tests/packaging

test-all: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m "" -n $(TEST_WORKERS) --durations=15

demo: install
	$(PIN_THREADS) $(PY) examples/demo.py --out $(DEMO_OUT)

demo-readme: install
	$(PIN_THREADS) $(PY) examples/demo.py --out $(DEMO_OUT) --update-readme

bench: install
	$(PY) benchmarks/transforms.py
	$(PY) benchmarks/pretrain.py
	$(PY) benchmarks/patterns.py --gen2d-classes 12  # 2D generation memory: 12 of the paper's 100 classes (two chunks; the peak does not grow with C)
	$(PY) benchmarks/content_test.py
	$(PY) benchmarks/phantoms.py

# Transfer benchmark (benchmarks/transfer_bench.py): every stage is a printed semantic-genesis command.
TRANSFER_OUT ?= bench/transfer
TRANSFER_ARGS ?=
bench-transfer: install
	$(PY) benchmarks/transfer_bench.py --preset cpu --out $(TRANSFER_OUT) $(TRANSFER_ARGS)

TRANSFER_DATA ?=
bench-transfer-gpu: install
	$(PY) benchmarks/transfer_bench.py --preset gpu --out $(TRANSFER_OUT)_gpu --data $(TRANSFER_DATA) $(TRANSFER_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache src/*.egg-info
