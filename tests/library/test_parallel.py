"""Threads, processes and the interpreter lock: DataLoader workers, spawn, fork, the GIL."""

from __future__ import annotations

import os
import pickle
import threading
import time

import numpy as np
import pytest
import torch

from lmobjectives import MLMCollator
from lmobjectives._seeding import resolve_num_threads

from conftest import MASK, PAD, VOCAB, make_rows

DataLoader = torch.utils.data.DataLoader


def collator(**kw) -> MLMCollator:
    base = {"vocab_size": VOCAB, "mask_token_id": MASK, "pad_token_id": PAD, "seed": 11}
    base.update(kw)
    return MLMCollator(**base)


DATA = [{"input_ids": r} for r in make_rows(96, 16, 80, seed=3)]
SAME = [{"input_ids": list(range(10, 60))} for _ in range(32)]


class RecordThreads:
    """A collate_fn that also reports the thread count the collator would use."""

    def __init__(self, inner: MLMCollator) -> None:
        self.inner = inner

    def __call__(self, examples):
        batch = self.inner(examples)
        batch["threads"] = np.array([resolve_num_threads(self.inner.num_threads)])
        return batch


def labels_of(loader) -> list[np.ndarray]:
    return [np.asarray(b["labels"]) for b in loader]


def assert_same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_same_batches_for_0_and_2_workers_fork_and_spawn():
    ref = labels_of(DataLoader(DATA, batch_size=8, collate_fn=collator(), num_workers=0))
    forked = DataLoader(DATA, batch_size=8, collate_fn=collator(), num_workers=2)
    assert_same(ref, labels_of(forked))
    spawned = DataLoader(
        DATA,
        batch_size=8,
        collate_fn=collator(),
        num_workers=2,
        multiprocessing_context="spawn",
    )
    assert_same(ref, labels_of(spawned))


@pytest.mark.slow
def test_pt_batches_from_workers_share_one_buffer_and_match():
    ref = list(DataLoader(DATA, batch_size=8, collate_fn=collator(return_tensors="pt")))
    got = list(
        DataLoader(DATA, batch_size=8, collate_fn=collator(return_tensors="pt"), num_workers=2)
    )
    assert len(got) == len(ref)
    for a, b in zip(ref, got, strict=True):
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
        # The worker wrote all three outputs into one shared-memory tensor: one segment
        # crossed the process boundary, and the three are views of it.
        storage = b["input_ids"].untyped_storage().data_ptr()
        assert b["labels"].untyped_storage().data_ptr() == storage
        assert b["attention_mask"].untyped_storage().data_ptr() == storage
        assert b["input_ids"].is_shared()


def test_allocate_callback_contract():
    from lmobjectives.torch import SharedMemoryAllocator

    m = collator()._masker
    rows = [ex["input_ids"] for ex in DATA[:4]]
    alloc = SharedMemoryAllocator()
    ids, attn, labels = m.mask(rows, seed=1, allocate=alloc)
    own = m.mask(rows, seed=1)
    for a, b in zip((ids, attn, labels), own, strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.shares_memory(ids, alloc.tensor.numpy())
    with pytest.raises(ValueError, match="allocate: must return a C-contiguous array of shape"):
        m.mask(rows, seed=1, allocate=lambda shape, dtype: np.zeros((3, 1, 1), dtype=np.int64))
    with pytest.raises(TypeError, match="allocate: must return a NumPy array of dtype"):
        m.mask(rows, seed=1, allocate=lambda shape, dtype: np.zeros(shape, dtype=np.int32))
    frozen = np.zeros((3, 4, max(map(len, rows))), dtype=np.int64)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        m.mask(rows, seed=1, allocate=lambda shape, dtype: frozen)


@pytest.mark.slow
def test_sample_keyed_batches_match_for_any_workers_and_batch_size():
    data = [{"input_ids": ex["input_ids"], "idx": i} for i, ex in enumerate(DATA)]
    one = np.concatenate(
        [b["labels"][:, :20] for b in DataLoader(data, batch_size=96, collate_fn=collator())]
    )
    many = DataLoader(data, batch_size=5, collate_fn=collator(), num_workers=2)
    got = np.concatenate([np.asarray(b["labels"])[:, :20] for b in many])
    np.testing.assert_array_equal(got, one)


@pytest.mark.slow
def test_unseeded_workers_never_share_a_stream():
    # Every row is identical, so two batches are equal only if their streams are.
    loader = DataLoader(SAME, batch_size=8, collate_fn=collator(seed=None), num_workers=2)
    epoch1 = labels_of(loader)
    epoch2 = labels_of(loader)
    flat = [x.tobytes() for x in epoch1 + epoch2]
    assert len(set(flat)) == len(flat)


@pytest.mark.slow
def test_seeded_persistent_workers_do_not_repeat_masks_across_epochs():
    loader = DataLoader(
        SAME, batch_size=8, collate_fn=collator(), num_workers=2, persistent_workers=True
    )
    flat = [x.tobytes() for x in labels_of(loader) + labels_of(loader)]
    assert len(set(flat)) == len(flat)


@pytest.mark.slow
def test_set_epoch_reaches_non_persistent_workers():
    c = collator()
    loader = DataLoader(DATA, batch_size=8, collate_fn=c, num_workers=2)
    e0 = labels_of(loader)
    c.set_epoch(1)
    e1 = labels_of(loader)
    assert all(not np.array_equal(a, b) for a, b in zip(e0, e1, strict=True))
    c.set_epoch(1)
    ref = collator()
    ref.set_epoch(1)
    assert_same(e1, labels_of(DataLoader(DATA, batch_size=8, collate_fn=ref)))


@pytest.mark.slow
def test_workers_run_serially_by_default():
    loader = DataLoader(DATA, batch_size=8, collate_fn=RecordThreads(collator()), num_workers=2)
    assert {int(b["threads"][0]) for b in loader} == {1}
    main = RecordThreads(collator())(DATA[:4])
    assert int(main["threads"][0]) != 1 or os.cpu_count() == 1


def test_thread_count_from_argument_and_environment(monkeypatch):
    monkeypatch.delenv("LMOBJECTIVES_NUM_THREADS", raising=False)
    assert resolve_num_threads(None) == 0  # all CPUs
    assert resolve_num_threads(3) == 3
    monkeypatch.setenv("LMOBJECTIVES_NUM_THREADS", "2")
    assert resolve_num_threads(None) == 2
    monkeypatch.setenv("LMOBJECTIVES_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="LMOBJECTIVES_NUM_THREADS"):
        resolve_num_threads(None)
    with pytest.raises(ValueError, match="LMOBJECTIVES_NUM_THREADS"):
        collator()(DATA[:2])


def test_concurrent_calls_from_threads_never_share_a_batch_index():
    rows = [ex["input_ids"] for ex in SAME[:8]]
    shared = collator(num_threads=1)
    results: list[bytes] = []

    def work() -> None:
        for _ in range(50):
            results.append(shared(rows)["labels"].tobytes())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    serial = collator(num_threads=1)
    expected = {serial(rows)["labels"].tobytes() for _ in range(200)}
    assert len(set(results)) == 200
    assert set(results) == expected


def test_kernel_releases_the_gil():
    """A Python thread keeps running while the kernel works on a large batch."""
    big = np.random.default_rng(0).integers(5, VOCAB, size=(1024, 4096), dtype=np.int64)
    c = collator(num_threads=1)
    c(big[:8])  # warm up
    ticks = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        time.sleep(0.05)
        before = ticks
        start = time.perf_counter()
        c(big)
        elapsed = time.perf_counter() - start
        during = ticks - before
    finally:
        stop.set()
        t.join()
    # With the GIL held for the whole call the spinner could not run at all during it
    # (only around the switch interval at the call's edges). Released, it spins the whole
    # time: at least ~10^5 increments per second on any machine.
    assert elapsed > 0.01, "batch too small to observe"
    assert during > 1e5 * elapsed, (during, elapsed)


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_parallel_kernel_is_safe_after_fork(tmp_path):
    rows = np.random.default_rng(1).integers(5, VOCAB, size=(256, 512), dtype=np.int64)
    c = collator(num_threads=2)
    want = c(rows)["labels"]  # the parent's 2-thread pool now exists
    c.set_epoch(0)
    out = tmp_path / "child.pkl"
    pid = os.fork()
    if pid == 0:  # child: the parent's pool threads do not exist here
        try:
            got = c(rows)["labels"]
            out.write_bytes(pickle.dumps(got))
        finally:
            os._exit(0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung in the kernel")
    got = pickle.loads(out.read_bytes())
    np.testing.assert_array_equal(got, want)
