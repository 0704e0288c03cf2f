# Every target sets up its own virtual environment (.venv) on first use, so each works on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export NO_MKDOCS_2_WARNING := 1
PIP := $(PY) -m pip --disable-pip-version-check
EXTRAS ?= test,demo,bench,examples,docs,dev
# On a failure pytest prints full tracebacks with the compared values and a summary line per test
# (-ra, in pyproject.toml); hypothesis prints the falsifying example and a @reproduce_failure blob.
# The slowest tests are listed so that the suite's time stays visible.
PYTEST_ARGS ?= --tb=long --durations=15

.PHONY: install demo test test-fast lint typecheck docs docs-check docs-figures docs-serve bench-quick gpu-check gpu-check-dry-run dist clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt torch
	$(PIP) install -q -c constraints.txt -e ".[$(EXTRAS)]"
	touch $@

demo: install  ## the main job: train SoFlow on a 2-D toy, write samples, a plot and a metric
	$(PY) examples/demo.py $(ARGS)

test: install  ## the whole test suite (the README's test command; CI runs it)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: install  ## the suite without the slow end-to-end tests
	$(PY) -m pytest -q $(PYTEST_ARGS) -m "not slow"

lint: install
	$(VENV)/bin/ruff check soflow_toolkit tests examples benchmarks
	$(VENV)/bin/ruff format --check soflow_toolkit tests examples benchmarks

typecheck: install
	$(VENV)/bin/mypy

docs: install  ## build the documentation site into site/
	$(VENV)/bin/mkdocs build --strict

docs-check: docs  ## every page in headless Chromium: math, images, no external requests, nothing wider than 1280 px
	$(PY) scripts/check_docs_browser.py --all

docs-figures: install  ## redraw the docs' figures and rewrite the tutorial's outputs (the measurements: see scripts/)
	$(PY) scripts/method_diagram.py
	$(PY) scripts/docs_outputs.py docs/tutorial.md --assets --write
	$(PY) scripts/troubleshooting_runs.py --tables-only

docs-serve: install  ## serve the documentation at http://127.0.0.1:8000
	$(VENV)/bin/mkdocs serve

bench-quick: install  ## every benchmark's smoke run (tiny budgets; results go to outputs/bench-quick)
	$(PY) benchmarks/step_cost.py --quick --out-dir outputs/bench-quick
	$(PY) benchmarks/toys.py --quick
	$(PY) benchmarks/toys_long.py --quick
	$(PY) benchmarks/digits.py --quick
	$(PY) benchmarks/demo_budget.py --quick
	$(PY) benchmarks/finetune.py --quick
	$(PY) benchmarks/guidance_range.py --quick

dist: install  ## build the wheel and the sdist into dist/, check them and install each into a fresh venv
	rm -rf dist
	$(PY) -m build --outdir dist .
	$(VENV)/bin/twine check --strict dist/*
	$(PY) scripts/check_dist.py dist

gpu-check:  ## the GPU check on a CUDA machine (~8 min on one H200): no install step, the machine's own torch
	$(PYTHON) benchmarks/gpu_check.py $(ARGS)

gpu-check-dry-run: install  ## the GPU check's every part at tiny sizes on CPU (CI)
	$(PY) benchmarks/gpu_check.py --dry-run

clean:
	rm -rf $(VENV) site dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
