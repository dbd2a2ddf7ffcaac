# lmobjectives developer commands. Every Python package comes from the committed lock
# (requirements/dev.lock), installed with a pinned uv into a virtual environment made on demand.
#   make run          install (locked) and run the main job on the embedded corpus
#   make test         install everything (locked) and run the whole suite (Rust + Python); CI runs this
#   make test-latest  the same suite against the newest releases of every dependency (finds drift)
#   make lock         re-resolve requirements/dev.lock from pyproject.toml (see docs: refreshing the lock)
#   make wheel        portable abi3 wheel (manylinux2014, stripped) + sdist, checked on every CPython found
#   make lint         formatting, clippy, ruff, mypy, type stubs, the long-function rule
#   make docs         the documentation site (mkdocs build --strict) into site/
#   make bench        pytest-benchmark tables and the ratio table for the README
#   make fuzz         the fuzz suite's full profile (>= 1e5 cases) and its table (tests/fuzz)

PYTHON     ?= python3
VENV       ?= .venv
BIN        := $(VENV)/bin
PY         := $(BIN)/python
LOCK       := requirements/dev.lock
UV_VERSION := 0.13.9
STAMP      := $(VENV)/.installed-lock
# uv run from the venv, always told which interpreter to install into.
UV          = $(BIN)/uv pip $(1) --python $(PY)

RUN_VENV    := .venv-run
LATEST_VENV := .venv-latest

.PHONY: fuzz dev inplace test test-rust test-python test-latest lint run bench lock wheel docs clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

# Exactly the locked set: `uv pip sync` also removes anything the lock does not name.
$(STAMP): $(PY) $(LOCK)
	$(call UV,sync) --quiet $(LOCK)
	rm -f $@ && touch $@

# Editable install of the package itself; maturin (locked, no build isolation) builds the Rust
# extension in release mode. Re-run after Rust edits (cargo rebuilds only what changed).
dev: $(STAMP)
	$(call UV,install) --quiet --no-deps --no-build-isolation --reinstall-package lmobjectives -e .

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

# The newest release of every dependency (no lock), in a venv of its own. A failure here that
# `make test` does not show is upstream drift: fix it, then `make lock`.
test-latest:
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(LATEST_VENV)/bin/uv pip install --python $(LATEST_VENV)/bin/python --quiet --upgrade --refresh -e ".[dev]"
	$(LATEST_VENV)/bin/uv pip list --python $(LATEST_VENV)/bin/python --quiet | grep -iE '^(torch|numpy|transformers|tokenizers|sentence-transformers|faiss-cpu|datasets) '
	$(LATEST_VENV)/bin/pytest -q --benchmark-disable -p no:cacheprovider

lock: $(PY)
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.10 \
	  --quiet --upgrade -o $(LOCK)

lint: dev
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	$(BIN)/ruff check python tests benches tools examples docs/griffe_docstrings.py
	$(BIN)/ruff format --check python tests benches tools examples docs/griffe_docstrings.py
	$(PY) tools/long_functions.py
	$(BIN)/python -m mypy.stubtest lmobjectives._core
	$(BIN)/python -m mypy python/lmobjectives

# The main job: the package with its [bench] extra, versions from the lock, in its own venv.
run:
	$(PYTHON) -m venv $(RUN_VENV)
	$(RUN_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(RUN_VENV)/bin/uv pip install --python $(RUN_VENV)/bin/python --quiet -c $(LOCK) ".[bench]"
	$(RUN_VENV)/bin/lmobjectives pretrain
	$(RUN_VENV)/bin/lmobjectives bench

# One abi3 wheel for CPython >= 3.10, linked by zig against glibc 2.17 (manylinux2014), stripped;
# auditwheel confirms the tag, then tools/check_wheel.py installs it into a fresh venv on every
# CPython 3.10-3.13 it finds (only NumPy beside it) and runs a collator and the embedded corpus.
wheel: $(STAMP)
	rm -rf dist
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/maturin build --release --locked --strip --zig \
	  --compatibility manylinux2014 --out dist
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/maturin sdist --out dist
	$(BIN)/auditwheel show dist/*.whl
	$(PY) tools/check_wheel.py dist/*.whl

docs: dev
	$(BIN)/mkdocs build --strict -d site

bench: dev
	$(BIN)/pytest benches --benchmark-only --benchmark-group-by=group --benchmark-columns=median,ops,rounds
	$(BIN)/lmobjectives bench --markdown
	$(BIN)/lmobjectives bench --objective t5 --markdown
	$(BIN)/lmobjectives bench --objective bart --markdown
	$(BIN)/lmobjectives bench --objective mining --markdown
	$(BIN)/python -m lmobjectives.lab.bench.mining --processes 1 2 --corpus 50000

# The cuda-marked tests and the GPU benchmarks in one run (< 8 min on one GPU); results as
# JSON + markdown in gpu-check/ (for docs/benchmarks.md). `tools/gpu_check.py --dry-run` on a CPU.
.PHONY: gpu-check
gpu-check: dev
	$(PY) tools/gpu_check.py --out gpu-check

clean:
	rm -rf $(VENV) $(RUN_VENV) $(LATEST_VENV) target dist site .pytest_cache .benchmarks

# The full fuzz profile: ten times the CI budgets (>= 1e5 cases); prints the table that
# docs/evidence/robustness.md shows.
fuzz: dev
	LMOBJ_FUZZ=full LMOBJ_FUZZ_TABLE=fuzz-table.md $(BIN)/pytest -q -p no:cacheprovider tests/fuzz
