# The two commands of the README: `make demo` and `make test` (the full suite, as CI runs it).
# `make test-fast` skips the tests marked slow (training, end-to-end runs): under 2 minutes.
# `make docs` builds the documentation site into site/ (mkdocs.yml; warnings are errors);
# `make docs-figures` remakes its pictures and example outputs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast docs docs-figures lint dist bench bench-paper bench-scaling clean

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

# The docs' pictures and example outputs (docs/figures.py): the gallery scripts, the notebook and
# the figures of a finished run (RUN=runs/quickstart after `make demo`).
RUN ?= runs/quickstart
docs-figures: $(VENV)/.installed-test
	$(BIN)/python docs/figures.py --run $(RUN)

# The Python of docs/ that ruff checks (not the Markdown pages' code blocks).
DOCS_PY := docs/*.py docs/gallery/*.py docs/notebook.ipynb

lint: $(VENV)/.installed-test
	$(BIN)/ruff check smoothstab tests benchmarks $(DOCS_PY)
	$(BIN)/ruff format --check smoothstab tests benchmarks $(DOCS_PY)

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
