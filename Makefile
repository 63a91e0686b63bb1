# `make demo` runs the demo, `make test` runs the whole test suite; both create .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: venv tools lint test demo bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

# The rules and end-to-end tests need the real promtool, Prometheus and Alertmanager; the
# real-Ordo tests need Node.js/npm, PostgreSQL server binaries, psql and a non-root OS user.
tools:
	bash scripts/ensure-prometheus.sh
	bash scripts/ensure-ordo.sh

lint: venv
	$(VENV)/bin/ruff check exporter tests benchmarks scripts
	$(VENV)/bin/mypy exporter benchmarks

# Coverage of exporter/ by the in-process tests (processes started by tests/integration are not
# measured): a report, no gate. It costs CPU-bound unit tests about 2.5x; `make test COV=` skips it.
COV ?= --cov=exporter --cov-report=term
test: venv tools lint
	$(VENV)/bin/pytest -q $(COV)

demo: venv
	$(VENV)/bin/asyncjob-exporter demo

# Quick benchmark (about 3 minutes): writes benchmarks/results.json and benchmarks/RESULTS.md.
bench: venv
	$(PY) -m benchmarks.run --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .coverage
