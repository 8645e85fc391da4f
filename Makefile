# The two set-up commands of the README:
#   make quick   create .venv, install, run the embedded default (offline, < 2 min)
#   make test    create .venv, install with test extras, run the style gates and the test suite
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# An installed copy of the package, for import-linter: the rooms live in their own folders
# (installed as replaybench.<room>), which its import graph cannot see in the source tree.
LINT_TREE ?= $(or $(TMPDIR),/tmp)/replaybench-lint-tree
# The same for the docs' API reference: griffe reads the rooms from an installed copy (mkdocs.yml).
DOCS_TREE ?= $(or $(TMPDIR),/tmp)/replaybench-docs-tree

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1 -e '.[all,test,docs]'
	touch $@

.PHONY: install quick test test-all lint format docs
install: $(VENV)/.installed

quick: $(VENV)/.installed
	$(VENV)/bin/replaybench quick

# Style gates: one formatter and linter (ruff), a type checker on the core (mypy), the layers contract.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	rm -rf $(LINT_TREE)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation --target $(LINT_TREE) . && rm -rf build
	cd $(LINT_TREE) && PYTHONPATH=$(LINT_TREE) $(CURDIR)/$(VENV)/bin/lint-imports $(CURDIR)/pyproject.toml

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The documentation site, in strict mode (a broken link, a missing page or a bad docstring fails): site/.
docs: $(VENV)/.installed
	rm -rf $(DOCS_TREE)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation --target $(DOCS_TREE) . && rm -rf build
	REPLAYBENCH_DOCS_TREE=$(DOCS_TREE) NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d site

test: lint docs
	$(PY) -m pytest

test-all: lint docs
	$(PY) -m pytest -m ""
