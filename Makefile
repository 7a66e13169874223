# Two entry points for a fresh machine: `make demo` (the main job) and `make test` (the tests).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

# GoQuorum is built from the source archive in the project's shared files (the Go module proxy
# refuses it); an operator's own TESTBED_GOQUORUM_SOURCE or TESTBED_GOQUORUM_BIN is left alone.
GOQUORUM_VENDORED := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))../shared/vendor/goquorum-v24.4.1-src.tar.xz)
ifeq ($(strip $(TESTBED_GOQUORUM_SOURCE)),)
ifneq ($(wildcard $(GOQUORUM_VENDORED)),)
export TESTBED_GOQUORUM_SOURCE := $(GOQUORUM_VENDORED)
endif
endif

.PHONY: demo test toolchain schemas clean

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

schemas: $(BIN)/testbed
	$(BIN)/testbed schema network --file schemas/network.schema.json
	$(BIN)/testbed schema scenario --file schemas/scenario.schema.json

clean:
	rm -rf $(VENV) .tox
