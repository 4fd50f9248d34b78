# The README's two commands: `make demo` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Stamps are keyed on pyproject.toml's content: a changed dependency list reinstalls, nothing else.
HASH := $(shell sha256sum pyproject.toml | cut -c1-12)
BASE_STAMP := $(VENV)/.stamp-base-$(HASH)
TEST_STAMP := $(VENV)/.stamp-test-$(HASH)
DEMO_FLAGS ?= --name demo
# `make demo TORCH=cpu`: PyTorch's CPU-only wheels (no CUDA libraries) before the rest.
TORCH ?= default
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu

.PHONY: demo test lint faults install docs

install: $(BASE_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(BASE_STAMP): | $(BIN)/python
	@echo "Installing scenelab and its dependencies into $(VENV) (first time: a few minutes) ..."
	@if [ "$(TORCH)" = cpu ]; then \
		echo "Installing PyTorch's CPU-only wheels from $(TORCH_CPU_INDEX) ..."; \
		$(BIN)/python -m pip install --quiet --progress-bar off --timeout 15 --retries 1 \
			--index-url $(TORCH_CPU_INDEX) 'torch<=2.14.1' 'torchvision<=0.29.1' \
		|| echo "PyTorch's CPU wheel index cannot be reached; installing the default wheels."; \
	elif [ "$(TORCH)" != default ]; then \
		echo "TORCH=$(TORCH) is not an option: use TORCH=cpu or leave it out"; exit 2; \
	fi
	$(BIN)/python -m pip install --quiet --progress-bar off --editable .
	rm -f $(VENV)/.stamp-*
	touch $@

$(TEST_STAMP): $(BASE_STAMP)
	$(BIN)/python -m pip install --quiet --progress-bar off --editable '.[test]'
	touch $@

demo: $(BASE_STAMP)
	$(BIN)/scenelab train $(DEMO_FLAGS)
	$(BIN)/scenelab eval --tta --checkpoint "$$(ls -td runs/*-demo | head -n 1)/checkpoints/best.pt"

# pytest exits 5 when it collects no tests: not a failure of the suite. The docs site must
# build with --strict too (a broken link or API reference fails the suite).
test: $(TEST_STAMP)
	$(BIN)/python -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; \
	if [ $$rc -eq 0 ]; then $(MAKE) --no-print-directory docs; rc=$$?; fi; exit $$rc

# The documentation site, from docs/ into site/ (open site/index.html). MkDocs reads the
# docstrings without importing scenelab, so it lives in a small venv of its own
# (docs/requirements.txt): mkdocs-material's requests conflicts with torchattacks' pin.
DOCS_VENV := .venv-docs
DOCS_STAMP := $(DOCS_VENV)/.stamp-$(shell sha256sum docs/requirements.txt | cut -c1-12)

$(DOCS_STAMP):
	$(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/python -m pip install --quiet --progress-bar off -r docs/requirements.txt
	rm -f $(DOCS_VENV)/.stamp-*
	touch $@

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(DOCS_VENV)/bin/mkdocs build --strict --quiet --site-dir site
	@echo "Docs: site/index.html"

# The fault suite: killed and stopped runs, atomic checkpoints, corrupt files, bad values.
faults: $(TEST_STAMP)
	$(BIN)/python -m pytest -m faults

lint: $(TEST_STAMP)
	$(BIN)/ruff format --check src tests
	$(BIN)/ruff check src tests
