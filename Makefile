# The two commands of the README: `make demo` and `make test` (the full suite, as CI runs it).
# `make test-fast` skips the tests marked slow (training, end-to-end runs): under 2 minutes.
# `make docs` builds the documentation site into site/ (mkdocs.yml; warnings are errors).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast docs lint dist bench bench-paper bench-scaling clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/smoothstab run

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -m "not slow"

docs: $(VENV)/.installed-test
	$(BIN)/mkdocs build --strict

lint: $(VENV)/.installed-test
	$(BIN)/ruff check smoothstab tests benchmarks
	$(BIN)/ruff format --check smoothstab tests benchmarks

# The sdist and the wheel into dist/ (`twine check dist/*` before an upload).
dist: $(VENV)/.installed-test
	$(BIN)/python -m build --no-isolation

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench_smooth.py

# The paper's attribution loop against our stages, and the attribute stage's scaling (add
# DEVICE=cuda on a GPU machine).
DEVICE ?= cpu
bench-paper: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench_paper_loop.py --device $(DEVICE)

bench-scaling: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench_scaling.py --device $(DEVICE)

clean:
	rm -rf $(VENV) runs build dist site
