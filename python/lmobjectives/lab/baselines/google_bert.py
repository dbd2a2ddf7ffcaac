"""Google BERT's NSP instance builder (and its masking) in pure Python, as
``create_pretraining_data.py`` runs it: :func:`google_pair_instances`."""

from __future__ import annotations

from typing import Any

__all__ = ["google_pair_instances"]


# long: a faithful port of create_instances_from_document; splitting it would hide the mapping
def google_pair_instances(
    documents: list[list[list[int]]],
    *,
    rng: Any,
    max_seq_length: int = 128,
    short_seq_prob: float = 0.1,
    cls_token_id: int = 2,
    sep_token_id: int = 3,
    mask_token_id: int = 4,
    vocab_size: int = 30522,
    masked_lm_prob: float = 0.15,
    max_predictions_per_seq: int = 20,
    masking: bool = True,
) -> list[dict[str, Any]]:
    """One pass of Google BERT's ``create_instances_from_document`` (and, with ``masking``,
    ``create_masked_lm_predictions``) over ``documents`` (lists of sentences of token ids), as
    its pure-Python code does it: one ``random.Random`` for everything, the reference's quirks
    included (the random document is retried up to ten times; with one document it pairs with
    itself). This is the baseline the Rust builder is measured against."""
    out: list[dict[str, Any]] = []
    max_num_tokens = max_seq_length - 3
    for d, document in enumerate(documents):
        target = max_num_tokens
        if rng.random() < short_seq_prob:
            target = rng.randint(2, max_num_tokens)
        chunk: list[list[int]] = []
        chunk_len = 0
        i = 0
        while i < len(document):
            chunk.append(document[i])
            chunk_len += len(document[i])
            if i == len(document) - 1 or chunk_len >= target:
                if chunk:
                    a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                    tokens_a = [t for s in chunk[:a_end] for t in s]
                    tokens_b: list[int] = []
                    if len(chunk) == 1 or rng.random() < 0.5:
                        is_random = True
                        target_b = target - len(tokens_a)
                        r = d
                        for _ in range(10):
                            r = rng.randint(0, len(documents) - 1)
                            if r != d:
                                break
                        random_doc = documents[r]
                        start = rng.randint(0, len(random_doc) - 1)
                        for j in range(start, len(random_doc)):
                            tokens_b.extend(random_doc[j])
                            if len(tokens_b) >= target_b:
                                break
                        i -= len(chunk) - a_end
                    else:
                        is_random = False
                        tokens_b = [t for s in chunk[a_end:] for t in s]
                    while len(tokens_a) + len(tokens_b) > max_num_tokens:
                        trunc = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
                        if rng.random() < 0.5:
                            del trunc[0]
                        else:
                            trunc.pop()
                    tokens = [cls_token_id, *tokens_a, sep_token_id, *tokens_b, sep_token_id]
                    segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
                    instance: dict[str, Any] = {
                        "tokens": tokens,
                        "segment_ids": segment_ids,
                        "is_random_next": is_random,
                    }
                    if masking:
                        instance.update(
                            _google_masking(
                                tokens,
                                rng,
                                cls_token_id,
                                sep_token_id,
                                mask_token_id,
                                vocab_size,
                                masked_lm_prob,
                                max_predictions_per_seq,
                            )
                        )
                    out.append(instance)
                chunk = []
                chunk_len = 0
            i += 1
    rng.shuffle(out)
    return out


def _google_masking(
    tokens: list[int],
    rng: Any,
    cls: int,
    sep: int,
    mask: int,
    vocab_size: int,
    p: float,
    max_predictions: int,
) -> dict[str, Any]:
    candidates = [i for i, t in enumerate(tokens) if t not in (cls, sep)]
    rng.shuffle(candidates)
    output = list(tokens)
    num_to_predict = min(max_predictions, max(1, round(len(tokens) * p)))
    positions: list[int] = []
    for index in candidates:
        if len(positions) >= num_to_predict:
            break
        if rng.random() < 0.8:
            output[index] = mask
        elif rng.random() < 0.5:
            output[index] = tokens[index]
        else:
            output[index] = rng.randint(0, vocab_size - 1)
        positions.append(index)
    positions.sort()
    return {
        "masked_tokens": output,
        "masked_lm_positions": positions,
        "masked_lm_labels": [tokens[i] for i in positions],
    }
