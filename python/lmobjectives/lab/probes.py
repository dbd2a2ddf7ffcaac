"""Downstream probes of a frozen (or briefly fine-tuned) encoder, from a labelled corpus.

Nobody annotates anything: the labels are the corpus's per-document labels
(:attr:`lmobjectives.TokenCorpus.document_labels`; for the embedded corpus the standard-library
package or module a document comes from, ``topics`` for a help topic) and the structure of the
text itself. :func:`probe_split` keeps aside, for every label with enough documents, a fixed
set of documents — half to train the probes, half to test them, **split by document** — and
the pretraining runs never see any of them. On those documents:

``topic``
    a linear probe (multinomial logistic regression, L2, class-balanced) on the frozen
    encoder's mean-pooled features of text chunks: which package is this chunk from? Scored by
    balanced accuracy (the mean of the per-class recalls; chance is 1 / classes).
``finetune``
    the same task after a short fine-tune of the whole encoder with a linear head.
``nsp``, ``sop``
    pair probes: a pair of consecutive sentences encoded together (``[CLS] A [SEP] B [SEP]``)
    against A with a sentence of another document (next-sentence), or against the swapped
    pair (sentence order); logistic regression on ``[u, v, u·v, |u−v|]`` of the two segments'
    mean-pooled features. Accuracy (the labels are balanced).
``retrieval``
    each chunk of a test document retrieves the chunk that follows it among all following
    chunks, by cosine similarity of mean-pooled features (recall@1).

The controls use the same code: a random-init encoder (:class:`Features` of an untrained
model) and a bag of words (:class:`BagOfWords`: TF-IDF over the probe-train vocabulary, the
same logistic regression; cosine similarity for retrieval).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

import lmobjectives.torch  # noqa: F401  (without torch: the one MissingDependencyError of lmobjectives.torch)
from lmobjectives._optional import require

if TYPE_CHECKING:
    import torch
    import torch.nn.functional as F
    from torch import nn
else:  # through require, as every optional import
    torch = require("torch", "lmobjectives.lab.probes")
    F = require("torch.nn.functional")
    nn = torch.nn

__all__ = [
    "PROBES",
    "BagOfWords",
    "Features",
    "ProbeData",
    "ProbeSplit",
    "evaluate_probes",
    "logistic_regression",
    "probe_data",
    "probe_split",
]

#: Every probe, in table order.
PROBES = ("topic", "finetune", "nsp", "sop", "retrieval")


# -- the documents ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ProbeSplit:
    """Which documents probe and which pretrain: ``classes`` (the labels probed, sorted),
    ``train`` / ``test`` (document indices of the probe's two halves) and ``pretrain`` (every
    other document, in corpus order)."""

    classes: tuple[str, ...]
    train: np.ndarray
    test: np.ndarray
    pretrain: np.ndarray


def probe_split(
    labels: tuple[str, ...] | list[str], per_class: int = 16, min_documents: int = 16, seed: int = 0
) -> ProbeSplit:
    """Up to ``per_class`` documents of every label with at least ``min_documents`` documents,
    drawn from ``seed``, alternately to the probe's train and test halves; the rest pretrains."""
    labels = list(labels)
    names, counts = np.unique(labels, return_counts=True)
    classes = tuple(str(n) for n, c in zip(names, counts, strict=True) if c >= min_documents)
    if len(classes) < 2:
        raise ValueError(
            f"labels: probing needs two labels with >= {min_documents} documents each, got "
            f"{len(classes)}"
        )
    rng = np.random.default_rng([seed, 0x50524F4245])
    by_label = np.asarray(labels)
    train, test = [], []
    for name in classes:
        docs = np.flatnonzero(by_label == name)
        chosen = np.sort(rng.permutation(docs)[:per_class])
        train.extend(chosen[0::2].tolist())
        test.extend(chosen[1::2].tolist())
    held = np.zeros(len(labels), dtype=bool)
    held[train + test] = True
    return ProbeSplit(
        classes,
        np.asarray(sorted(train), dtype=np.int64),
        np.asarray(sorted(test), dtype=np.int64),
        np.flatnonzero(~held),
    )


@dataclasses.dataclass
class Rows:
    """Encoder inputs: ``ids`` / ``types`` lists of token-id lists, ``labels`` per row, and for
    pair rows the length of segment A (``[CLS] A [SEP]``)."""

    ids: list[list[int]]
    labels: np.ndarray
    types: list[list[int]] | None = None
    docs: np.ndarray | None = None


@dataclasses.dataclass
class ProbeData:
    """The probes' inputs for one split: chunks (topic), pairs (nsp, sop) and chunk pairs
    (retrieval), each for the probe's train and test halves where it trains."""

    classes: tuple[str, ...]
    topic: tuple[Rows, Rows]
    nsp: tuple[Rows, Rows]
    sop: tuple[Rows, Rows]
    retrieval: tuple[Rows, Rows]  # queries, keys (row i of each is a pair)
    pad_id: int


def _specials(tokenizer: Any) -> tuple[int, int, int]:
    ids = [tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]")]
    if None in ids:
        raise ValueError("corpus: the tokenizer needs [CLS], [SEP] and [PAD] tokens to probe")
    return ids[0], ids[1], ids[2]


def _chunks(tokens: np.ndarray, length: int, limit: int) -> list[list[int]]:
    """Up to ``limit`` consecutive non-overlapping windows of ``length`` tokens (the last one
    may be shorter, but not under a quarter of ``length`` unless it is the only one)."""
    out: list[list[int]] = []
    for start in range(0, len(tokens), length):
        piece = tokens[start : start + length].tolist()
        if out and len(piece) < length // 4:
            break
        out.append(piece)
        if len(out) == limit:
            break
    return out


def _topic_rows(
    corpus: Any, docs: np.ndarray, classes: tuple[str, ...], seq_length: int, limit: int
) -> Rows:
    cls, sep, _ = _specials(corpus.tokenizer)
    index = {name: i for i, name in enumerate(classes)}
    ids, labels, owners = [], [], []
    for d in docs.tolist():
        for piece in _chunks(np.asarray(corpus.document(d)), seq_length - 2, limit):
            ids.append([cls, *piece, sep])
            labels.append(index[corpus.document_labels[d]])
            owners.append(d)
    return Rows(ids, np.asarray(labels), docs=np.asarray(owners))


def _pair_rows(
    corpus: Any, docs: np.ndarray, task: str, seq_length: int, limit: int, seed: int
) -> Rows:
    """Consecutive sentence pairs of ``docs`` (up to ``limit`` per document); every second one
    is the negative: B from another document (``nsp``) or A and B swapped (``sop``)."""
    cls, sep, _ = _specials(corpus.tokenizer)
    half = (seq_length - 3) // 2
    rng = np.random.default_rng([seed, 0x50414952, len(docs)])
    sentences = [corpus.document_sentences(d) for d in docs.tolist()]
    ids: list[list[int]] = []
    types: list[list[int]] = []
    labels: list[int] = []
    for i, sents in enumerate(sentences):
        for j in range(min(limit, len(sents) - 1)):
            a, b = sents[j][:half].tolist(), sents[j + 1][:half].tolist()
            label = len(labels) % 2
            if label and task == "sop":
                a, b = b, a
            elif label:  # a sentence of another document
                other = sentences[(i + 1 + int(rng.integers(len(docs) - 1))) % len(docs)]
                b = other[int(rng.integers(len(other)))][:half].tolist()
            ids.append([cls, *a, sep, *b, sep])
            types.append([0] * (len(a) + 2) + [1] * (len(b) + 1))
            labels.append(label)
    return Rows(ids, np.asarray(labels), types)


def _retrieval_rows(
    corpus: Any, docs: np.ndarray, seq_length: int, limit: int
) -> tuple[Rows, Rows]:
    """Chunk ``i`` (query) and chunk ``i + 1`` (its key) of the test documents."""
    cls, sep, _ = _specials(corpus.tokenizer)
    queries, keys = [], []
    for d in docs.tolist():
        pieces = _chunks(np.asarray(corpus.document(d)), seq_length - 2, limit + 1)
        for a, b in itertools.pairwise(pieces):
            queries.append([cls, *a, sep])
            keys.append([cls, *b, sep])
    n = np.arange(len(queries))
    return Rows(queries, n), Rows(keys, n)


def probe_data(
    corpus: Any,
    split: ProbeSplit,
    seq_length: int,
    chunks_per_document: int = 4,
    pairs_per_document: int = 8,
    seed: int = 0,
) -> ProbeData:
    """The probes' inputs from ``split``'s documents of ``corpus`` (rows of at most
    ``seq_length`` tokens, special tokens included)."""
    if corpus.document_labels is None:
        raise ValueError("corpus: probing needs per-document labels (document_labels)")
    halves = (split.train, split.test)
    topic = tuple(
        _topic_rows(corpus, d, split.classes, seq_length, chunks_per_document) for d in halves
    )
    pairs = {
        task: tuple(
            _pair_rows(corpus, d, task, seq_length, pairs_per_document, seed + k)
            for k, d in enumerate(halves)
        )
        for task in ("nsp", "sop")
    }
    retrieval = _retrieval_rows(corpus, split.test, seq_length, chunks_per_document)
    return ProbeData(
        split.classes,
        topic,  # type: ignore[arg-type]
        pairs["nsp"],  # type: ignore[arg-type]
        pairs["sop"],  # type: ignore[arg-type]
        retrieval,
        _specials(corpus.tokenizer)[2],
    )


# -- encoders --------------------------------------------------------------------------------------


class Features(nn.Module):
    """An encoder's hidden states ``[batch, seq, hidden]`` from ``(input_ids, attention_mask,
    token_type_ids)``, whatever model holds it: ``encode(module, ids, mask, types)``."""

    def __init__(
        self,
        module: nn.Module,
        encode: Callable[
            [nn.Module, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor
        ],
    ) -> None:
        super().__init__()
        self.module = module
        self.encode = encode

    def forward(
        self, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.encode(self.module, ids, mask, types)


def _pad(rows: list[list[int]], pad: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.as_tensor(r)
        mask[i, : len(r)] = 1
    return ids.to(device), mask.to(device)


def _pad_types(rows: list[list[int]], device: torch.device) -> torch.Tensor:
    width = max(map(len, rows))
    types = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        types[i, : len(r)] = torch.as_tensor(r)
    return types.to(device)


def _pooled(hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    w = weight.unsqueeze(-1).to(hidden.dtype)
    return (hidden * w).sum(1) / w.sum(1).clamp_min(1.0)


@torch.no_grad()
def embed(
    features: Features, rows: Rows, pad: int, device: torch.device, batch: int = 64
) -> np.ndarray:
    """Mean-pooled features of ``rows`` (``[n, hidden]``); for pair rows (with ``types``) the
    pair features ``[u, v, u·v, |u−v|]`` of the two segments (``[n, 4·hidden]``)."""
    was = features.training
    features.eval()
    out = []
    for start in range(0, len(rows.ids), batch):
        ids, mask = _pad(rows.ids[start : start + batch], pad, device)
        if rows.types is None:
            out.append(_pooled(features(ids, mask), mask).float().cpu())
            continue
        types = _pad_types(rows.types[start : start + batch], device)
        hidden = features(ids, mask, types)
        u = _pooled(hidden, mask * (types == 0))
        v = _pooled(hidden, mask * (types == 1))
        out.append(torch.cat([u, v, u * v, (u - v).abs()], -1).float().cpu())
    features.train(was)
    return torch.cat(out).numpy().astype(np.float64)


# -- bag of words ----------------------------------------------------------------------------------


class BagOfWords:
    """TF-IDF (``log(1 + tf) · idf``, rows L2-normalised) over the ``size`` tokens found in the
    most fitting rows (``fit``), special tokens ``skip``\\ ped; pair rows become
    ``[a, b, a·b, |a−b|]`` of the two segments' vectors."""

    def __init__(self, fit: list[list[int]], skip: tuple[int, ...], size: int = 4096) -> None:
        doc_freq: dict[int, int] = {}
        for row in fit:
            for t in set(row) - set(skip):
                doc_freq[t] = doc_freq.get(t, 0) + 1
        vocab = sorted(doc_freq, key=lambda t: (-doc_freq[t], t))[:size]
        self.index = {t: i for i, t in enumerate(vocab)}
        df = np.array([doc_freq[t] for t in vocab], dtype=np.float64)
        self.idf = np.log((1 + len(fit)) / (1 + df)) + 1.0

    def vectors(self, rows: list[list[int]]) -> np.ndarray:
        out = np.zeros((len(rows), len(self.index)))
        for i, row in enumerate(rows):
            for t in row:
                j = self.index.get(t)
                if j is not None:
                    out[i, j] += 1.0
        out = np.log1p(out) * self.idf
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def features(self, rows: Rows) -> np.ndarray:
        if rows.types is None:
            return self.vectors(rows.ids)
        a = [
            [t for t, k in zip(r, ty, strict=True) if k == 0]
            for r, ty in zip(rows.ids, rows.types, strict=True)
        ]
        b = [
            [t for t, k in zip(r, ty, strict=True) if k == 1]
            for r, ty in zip(rows.ids, rows.types, strict=True)
        ]
        u, v = self.vectors(a), self.vectors(b)
        return np.concatenate([u, v, u * v, np.abs(u - v)], axis=1)


# -- classifiers -----------------------------------------------------------------------------------


def logistic_regression(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    classes: int,
    l2: float = 1e-3,
    iterations: int = 200,
) -> np.ndarray:
    """Predicted classes of ``test_x`` by multinomial logistic regression fitted on the
    standardised ``train_x`` (class-balanced cross-entropy + ``l2``·‖W‖², L-BFGS from zero:
    deterministic)."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    x = torch.as_tensor((train_x - mean) / std)
    y = torch.as_tensor(train_y, dtype=torch.long)
    counts = torch.bincount(y, minlength=classes).clamp_min(1).double()
    weight = len(y) / (classes * counts)
    w = torch.zeros((x.shape[1], classes), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b], lr=1.0, max_iter=iterations, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y, weight=weight) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        logits = torch.as_tensor((test_x - mean) / std) @ w + b
    return logits.argmax(-1).numpy()


def balanced_accuracy(pred: np.ndarray, truth: np.ndarray, classes: int) -> float:
    """The mean over the classes present of each class's recall."""
    recalls = [float((pred[truth == c] == c).mean()) for c in range(classes) if (truth == c).any()]
    return float(np.mean(recalls))


def recall_at_1(queries: np.ndarray, keys: np.ndarray) -> float:
    """Share of queries whose most cosine-similar key is their own (row ``i`` ↔ row ``i``)."""
    q = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    k = keys / np.maximum(np.linalg.norm(keys, axis=1, keepdims=True), 1e-12)
    return float((np.argmax(q @ k.T, axis=1) == np.arange(len(q))).mean())


# long: one fine-tuning loop — seeded head, shuffled batches, class-balanced loss, evaluation
def finetune(
    features: Features,
    data: ProbeData,
    device: torch.device,
    seed: int,
    epochs: int = 3,
    batch: int = 16,
    learning_rate: float = 1e-3,
) -> float:
    """Balanced accuracy on the topic probe after fine-tuning a copy of the encoder with a
    linear head on mean-pooled features for ``epochs`` (AdamW, class-balanced loss)."""
    train, test = data.topic
    classes = len(data.classes)
    torch.manual_seed(seed)
    encoder = copy.deepcopy(features).to(device)
    head = nn.Linear(_width(encoder, train, data.pad_id, device), classes).to(device)
    params = [p for p in [*encoder.parameters(), *head.parameters()] if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.01)
    y = torch.as_tensor(train.labels, dtype=torch.long)
    counts = torch.bincount(y, minlength=classes).clamp_min(1).float()
    weight = (len(y) / (classes * counts)).to(device)
    rng = np.random.default_rng([seed, 0x46494E45])
    encoder.train()
    for _ in range(epochs):
        order = rng.permutation(len(train.ids))
        for start in range(0, len(order), batch):
            idx = order[start : start + batch].tolist()
            ids, mask = _pad([train.ids[i] for i in idx], data.pad_id, device)
            logits = head(_pooled(encoder(ids, mask), mask))
            loss = F.cross_entropy(logits, y[idx].to(device), weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
    encoder.eval()
    preds = []
    with torch.no_grad():
        for start in range(0, len(test.ids), 64):
            ids, mask = _pad(test.ids[start : start + 64], data.pad_id, device)
            preds.append(head(_pooled(encoder(ids, mask), mask)).argmax(-1).cpu())
    return balanced_accuracy(torch.cat(preds).numpy(), test.labels, classes)


def _width(encoder: Features, rows: Rows, pad: int, device: torch.device) -> int:
    with torch.no_grad():
        ids, mask = _pad(rows.ids[:1], pad, device)
        return int(encoder(ids, mask).shape[-1])


# -- all of them -----------------------------------------------------------------------------------


def evaluate_probes(
    data: ProbeData,
    features: Features | BagOfWords,
    device: torch.device,
    seed: int = 0,
    probes: tuple[str, ...] = PROBES,
    finetune_epochs: int = 3,
) -> dict[str, float]:
    """Every probe in ``probes`` on ``features`` (an encoder, or the bag-of-words control,
    which has no fine-tune)."""
    if isinstance(features, BagOfWords):
        encode: Callable[[Rows], np.ndarray] = features.features
    else:
        encode = lambda rows: embed(features, rows, data.pad_id, device)  # noqa: E731
    out: dict[str, float] = {}
    classes = len(data.classes)
    for name in probes:
        if name == "topic":
            train, test = data.topic
            pred = logistic_regression(encode(train), train.labels, encode(test), classes)
            out[name] = balanced_accuracy(pred, test.labels, classes)
        elif name in ("nsp", "sop"):
            train, test = getattr(data, name)
            pred = logistic_regression(encode(train), train.labels, encode(test), 2)
            out[name] = float((pred == test.labels).mean())
        elif name == "retrieval":
            queries, keys = data.retrieval
            out[name] = recall_at_1(encode(queries), encode(keys))
        elif name == "finetune" and isinstance(features, Features):
            out[name] = finetune(features, data, device, seed, epochs=finetune_epochs)
    return out
