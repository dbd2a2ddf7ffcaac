# lmobjectives developer commands. Everything runs inside .venv (created on demand).
#   make test   install everything and run the whole suite (Rust + Python); CI runs this
#   make run    install and run the main job (MLM benchmark on the embedded corpus)
#   make lint   formatting, clippy, ruff, type stubs
#   make bench  pytest-benchmark tables and the ratio table for the README

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed-dev

.PHONY: dev inplace test test-rust test-python lint run bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Editable install: maturin builds the Rust extension (release profile) into the venv.
$(STAMP): $(PY) pyproject.toml Cargo.toml rust/core/Cargo.toml rust/python/Cargo.toml
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

dev: $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev]"  # rebuild the extension after Rust edits

# Build the extension into python/lmobjectives without touching any venv (for worktrees:
# run with PYTHONPATH=python and an interpreter that has the dependencies).
inplace:
	cargo build --release -p lmobjectives-python --locked
	cp target/release/lib_core.so python/lmobjectives/_core.abi3.so

test: dev lint test-rust test-python

test-rust:
	cargo test --workspace --exclude lmobjectives-python --locked

test-python: dev
	$(BIN)/pytest -q --benchmark-disable

lint: dev
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	$(BIN)/ruff check python tests benches
	$(BIN)/ruff format --check python tests benches
	$(BIN)/python -m mypy.stubtest lmobjectives._core
	$(BIN)/python -m mypy python/lmobjectives

run:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet ".[bench]"
	$(BIN)/lmobjectives

bench: dev
	$(BIN)/pytest benches --benchmark-only --benchmark-group-by=group --benchmark-columns=median,ops,rounds
	$(BIN)/lmobjectives bench --markdown
	$(BIN)/lmobjectives bench --objective t5 --markdown
	$(BIN)/lmobjectives bench --objective bart --markdown
	$(BIN)/lmobjectives bench --objective mining --markdown

clean:
	rm -rf $(VENV) target .pytest_cache .benchmarks
