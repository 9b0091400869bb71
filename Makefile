# The two commands of the README: `make run` (main job, offline demo) and `make test` (whole suite).
# Both create .venv and install what is missing; they are no-ops for installation afterwards.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install run test lint bench clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

run: install
	$(PY) -m automl $(ARGS)

test: install
	$(PY) -m ruff check automl tests benchmarks
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check automl tests benchmarks
	$(PY) -m ruff format --check automl tests benchmarks

bench: install
	for script in benchmarks/speed/[!_]*.py; do $(PY) -m benchmarks.speed.$$(basename $$script .py) || exit 1; done

clean:
	rm -rf outputs multirun .pytest_cache .ruff_cache
