# The README's two commands: `make demo` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Stamps are keyed on pyproject.toml's content: a changed dependency list reinstalls, nothing else.
HASH := $(shell sha256sum pyproject.toml | cut -c1-12)
BASE_STAMP := $(VENV)/.stamp-base-$(HASH)
TEST_STAMP := $(VENV)/.stamp-test-$(HASH)
DEMO_FLAGS ?= --name demo

.PHONY: demo test lint faults install

install: $(BASE_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(BASE_STAMP): | $(BIN)/python
	@echo "Installing scenelab and its dependencies into $(VENV) (first time: a few minutes) ..."
	$(BIN)/python -m pip install --quiet --progress-bar off --editable .
	rm -f $(VENV)/.stamp-*
	touch $@

$(TEST_STAMP): $(BASE_STAMP)
	$(BIN)/python -m pip install --quiet --progress-bar off --editable '.[test]'
	touch $@

demo: $(BASE_STAMP)
	$(BIN)/scenelab train $(DEMO_FLAGS)
	$(BIN)/scenelab eval --tta --checkpoint "$$(ls -td runs/*-demo | head -n 1)/checkpoints/best.pt"

# pytest exits 5 when it collects no tests: not a failure of the suite.
test: $(TEST_STAMP)
	$(BIN)/python -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

# The fault suite: killed and stopped runs, atomic checkpoints, corrupt files, bad values.
faults: $(TEST_STAMP)
	$(BIN)/python -m pytest -m faults

lint: $(TEST_STAMP)
	$(BIN)/ruff format --check src tests
	$(BIN)/ruff check src tests
