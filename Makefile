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

demo: install
	$(VENV)/bin/archlab train --model cnn1d_mnist1d --data mnist1d --task classification \
		--set train.lr=1e-2 --set train.batch_size=100 --set train.max_steps=3000 \
		--out-dir runs

# Habits: ruff (lint + format check) and the import-linter layer contracts (pyproject.toml).
lint: install-dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest -n 2 tests

clean:
	rm -rf $(VENV) runs .pytest_cache
