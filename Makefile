# Both targets create and use .venv/ in the repo and install everything they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PIPFLAGS := --disable-pip-version-check -q -c constraints.txt

.PHONY: demo test lint install install-dev bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install $(PIPFLAGS) torch==2.13.0

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml constraints.txt
	$(PIP) install $(PIPFLAGS) -e ".[all]"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install $(PIPFLAGS) -e ".[dev]"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# The design pipeline end to end on scikit-learn's 8x8 digits (bundled, nothing downloaded): the
# advisor's top 3 (a ResNet, a CNN, an MLP) sized to 2 ms / 100k parameters, trained, compared,
# the winner trained, benchmarked, exported to ONNX and written up in runs/demo-digits/report.html.
demo: install
	rm -rf runs/demo-digits
	$(VENV)/bin/archlab design digits --latency-ms 2 --params-max 100000 --budget-s 60 -o runs/demo-digits

# Habits: ruff (lint + format check) and the import-linter layer contracts (pyproject.toml).
lint: install-dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest -n 2 tests

clean:
	rm -rf $(VENV) runs .pytest_cache
