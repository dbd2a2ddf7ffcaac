"""Baselines: what lmobjectives is measured and checked against, one module per upstream.

- :mod:`~lmobjectives.lab.baselines.numpy_reference`: the references a competent person would
  write by hand in NumPy — :class:`NumpyMLMCollator` (MLM masking, same knobs and output as
  :class:`~lmobjectives.MLMCollator`) and :func:`numpy_topk` (exact top-k retrieval).
- :mod:`~lmobjectives.lab.baselines.huggingface`: Hugging Face's
  ``DataCollatorForLanguageModeling`` (what ``run_mlm.py`` uses) over a ``tokenizers.Tokenizer``.
- :mod:`~lmobjectives.lab.baselines.google_bert`: Google BERT's NSP instance builder (and its
  masking) in pure Python, as ``create_pretraining_data.py`` runs it.
- :mod:`~lmobjectives.lab.baselines.t5`: the T5 span-corruption collator of Hugging Face's Flax
  example (per-row NumPy masks), re-implemented faithfully, and the same vectorised over the batch.
- :mod:`~lmobjectives.lab.baselines.fairseq`: fairseq's ``DenoisingDataset`` noising ported from
  torch to NumPy (fairseq itself is not installable here).
- :mod:`~lmobjectives.lab.baselines.sentence_transformers`: sentence-transformers' exact
  retrieval without faiss (``cos_sim`` then ``torch.topk`` per chunk of queries).

``transformers`` and ``torch`` are imported only when an HF baseline or ``"pt"`` output is asked
for. Like the rest of :mod:`lmobjectives.lab`, these are not part of the stable API.
"""
