"""Mining a ``datasets.Dataset`` of (anchor, positive) texts with a sentence-transformers model:
:func:`mine_dataset`, the embedding cache (:class:`EmbeddingCache`) and the output layouts of
sentence-transformers' ``mine_hard_negatives``.

The texts are handled as sentence-transformers 6.3 handles them: the corpus is the positives
(plus any extra ``corpus`` texts) without duplicates, in first-seen order; duplicate anchors
are one query whose positives are all its rows' positives; an anchor whose text is in the
corpus never gets that row as a negative. Embeddings go through an on-disk cache of ``.npy``
files, memory-mapped when read, keyed by the model, the texts, the prompt and the
normalisation, so a second run (or another output format, other filters) encodes nothing and a
changed model or text never reuses stale embeddings.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from lmobjectives._optional import require
from lmobjectives.mining._mine import mine_hard_negatives
from lmobjectives.mining._result import HardNegatives

__all__ = ["EmbeddingCache", "mine_dataset", "model_fingerprint"]

OutputFormat = Literal["triplet", "n-tuple", "labeled-pair", "labeled-list"]
_FORMATS = ("triplet", "n-tuple", "labeled-pair", "labeled-list")
#: Texts encoded per call, written into the cache file as they come (bounded memory).
ENCODE_CHUNK = 16384


def model_fingerprint(model: Any) -> str:
    """A hex digest that changes when the model's weights, architecture, maximum length,
    prompts or similarity function change: the SHA-256 of its module list and of every
    tensor of its ``state_dict`` (name, dtype, shape, values). Reads all the weights once
    (a second per few GB); give :func:`mine_dataset` a ``model_id`` to skip it."""
    h = hashlib.sha256()
    h.update(repr(model).encode())
    for attr in ("max_seq_length", "prompts", "default_prompt_name", "similarity_fn_name"):
        h.update(repr((attr, getattr(model, attr, None))).encode())
    state = model.state_dict() if hasattr(model, "state_dict") else {}
    for name, t in state.items():
        h.update(repr((name, str(t.dtype), tuple(t.shape))).encode())
        values = t.detach().cpu()
        if not values.is_floating_point():
            h.update(values.contiguous().numpy().tobytes())
        else:  # float32 holds float16 and bfloat16 exactly: the same values, the same bytes
            h.update(values.float().contiguous().numpy().tobytes())
    return h.hexdigest()


class EmbeddingCache:
    """Embeddings on disk: one ``.npy`` per (model, role, prompt, normalisation, texts), read
    back memory-mapped.

    Args:
        directory: where the files live (created when needed).
        model_id: the model's identity in the keys (e.g. :func:`model_fingerprint`).

    Attributes:
        encoded: texts encoded through this cache so far (cache misses).
    """

    def __init__(self, directory: str | os.PathLike[str], model_id: str) -> None:
        self.directory = os.fspath(directory)
        self.model_id = model_id
        self.encoded = 0

    def key(self, role: str, texts: Sequence[str], normalize: bool, prompt: Any) -> str:
        """The file stem: a SHA-256 of everything the embeddings depend on."""
        h = hashlib.sha256()
        h.update(repr((self.model_id, role, bool(normalize), prompt, len(texts))).encode())
        for t in texts:
            b = t.encode("utf-8", "surrogatepass")
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)
        return f"{role}-{h.hexdigest()[:32]}"

    def path(self, role: str, texts: Sequence[str], normalize: bool, prompt: Any) -> str:
        return os.path.join(self.directory, self.key(role, texts, normalize, prompt) + ".npy")

    def get(
        self,
        role: str,
        texts: Sequence[str],
        normalize: bool,
        prompt: Any,
        encode: Any,
    ) -> np.ndarray:
        """The embeddings of ``texts``: the cached file memory-mapped, or ``encode(chunk)`` for
        chunks of :data:`ENCODE_CHUNK` texts written into a new file (renamed into place when
        complete, so an interrupted run leaves no partial entry)."""
        path = self.path(role, texts, normalize, prompt)
        if os.path.exists(path):
            cached = np.load(path, mmap_mode="r")
            if cached.ndim == 2 and cached.shape[0] == len(texts):
                return cached
        os.makedirs(self.directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".npy.tmp")
        os.close(fd)
        try:
            out = None
            for start in range(0, len(texts), ENCODE_CHUNK):
                chunk = np.asarray(encode(list(texts[start : start + ENCODE_CHUNK])))
                if chunk.ndim != 2 or chunk.shape[0] != min(ENCODE_CHUNK, len(texts) - start):
                    raise ValueError(
                        f"model: encoded {len(texts[start : start + ENCODE_CHUNK])} {role} "
                        f"texts into shape {chunk.shape}"
                    )
                if out is None:
                    dtype = np.float16 if chunk.dtype == np.float16 else np.float32
                    out = np.lib.format.open_memmap(
                        tmp, mode="w+", dtype=dtype, shape=(len(texts), chunk.shape[1])
                    )
                out[start : start + chunk.shape[0]] = chunk
                self.encoded += chunk.shape[0]
            if out is None:
                raise ValueError(f"{role}: no texts to encode")
            out.flush()
            del out
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return np.load(path, mmap_mode="r")


# long: sentence-transformers' arguments and ours, a 50-line docstring; one call per step
def mine_dataset(
    model: Any,
    dataset: Any,
    *,
    anchor_column: str | None = None,
    positive_column: str | None = None,
    corpus: Sequence[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    model_id: str | None = None,
    output_format: OutputFormat = "triplet",
    output_scores: bool = False,
    num_negatives: int = 3,
    range_min: int = 0,
    range_max: int | None = None,
    max_score: float | None = None,
    min_score: float | None = None,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    sampling: Literal["top", "random"] = "top",
    include_positives: bool = False,
    normalize_embeddings: bool = True,
    query_prompt: str | None = None,
    query_prompt_name: str | None = None,
    corpus_prompt: str | None = None,
    corpus_prompt_name: str | None = None,
    batch_size: int = 32,
    show_progress_bar: bool = False,
    **options: Any,
) -> Any:
    """Hard negatives for a ``datasets.Dataset`` of (anchor, positive) texts, encoded by a
    sentence-transformers model, returned as sentence-transformers'
    ``util.mine_hard_negatives`` (6.3) returns them: a ``Dataset`` with the same columns, rows
    and order for each ``output_format`` and ``output_scores``.

    Retrieval and selection are :func:`~lmobjectives.mine_hard_negatives` (exact, Rust), with
    the corpus and queries built from the texts as sentence-transformers builds them.

    Args:
        model: a ``SentenceTransformer`` (anything with ``encode_query``/``encode_document``
            or ``encode``, and ``similarity_fn_name`` ``"cosine"`` or ``"dot"``).
        dataset: a ``datasets.Dataset`` with an anchor and a positive text column.
        anchor_column, positive_column: column names (default: the first and second column,
            as sentence-transformers' ``anchor_column_name``/``positive_column_name``).
        corpus: extra candidate texts besides the positives.
        cache_dir: a directory for the embedding cache (:class:`EmbeddingCache`); ``None``
            encodes every time.
        model_id: the model's identity in the cache keys; default :func:`model_fingerprint`
            (hashes the weights). Give a unique name (and change it when the model changes)
            to skip the hashing.
        output_format: ``"triplet"`` (anchor, positive, negative), ``"n-tuple"`` (anchor,
            positive, negative_1..n; rows short of negatives dropped), ``"labeled-pair"``
            (anchor, text, label), ``"labeled-list"`` (anchor, [texts], [labels]).
            ``include_positives`` forces ``"n-tuple"``, as sentence-transformers does.
        output_scores: add a ``scores`` column (``score``/``scores`` instead of the labels
            for the labelled formats).
        num_negatives: negatives per query; this and ``range_min``, ``range_max``,
            ``max_score``, ``min_score``, ``absolute_margin``, ``relative_margin`` and
            ``include_positives`` mean what they mean for
            :func:`~lmobjectives.mine_hard_negatives` (and sentence-transformers).
        sampling: ``"top"`` or ``"random"`` (sentence-transformers' ``sampling_strategy``;
            random draws are keyed by ``seed`` and the query, not Python's ``random``).
        normalize_embeddings: L2-normalise when encoding (sentence-transformers always does).
        query_prompt, query_prompt_name, corpus_prompt, corpus_prompt_name: passed to the
            encoder, as sentence-transformers does.
        batch_size, show_progress_bar: passed to the encoder.
        **options: further keyword arguments of :func:`~lmobjectives.mine_hard_negatives`
            (``seed``, ``ranks``, ``candidate_depth``, ``num_threads``, ``backend``, ...).

    Returns:
        A ``datasets.Dataset``.
    """
    datasets = require("datasets", purpose="mine_dataset")
    if output_format not in _FORMATS:
        raise ValueError(f"output_format: must be one of {list(_FORMATS)}, got {output_format!r}")
    if include_positives:
        output_format = "n-tuple"
    texts = _Texts.from_dataset(dataset, anchor_column, positive_column, corpus)
    similarity = _similarity(model)
    encode = _Encoder(model, normalize_embeddings, batch_size, show_progress_bar)
    cache = None
    if cache_dir is not None:
        cache = EmbeddingCache(cache_dir, model_id or model_fingerprint(model))
    q = encode.get(cache, "query", texts.queries, query_prompt, query_prompt_name)
    c = encode.get(cache, "document", texts.corpus, corpus_prompt, corpus_prompt_name)
    mined = mine_hard_negatives(
        q,
        c,
        texts.positives,
        num_negatives=num_negatives,
        range_min=range_min,
        max_score=max_score,
        min_score=min_score,
        absolute_margin=absolute_margin,
        relative_margin=relative_margin,
        sampling=sampling,
        include_positives=include_positives,
        self_ids=texts.self_ids,
        similarity=similarity,
        **_window_of_rows(
            texts,
            range_min,
            range_max,
            num_negatives,
            absolute_margin is not None or relative_margin is not None or max_score is not None,
            options,
        ),
    )
    columns = _layout(mined, texts, output_format, output_scores)
    return datasets.Dataset.from_dict(columns)


def _window_of_rows(
    texts: _Texts,
    range_min: int,
    range_max: int | None,
    num_negatives: int,
    wide: bool,
    options: Any,
) -> dict[str, Any]:
    """``options`` plus sentence-transformers' window and depth where they count an anchor's
    rows (a positive repeated in two rows counts twice) rather than its distinct positives."""
    out = dict(options)
    distinct = max(len(p) for p in texts.positives)
    if texts.max_rows == distinct or out.get("ranks", "filtered") != "filtered":
        return {"range_max": range_max, **out}
    if range_max is None:
        range_max = range_min + num_negatives * (10 if wide else 1) + texts.max_rows
    out.setdefault("candidate_depth", range_max + texts.max_rows + 1)
    return {"range_max": range_max, **out}


def _similarity(model: Any) -> Literal["cosine", "dot"]:
    name = getattr(model, "similarity_fn_name", None) or "cosine"
    name = getattr(name, "value", name)  # SimilarityFunction enums
    if name not in ("cosine", "dot"):
        raise ValueError(
            f"model: similarity_fn_name {name!r} is not supported (mining ranks by 'cosine' or "
            "'dot')"
        )
    return "dot" if name == "dot" else "cosine"


class _Texts:
    """The queries, corpus and positives built from the rows, as sentence-transformers 6.3."""

    def __init__(
        self,
        queries: list[str],
        corpus: list[str],
        positives: list[list[int]],
        columns: tuple[str, str],
        max_rows: int,
    ) -> None:
        self.queries, self.corpus, self.positives = queries, corpus, positives
        self.anchor_column, self.positive_column = columns
        #: The most rows of one anchor (duplicates included): sentence-transformers' "max
        #: positives", which sets its default window and depth.
        self.max_rows = max_rows
        index = {t: i for i, t in enumerate(corpus)}
        #: Each query's own corpus row (its text in the corpus) or ``-1``. With
        #: include_positives sentence-transformers keeps that row when the query is its own
        #: positive; mine_hard_negatives' selection does the same from the positives.
        self.self_ids = np.array([index.get(q, -1) for q in queries], dtype=np.int64)

    @classmethod
    def from_dataset(
        cls, dataset: Any, anchor: str | None, positive: str | None, extra: Sequence[str] | None
    ) -> _Texts:
        columns = list(dataset.column_names)
        if len(dataset) == 0:
            raise ValueError("dataset: is empty")
        for name, value in (("anchor_column", anchor), ("positive_column", positive)):
            if value is not None and value not in columns:
                raise ValueError(f"{name}: {value!r} is not a column of the dataset ({columns})")
        anchor = anchor or columns[0]
        if positive is None:
            if len(columns) < 2:
                raise ValueError("dataset: needs two columns to take the positives from the second")
            positive = columns[1]
        anchors = [str(t) for t in dataset[anchor]]
        pos_texts = [str(t) for t in dataset[positive]]
        extra_texts = pos_texts if extra is None else [str(t) for t in extra]
        corpus = list(dict.fromkeys(extra_texts + pos_texts))
        corpus_index = {t: i for i, t in enumerate(corpus)}
        queries = list(dict.fromkeys(anchors))
        query_index = {t: i for i, t in enumerate(queries)}
        positives: list[list[int]] = [[] for _ in queries]
        rows = [0] * len(queries)
        for a, p in zip(anchors, pos_texts, strict=True):
            rows[query_index[a]] += 1
            row = positives[query_index[a]]
            if corpus_index[p] not in row:
                row.append(corpus_index[p])
        return cls(queries, corpus, positives, (anchor, positive), max(rows))


class _Encoder:
    def __init__(self, model: Any, normalize: bool, batch_size: int, progress: bool) -> None:
        self.model, self.normalize = model, normalize
        self.batch_size, self.progress = batch_size, progress

    def get(
        self, cache: EmbeddingCache | None, role: str, texts: list[str], prompt: Any, name: Any
    ) -> np.ndarray:
        method = getattr(self.model, f"encode_{role}", None) or self.model.encode

        def encode(chunk: list[str]) -> np.ndarray:
            out = method(
                chunk,
                batch_size=self.batch_size,
                normalize_embeddings=self.normalize,
                convert_to_numpy=True,
                show_progress_bar=self.progress,
                prompt_name=name,
                prompt=prompt,
            )
            return np.asarray(out)

        if cache is None:
            return encode(texts)
        return cache.get(role, texts, self.normalize, (prompt, name), encode)


def _layout(
    mined: HardNegatives, texts: _Texts, output_format: str, output_scores: bool
) -> dict[str, list[Any]]:
    """sentence-transformers 6.3's columns and rows for ``output_format``."""
    a, p, corpus, queries = texts.anchor_column, texts.positive_column, texts.corpus, texts.queries
    if output_format == "triplet":
        t = mined.triplets()
        cols: dict[str, list[Any]] = {
            a: [queries[i] for i in t["query"]],
            p: [corpus[i] for i in t["positive"]],
            "negative": [corpus[i] for i in t["negative"]],
        }
        if output_scores:
            cols["scores"] = np.stack([t["positive_score"], t["negative_score"]], 1).tolist()
        return cols
    if output_format == "n-tuple":
        n = mined.ntuples()
        cols = {a: [queries[i] for i in n["query"]], p: [corpus[i] for i in n["positive"]]}
        for slot in range(n["negatives"].shape[1]):
            cols[f"negative_{slot + 1}"] = [corpus[i] for i in n["negatives"][:, slot]]
        if output_scores:
            cols["scores"] = n["scores"].tolist()
        return cols
    if output_format == "labeled-pair":
        return _labeled_pairs(mined, texts, output_scores)
    return _labeled_lists(mined, texts, output_scores)


def _labeled_pairs(mined: HardNegatives, texts: _Texts, output_scores: bool) -> dict[str, list]:
    """Per query: each positive (label 1), then each negative found (label 0)."""
    a, p, corpus = texts.anchor_column, texts.positive_column, texts.corpus
    anchors: list[str] = []
    docs: list[str] = []
    values: list[Any] = []
    offsets, pos_scores = mined.positive_offsets, mined.positive_scores.tolist()
    for qi, query in enumerate(texts.queries):
        for j in range(int(offsets[qi]), int(offsets[qi + 1])):
            anchors.append(query)
            docs.append(corpus[int(mined.positive_ids[j])])
            values.append(pos_scores[j] if output_scores else 1)
        for neg, score in zip(
            mined.negative_ids[qi], mined.negative_scores[qi].tolist(), strict=True
        ):
            if neg < 0:
                continue
            anchors.append(query)
            docs.append(corpus[int(neg)])
            values.append(score if output_scores else 0)
    return {a: anchors, p: docs, ("score" if output_scores else "label"): values}


def _labeled_lists(mined: HardNegatives, texts: _Texts, output_scores: bool) -> dict[str, list]:
    """Per (query, positive) with at least one negative: [positive, negatives...] and labels
    ``[1, 0, ...]`` (or the scores)."""
    a, p, corpus = texts.anchor_column, texts.positive_column, texts.corpus
    counts = np.diff(mined.positive_offsets)
    owners = np.repeat(np.arange(counts.shape[0]), counts)
    cols: dict[str, list[Any]] = {a: [], p: [], ("scores" if output_scores else "labels"): []}
    values = cols["scores" if output_scores else "labels"]
    pos_scores = mined.positive_scores.tolist()
    for j, qi in enumerate(owners.tolist()):
        keep = mined.negative_ids[qi] >= 0
        if not keep.any():
            continue
        cols[a].append(texts.queries[qi])
        negs = mined.negative_ids[qi][keep].tolist()
        cols[p].append([corpus[int(mined.positive_ids[j])], *(corpus[i] for i in negs)])
        if output_scores:
            values.append([pos_scores[j], *mined.negative_scores[qi][keep].tolist()])
        else:
            values.append([1, *([0] * len(negs))])
    return cols
