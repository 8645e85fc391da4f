# The two set-up commands of the README:
#   make quick   create .venv, install, run the embedded default (offline, < 2 min)
#   make test    create .venv, install with test extras, run the test suite
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1 -e '.[test]'
	touch $@

.PHONY: install quick test test-all
install: $(VENV)/.installed

quick: $(VENV)/.installed
	$(VENV)/bin/replaybench quick

test: $(VENV)/.installed
	$(PY) -m pytest

test-all: $(VENV)/.installed
	$(PY) -m pytest -m ""
