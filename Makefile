# Two entry points for a fresh machine: `make demo` (the main job) and `make test` (the tests).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test toolchain clean

$(BIN)/testbed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]' 'tox>=4.20,<5'
	touch $@

toolchain: $(BIN)/testbed
	$(BIN)/testbed toolchain

demo: toolchain
	$(BIN)/testbed demo

test: $(BIN)/testbed
	$(BIN)/tox

clean:
	rm -rf $(VENV) .tox
