"""Shared fixtures: small deterministic tokenizers and batches (no downloads, no corpus)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD, UNK, CLS, SEP, MASK = range(5)
VOCAB = 1000


@pytest.fixture(autouse=True)
def _torch_on_one_thread():
    """Tests train tiny models: torch's intra-op threads only spin against each other (and
    against the collators' threads) on them, which made CPU runs several times slower under
    load. Leaves torch unimported when the test does not use it."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def small_tokenizer():
    """A WordPiece `tokenizers.Tokenizer` with 1000 ids: 5 specials then w5..w999."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    vocab.update({f"w{i}": i for i in range(len(SPECIALS), VOCAB)})
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(SPECIALS)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", CLS), ("[SEP]", SEP)],
    )
    return tok


@pytest.fixture(scope="session")
def hf_tokenizer(small_tokenizer):
    from lmobjectives.lab.baselines.huggingface import hf_tokenizer

    return hf_tokenizer(small_tokenizer)


def make_rows(n_rows: int, lo: int, hi: int, seed: int = 0) -> list[list[int]]:
    """Ragged rows `[CLS] w.. [SEP]` with lengths uniform in [lo, hi]."""
    g = np.random.default_rng(seed)
    rows = []
    for n in g.integers(lo, hi + 1, size=n_rows):
        body = g.integers(len(SPECIALS), VOCAB, size=n - 2).tolist()
        rows.append([CLS, *body, SEP])
    return rows


@pytest.fixture
def ragged_rows() -> list[list[int]]:
    return make_rows(16, 8, 64)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """After a run that included tests/fuzz: the fuzz table (cases, clean errors, failures per
    entry point); with ``LMOBJ_FUZZ_TABLE=PATH`` also written there. (Here rather than in a
    conftest of tests/fuzz: two modules named ``conftest`` on the path shadow each other.)"""
    import os

    harness = sys.modules.get("fuzz_harness")
    if harness is None or not harness.STATS:
        return
    profile = "full (LMOBJ_FUZZ=full)" if harness.FULL else "ci"
    terminalreporter.section(f"lmobjectives fuzz table, {profile} profile")
    terminalreporter.write_line(harness.table())
    path = os.environ.get("LMOBJ_FUZZ_TABLE")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            f.write(harness.table() + "\n")
