"""Hugging Face's ``DataCollatorForLanguageModeling`` (what ``run_mlm.py`` uses) over a
``tokenizers.Tokenizer``: :func:`hf_tokenizer` and :func:`hf_mlm_collator`."""

from __future__ import annotations

from typing import Any, Literal

from lmobjectives._optional import require

__all__ = ["hf_mlm_collator", "hf_tokenizer"]


def hf_tokenizer(tokenizer: Any) -> Any:
    """A ``tokenizers.Tokenizer`` with BERT's special tokens as a ``transformers`` fast
    tokenizer (what ``DataCollatorForLanguageModeling`` needs); a ``transformers`` tokenizer is
    returned as is."""
    if hasattr(tokenizer, "all_special_ids"):
        return tokenizer
    transformers = require("transformers", "a transformers tokenizer (hf_tokenizer)")
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def hf_mlm_collator(
    tokenizer: Any,
    *,
    seed: int | None = None,
    mlm_probability: float = 0.15,
    return_tensors: Literal["pt", "np"] = "pt",
) -> Any:
    """Hugging Face's ``DataCollatorForLanguageModeling`` (80/10/10, i.i.d. Bernoulli) over
    ``tokenizer`` (a ``tokenizers.Tokenizer`` is wrapped with :func:`hf_tokenizer`)."""
    transformers = require("transformers", "Hugging Face's DataCollatorForLanguageModeling")
    if return_tensors == "pt":
        require("torch", 'return_tensors="pt"')
    return transformers.DataCollatorForLanguageModeling(
        tokenizer=hf_tokenizer(tokenizer),
        mlm=True,
        mlm_probability=mlm_probability,
        return_tensors=return_tensors,
        seed=seed,
    )
