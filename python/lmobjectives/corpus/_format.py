"""The on-disk format of a :class:`~lmobjectives.TokenCorpus`: file names, ``.npy`` headers,
the manifest (counts, byte sizes, BLAKE2b-256 checksums), the CSR checks, and writing a
directory atomically (a temporary directory renamed into place).

A corpus directory holds ``ids.npy``, ``sentence_offsets.npy``, ``document_offsets.npy``,
``tokenizer.json`` and ``manifest.json``, plus ``document_labels.json`` when the corpus has
per-document labels; see :meth:`~lmobjectives.TokenCorpus.save` and
:meth:`~lmobjectives.TokenCorpus.load`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmobjectives.errors import CorpusError

#: ``manifest.json`` "format" value.
FORMAT = "lmobjectives.TokenCorpus"
#: ``manifest.json`` "format_version" value this code writes. Version 2 added the per-file sizes
#: and checksums (``"files"``); version-1 corpora (without them) are still read. A corpus with
#: per-document labels is version 2 with one more file (``document_labels.json``) in ``"files"``:
#: a reader that predates labels refuses it (the file list differs) rather than dropping them.
FORMAT_VERSION = 2
#: Every format version :meth:`TokenCorpus.load` reads.
READABLE_FORMAT_VERSIONS = (1, 2)

IDS_FILE = "ids.npy"
SENTENCE_OFFSETS_FILE = "sentence_offsets.npy"
DOCUMENT_OFFSETS_FILE = "document_offsets.npy"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "manifest.json"
#: Per-document labels (optional): a JSON array of strings, one per document, in order.
LABELS_FILE = "document_labels.json"
ARRAY_FILES = (IDS_FILE, SENTENCE_OFFSETS_FILE, DOCUMENT_OFFSETS_FILE)
CHECKED_FILES = (*ARRAY_FILES, TOKENIZER_FILE)
#: The checksum: BLAKE2b with a 32-byte digest over the whole file (``b2sum -l 256 FILE``).
CHECKSUM_KEY = "blake2b_256"
HASH_CHUNK = 1 << 18
#: Offsets are checked for monotonicity this many elements at a time (bounded memory).
CHECK_CHUNK = 1 << 18
#: A version-1.0 ``.npy`` header of a 1-D array of a simple dtype is always 128 bytes long (for
#: any length up to 2**63), so the writer streams the data from byte 128 and writes the header
#: last.
NPY_HEADER_BYTES = 128
#: ``manifest.json`` key of the manifest's own checksum (:func:`manifest_digest`): editing any
#: field (``vocab_size`` included) is caught on every load. Written since lmobjectives 0.1
#: (issue 15); manifests without it still load.
MANIFEST_CHECKSUM_KEY = "manifest_blake2b_256"
#: ``manifest.json`` key of the largest id in ``ids.npy`` (-1 when empty), checked against
#: ``vocab_size`` on every load and against the data on ``verify=True``.
MAX_ID_KEY = "max_id"


def ids_dtype(vocab_size: int) -> np.dtype[Any]:
    """uint16 when every id fits (vocab_size <= 65536), else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def check_csr(
    ids_len: int, sentence_offsets: np.ndarray, document_offsets: np.ndarray
) -> tuple[str, str] | None:
    """Check the CSR invariants; returns ``(which array, what is wrong)`` or ``None`` if valid."""
    for name, offsets, end, unit in (
        ("sentence_offsets", sentence_offsets, ids_len, "len(ids)"),
        ("document_offsets", document_offsets, len(sentence_offsets) - 1, "num_sentences"),
    ):
        if offsets.ndim != 1:
            return name, f"must be 1-D, got shape {offsets.shape}"
        if offsets.dtype != np.int64:
            return name, f"must have dtype int64, got {offsets.dtype}"
        if len(offsets) == 0:
            return name, "must have at least one element (a leading 0)"
        if offsets[0] != 0:
            return name, f"must start at 0, starts at {int(offsets[0])}"
        if int(offsets[-1]) != end:
            return name, f"must end at {unit} = {end}, ends at {int(offsets[-1])}"
        bad = first_decrease(offsets)
        if bad is not None:
            return name, f"must be non-decreasing; decreases after index {bad}"
    return None


def first_decrease(offsets: np.ndarray) -> int | None:
    """Index ``i`` of the first ``offsets[i + 1] < offsets[i]``, or ``None``.

    Scans in chunks so that checking a memory-mapped array of any length needs bounded memory.
    """
    n = len(offsets)
    for start in range(0, n - 1, CHECK_CHUNK):
        stop = min(start + CHECK_CHUNK + 1, n)
        block = np.asarray(offsets[start:stop])
        down = block[1:] < block[:-1]
        if down.any():
            return start + int(np.argmax(down))
    return None


def npy_header(dtype: np.dtype[Any], length: int) -> bytes:
    """The ``.npy`` (version 1.0) header of a C-order 1-D array; always 128 bytes."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf,
        {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (length,)},
    )
    header = buf.getvalue()
    if len(header) != NPY_HEADER_BYTES:  # cannot happen for a 1-D array (length < 2**63)
        raise RuntimeError(f"unexpected .npy header size {len(header)} for {dtype}[{length}]")
    return header


def write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def read_manifest(path: Path) -> dict[str, Any]:
    """Parse and validate ``manifest.json``; a :class:`CorpusError` naming the file on any
    problem (a nesting too deep for the parser included)."""
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise CorpusError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CorpusError(f"{path}: not valid JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(manifest, dict):
        raise CorpusError(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    if manifest.get("format") != FORMAT:
        raise CorpusError(f"{path}: format must be {FORMAT!r}, got {manifest.get('format')!r}")
    version = manifest.get("format_version")
    if type(version) is not int or version not in READABLE_FORMAT_VERSIONS:
        raise CorpusError(
            f"{path}: unsupported format_version {version!r} (this version reads "
            f"{', '.join(map(str, READABLE_FORMAT_VERSIONS))})"
        )
    for key in ("vocab_size", "num_tokens", "num_sentences", "num_documents"):
        value = manifest.get(key)
        if type(value) is not int or value < 0:
            raise CorpusError(f"{path}: {key} must be a non-negative integer, got {value!r}")
    if manifest["vocab_size"] == 0:
        raise CorpusError(f"{path}: vocab_size must be positive")
    if manifest.get("ids_dtype") not in ("uint16", "uint32"):
        raise CorpusError(
            f"{path}: ids_dtype must be 'uint16' or 'uint32', got {manifest.get('ids_dtype')!r}"
        )
    source = manifest.get("source", "")
    if not isinstance(source, str):
        raise CorpusError(f"{path}: source must be a string, got {type(source).__name__}")
    manifest["source"] = source
    max_id = manifest.get(MAX_ID_KEY)
    if MAX_ID_KEY in manifest and (
        type(max_id) is not int or not -1 <= max_id < manifest["vocab_size"]
    ):
        raise CorpusError(
            f"{path}: {MAX_ID_KEY} must be an integer in [-1, vocab_size = "
            f"{manifest['vocab_size']}), got {max_id!r}"
        )
    manifest["files"] = read_manifest_files(path, manifest.get("files")) if version >= 2 else None
    return manifest


def manifest_digest(manifest: dict[str, Any]) -> str:
    """BLAKE2b-256 of the manifest's canonical JSON (sorted keys, no whitespace) without its
    own checksum and without ``"derived"`` (caches that carry their own checksums)."""
    covered = {k: v for k, v in manifest.items() if k not in (MANIFEST_CHECKSUM_KEY, DERIVED_KEY)}
    text = json.dumps(covered, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.blake2b(text.encode("ascii"), digest_size=32).hexdigest()


def check_manifest_checksum(path: Path, manifest: dict[str, Any]) -> None:
    """The manifest's own checksum, when it has one (corpora written before it was added, and
    format-1 corpora, have none and load as before; their ids are then re-checked against
    ``vocab_size`` on ``verify=True``). Checked after the manifest's fields and the files, so
    that a specific problem is reported as itself; this catches any edit that leaves the
    manifest self-consistent (``vocab_size`` lowered, a checksum replaced)."""
    if MANIFEST_CHECKSUM_KEY not in manifest or manifest.get("format_version", 0) < 2:
        return
    if manifest[MANIFEST_CHECKSUM_KEY] != manifest_digest(manifest):
        raise CorpusError(
            f"{path}: checksum mismatch ({MANIFEST_CHECKSUM_KEY}); the manifest was edited "
            "or is corrupted"
        )


def read_manifest_files(path: Path, files: Any) -> dict[str, dict[str, Any]]:
    """Validate the manifest's ``"files"``: each checked file's ``bytes`` and checksum."""
    if not isinstance(files, dict):
        raise CorpusError(f"{path}: files must be an object, got {type(files).__name__}")
    if sorted(files) not in (sorted(CHECKED_FILES), sorted((*CHECKED_FILES, LABELS_FILE))):
        raise CorpusError(
            f"{path}: files must list exactly {', '.join(CHECKED_FILES)} (and "
            f"{LABELS_FILE} for a labelled corpus); got "
            f"{', '.join(sorted(map(str, files))) or 'none'}"
        )
    for name in files:
        entry = files[name]
        size = entry.get("bytes") if isinstance(entry, dict) else None
        digest = entry.get(CHECKSUM_KEY) if isinstance(entry, dict) else None
        if type(size) is not int or size < 0:
            raise CorpusError(f"{path}: files.{name}.bytes must be a non-negative integer")
        if (
            not isinstance(digest, str)
            or len(digest) != 64
            or digest.strip("0123456789abcdef") != ""
        ):
            raise CorpusError(
                f"{path}: files.{name}.{CHECKSUM_KEY} must be 64 lowercase hex digits"
            )
    return files


def max_id_of(ids: np.ndarray) -> int:
    """The largest id (-1 for no ids), scanned in bounded-memory chunks."""
    top = -1
    for start in range(0, len(ids), COUNT_CHUNK):
        top = max(top, int(np.asarray(ids[start : start + COUNT_CHUNK]).max()))
    return top


def check_ids_in_vocab(path: Path, ids: np.ndarray, manifest: dict[str, Any], verify: bool) -> None:
    """Every id is below ``vocab_size``: from the manifest's recorded maximum (checked with the
    manifest, always), and with ``verify`` by scanning the ids themselves (which also catches a
    corpus whose manifest predates the recorded maximum)."""
    if not verify:
        return
    top = max_id_of(ids)
    vocab = manifest["vocab_size"]
    if top >= vocab:
        raise CorpusError(f"{path / IDS_FILE}: holds id {top}, outside [0, vocab_size = {vocab})")
    recorded = manifest.get(MAX_ID_KEY)
    if recorded is not None and recorded != top:
        raise CorpusError(
            f"{path / IDS_FILE}: the largest id is {top} but the manifest records {recorded}"
        )


def file_digest(path: Path) -> tuple[int, str]:
    """``(size in bytes, BLAKE2b-256 hex digest)`` of a file, read in 256 KiB chunks."""
    h = hashlib.blake2b(digest_size=32)
    size = 0
    buf = bytearray(HASH_CHUNK)
    view = memoryview(buf)
    with open(path, "rb") as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            size += n
    return size, h.hexdigest()


def write_manifest(
    directory: Path,
    *,
    vocab_size: int,
    num_tokens: int,
    num_sentences: int,
    num_documents: int,
    ids_dtype: np.dtype[Any],
    source: str,
    labelled: bool = False,
) -> None:
    """Write ``manifest.json`` for the (complete) files in ``directory``, with their checksums
    (``labelled``: ``document_labels.json`` is one of them)."""
    files = {}
    for name in (*CHECKED_FILES, LABELS_FILE) if labelled else CHECKED_FILES:
        size, digest = file_digest(directory / name)
        files[name] = {"bytes": size, CHECKSUM_KEY: digest}
    ids = np.load(directory / IDS_FILE, mmap_mode="r", allow_pickle=False)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vocab_size": vocab_size,
        "num_tokens": num_tokens,
        "num_sentences": num_sentences,
        "num_documents": num_documents,
        "ids_dtype": str(ids_dtype),
        "source": source,
        "files": files,
        MAX_ID_KEY: max_id_of(ids),
    }
    del ids
    manifest[MANIFEST_CHECKSUM_KEY] = manifest_digest(manifest)
    write_text(directory / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")


def make_temp_dir(path: Path) -> Path:
    """A fresh hidden directory next to ``path`` (same filesystem, so it can be renamed in)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()  # (unlike tempfile.mkdtemp, honours the umask: caches may be shared)
    return tmp


def publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename the finished directory ``tmp`` to ``path`` (replacing it if ``overwrite``)."""
    if overwrite and path.exists():
        old = path.parent / f".{path.name}.old-{uuid.uuid4().hex}"
        os.rename(path, old)
        os.rename(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        try:
            os.rename(tmp, path)
        except OSError as exc:  # someone else created it meanwhile
            raise FileExistsError(f"path: {path} already exists") from exc


def read_npy_header(path: Path) -> tuple[tuple[int, ...], bool, np.dtype[Any], int]:
    """``(shape, fortran_order, dtype, data offset)`` of a ``.npy`` file, parsed before any
    data is read; a :class:`CorpusError` naming the file for any damage (numpy's header
    parser can raise almost anything on a flipped byte: ``SyntaxError``,
    ``tokenize.TokenError``, ``MemoryError``...)."""
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
            if magic != b"\x93NUMPY":
                raise CorpusError(f"{path}: not a readable .npy array (bad magic bytes {magic!r})")
            f.seek(0)
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise CorpusError(f"{path}: unsupported .npy version {version}")
            offset = f.tell()
    except CorpusError:
        raise
    except Exception as exc:
        raise CorpusError(
            f"{path}: not a readable .npy header ({type(exc).__name__}: {exc})"
        ) from None
    return shape, fortran, dtype, offset


def load_array(path: Path, dtype: np.dtype[Any], length: int, mmap: bool) -> np.ndarray:
    """``np.load`` one 1-D array, checking its header (dtype, shape, and that the file holds
    the data the header claims) before reading any data; a :class:`CorpusError` naming the
    file otherwise."""
    if not path.is_file():
        raise CorpusError(f"{path}: missing")
    shape, fortran, found, offset = read_npy_header(path)
    if found.hasobject:
        raise CorpusError(f"{path}: not a readable .npy array (object dtype {found})")
    if found != dtype:
        raise CorpusError(f"{path}: dtype must be {dtype} (native byte order), got {found}")
    if len(shape) != 1 or fortran:
        raise CorpusError(f"{path}: must be a 1-D C-order array, got shape {shape}")
    if shape[0] != length:
        raise CorpusError(f"{path}: length {shape[0]} does not match the manifest ({length})")
    size = path.stat().st_size
    if size != offset + length * dtype.itemsize:
        raise CorpusError(
            f"{path}: not a readable .npy array: its size, {size} bytes, does not match its "
            f"header ({offset} + {length} × {dtype.itemsize} bytes)"
        )
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as exc:
        raise CorpusError(
            f"{path}: not a readable .npy array ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(arr, np.ndarray):
        raise CorpusError(f"{path}: expected a single array, got {type(arr).__name__}")
    if arr.dtype != dtype:
        raise CorpusError(f"{path}: dtype must be {dtype} (native byte order), got {arr.dtype}")
    if arr.ndim != 1:
        raise CorpusError(f"{path}: must be 1-D, got shape {arr.shape}")
    if len(arr) != length:
        raise CorpusError(f"{path}: length {len(arr)} does not match the manifest ({length})")
    return arr


def read_arrays(
    path: Path, manifest: dict[str, Any], mmap: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ids, sentence_offsets, document_offsets)`` of the corpus directory ``path``, checked
    against its manifest (dtypes, lengths) and the CSR invariants; ValueError naming the file."""
    vocab_size = manifest["vocab_size"]
    expected_dtype = ids_dtype(vocab_size)
    if manifest["ids_dtype"] != str(expected_dtype):
        raise CorpusError(
            f"{path / MANIFEST_FILE}: ids_dtype {manifest['ids_dtype']!r} does not fit "
            f"vocab_size {vocab_size} (expected {str(expected_dtype)!r})"
        )
    ids = load_array(path / IDS_FILE, expected_dtype, manifest["num_tokens"], mmap)
    sentence_offsets = load_array(
        path / SENTENCE_OFFSETS_FILE, np.dtype(np.int64), manifest["num_sentences"] + 1, mmap
    )
    document_offsets = load_array(
        path / DOCUMENT_OFFSETS_FILE, np.dtype(np.int64), manifest["num_documents"] + 1, mmap
    )
    problem = check_csr(len(ids), sentence_offsets, document_offsets)
    if problem is not None:
        array, what = problem
        file = {"sentence_offsets": SENTENCE_OFFSETS_FILE}.get(array, DOCUMENT_OFFSETS_FILE)
        raise CorpusError(f"{path / file}: {what}")
    return ids, sentence_offsets, document_offsets


def check_files(path: Path, manifest: dict[str, Any], verify: bool) -> None:
    """The tokenizer file exists; with format version >= 2, every file has the manifest's byte
    size and (with ``verify``) its checksum. ValueError naming the file otherwise."""
    tokenizer_path = path / TOKENIZER_FILE
    if not tokenizer_path.is_file():
        raise CorpusError(f"{tokenizer_path}: missing")
    files = manifest.get("files")
    if files is None:  # format version 1
        return
    for name in files:
        if not (path / name).is_file():
            raise CorpusError(f"{path / name}: missing")
        size = (path / name).stat().st_size
        if size != files[name]["bytes"]:
            raise CorpusError(
                f"{path / name}: size {size} bytes does not match the manifest "
                f"({files[name]['bytes']} bytes); the file is truncated, extended or "
                "replaced"
            )
    if verify:
        for name in files:
            digest = file_digest(path / name)[1]
            if digest != files[name][CHECKSUM_KEY]:
                raise CorpusError(
                    f"{path / name}: checksum mismatch (BLAKE2b-256 {digest}, manifest "
                    f"says {files[name][CHECKSUM_KEY]}); the file is corrupted or was "
                    "modified"
                )


def write_labels(path: Path, labels: Sequence[str]) -> None:
    """``document_labels.json``: the labels as one JSON array (UTF-8, no whitespace)."""
    write_text(path, json.dumps(list(labels), ensure_ascii=False, separators=(",", ":")) + "\n")


def read_labels(path: Path, manifest: dict[str, Any]) -> tuple[str, ...] | None:
    """The corpus's per-document labels when its manifest lists ``document_labels.json``, else
    ``None``; ValueError naming the file when it is not one string per document."""
    files = manifest.get("files")
    if files is None or LABELS_FILE not in files:
        return None
    file = path / LABELS_FILE
    try:
        with open(file, encoding="utf-8") as f:
            labels = json.load(f)
    except FileNotFoundError:
        raise CorpusError(f"{file}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorpusError(f"{file}: not valid JSON ({exc})") from exc
    problem = check_labels(labels, manifest["num_documents"])
    if problem is not None:
        raise CorpusError(f"{file}: {problem}")
    return tuple(labels)


def check_labels(labels: Any, num_documents: int) -> str | None:
    """What is wrong with ``labels`` as per-document labels (``None``: nothing)."""
    if isinstance(labels, str | bytes) or not isinstance(labels, Sequence):
        return f"expected a sequence of str (one per document), got {type(labels).__name__}"
    if len(labels) != num_documents:
        return f"{len(labels)} labels for {num_documents} documents"
    for i, label in enumerate(labels):
        if not isinstance(label, str):
            return f"label {i}: expected str, got {type(label).__name__}"
    return None


#: Token counts (derived, optional): ``int64`` counts of every id, cached by
#: :meth:`~lmobjectives.TokenCorpus.token_counts` next to the files they are counted from.
TOKEN_COUNTS_FILE = "token_counts.npy"
#: ``manifest.json`` key of derived files: each entry has the file's ``bytes`` and checksum and
#: the checksum of the ``ids.npy`` it was derived from (``"ids_blake2b_256"``). Readers that
#: predate it ignore it; a stale or damaged entry is ignored (the data is recomputed).
DERIVED_KEY = "derived"
#: Token ids per ``bincount`` call when counting (bounded memory for memory-mapped corpora).
COUNT_CHUNK = 1 << 24


def count_tokens(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """``int64`` counts of every id in ``[0, vocab_size)``: ``np.bincount`` over chunks of
    :data:`COUNT_CHUNK` ids, so a memory-mapped corpus is read once, in bounded memory."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for start in range(0, len(ids), COUNT_CHUNK):
        chunk = np.asarray(ids[start : start + COUNT_CHUNK])
        counts += np.bincount(chunk, minlength=vocab_size)[:vocab_size]
    return counts


def _ids_checksum(path: Path, manifest: dict[str, Any]) -> str:
    """The ``ids.npy`` checksum the manifest records (format 2), else computed (format 1)."""
    files = manifest.get("files")
    if isinstance(files, dict) and isinstance(files.get(IDS_FILE), dict):
        return str(files[IDS_FILE].get(CHECKSUM_KEY))
    return file_digest(path / IDS_FILE)[1]


def _raw_manifest(path: Path) -> dict[str, Any] | None:
    try:
        with open(path / MANIFEST_FILE, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return manifest if isinstance(manifest, dict) else None


def read_token_counts(path: Path, vocab_size: int) -> np.ndarray | None:
    """The token counts cached in the corpus directory ``path``, or ``None`` when there are none
    or they are stale (counted from other ids) or damaged (size, checksum, dtype, length)."""
    manifest = _raw_manifest(path)
    derived = manifest.get(DERIVED_KEY) if manifest is not None else None
    entry = derived.get(TOKEN_COUNTS_FILE) if isinstance(derived, dict) else None
    if manifest is None or not isinstance(entry, dict):
        return None
    file = path / TOKEN_COUNTS_FILE
    try:
        if entry.get("ids_" + CHECKSUM_KEY) != _ids_checksum(path, manifest):
            return None
        if file_digest(file) != (entry.get("bytes"), entry.get(CHECKSUM_KEY)):
            return None
        counts = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if counts.dtype != np.int64 or counts.shape != (vocab_size,) or (counts < 0).any():
        return None
    return counts


def write_token_counts(path: Path, counts: np.ndarray) -> bool:
    """Caches ``counts`` in the corpus directory ``path``: ``token_counts.npy`` and its entry
    under the manifest's ``"derived"``, each written to a temporary file and renamed into place.
    Returns ``False`` (and leaves the directory as it was) when it cannot be written."""
    manifest = _raw_manifest(path)
    if manifest is None:
        return False
    tag = uuid.uuid4().hex
    tmp_counts = path / f".{TOKEN_COUNTS_FILE}.tmp-{tag}"
    tmp_manifest = path / f".{MANIFEST_FILE}.tmp-{tag}"
    try:
        with open(tmp_counts, "wb") as f:
            np.save(f, np.ascontiguousarray(counts, dtype=np.int64), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        size, digest = file_digest(tmp_counts)
        derived = manifest.get(DERIVED_KEY)
        manifest[DERIVED_KEY] = {
            **(derived if isinstance(derived, dict) else {}),
            TOKEN_COUNTS_FILE: {
                "bytes": size,
                CHECKSUM_KEY: digest,
                "ids_" + CHECKSUM_KEY: _ids_checksum(path, manifest),
            },
        }
        write_text(tmp_manifest, json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp_counts, path / TOKEN_COUNTS_FILE)
        os.replace(tmp_manifest, path / MANIFEST_FILE)
    except OSError:
        return False
    finally:
        for tmp in (tmp_counts, tmp_manifest):
            if tmp.exists():
                tmp.unlink(missing_ok=True)
    return True
