"""Session fixtures for the benchmarks: the same batches, built once from the embedded corpus
(:meth:`TokenCorpus.default`, cached under ``$LMOBJECTIVES_CACHE``), for every contender."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from lmobjectives import RepeatedSampleKeyWarning
from lmobjectives.lab.bench.workloads import BATCH_SIZE, Workload, make_workloads

SEED = 0


@pytest.fixture(autouse=True)
def _same_batch_again():
    """A benchmark collates the same batch many times on purpose: the collators still check
    for repeated sample keys (so the check's cost is measured), but their warning is expected
    here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepeatedSampleKeyWarning)
        yield


@pytest.fixture(scope="session")
def corpus():
    from lmobjectives.corpus import TokenCorpus

    return TokenCorpus.default()


@pytest.fixture(scope="session")
def workloads(corpus) -> dict[str, Workload]:
    """``{"ragged": …, "padded": …}`` (see :mod:`lmobjectives.lab.bench.workloads`), 4 batches
    each."""
    return {w.name: w for w in make_workloads(corpus, batch_size=BATCH_SIZE, num_batches=4)}


@pytest.fixture(scope="session")
def special_ids(corpus) -> dict[str, int]:
    tok = corpus.tokenizer
    return {t: tok.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}


@pytest.fixture(scope="session")
def originals(workloads, special_ids) -> dict[str, list[np.ndarray]]:
    """Every batch as the padded ``(rows, width)`` int64 array the collators should mask."""
    pad = special_ids["[PAD]"]
    out = {}
    for name, w in workloads.items():
        arrays = []
        for batch in w.batches:
            if isinstance(batch, np.ndarray):
                arrays.append(batch)
                continue
            rows = [ex["input_ids"] for ex in batch]
            a = np.full((len(rows), max(map(len, rows))), pad, dtype=np.int64)
            for i, r in enumerate(rows):
                a[i, : len(r)] = r
            arrays.append(a)
        out[name] = arrays
    return out


@pytest.fixture(scope="session")
def collators(corpus):
    """The contenders, as :func:`lmobjectives.lab.bench.masking.mlm_collators` builds them."""
    from lmobjectives.lab.baselines.huggingface import hf_mlm_collator
    from lmobjectives.lab.baselines.numpy_reference import NumpyMLMCollator
    from lmobjectives.masking import MLMCollator

    return {
        "lmobjectives": MLMCollator(corpus.tokenizer, seed=SEED),
        "hf": hf_mlm_collator(corpus.tokenizer, seed=SEED),
        "numpy": NumpyMLMCollator(corpus.tokenizer, seed=SEED),
    }
