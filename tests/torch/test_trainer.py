"""The collators under ``transformers.Trainer`` (with accelerate, as Trainer runs it): epochs
that reach every DataLoader worker through :class:`EpochCallback`, batches equal for any
worker count and persistence, evaluation with the training collator, resuming, our datasets
under Trainer's defaults, and RoBERTa's position numbering for packed rows. Tiny models built
from configs: nothing is downloaded."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from lmobjectives import (  # noqa: E402
    MLMCollator,
    PackingCollator,
    RepeatedSampleKeyWarning,
    SentencePairDataset,
    TokenCorpus,
)
from lmobjectives.torch.integration import EpochCallback  # noqa: E402

from conftest import CLS, MASK, PAD, SEP, VOCAB, make_rows  # noqa: E402

ROWS = make_rows(64, 30, 30, seed=8)  # equal lengths: a repeated mask is not a coincidence
KEYED = [{"input_ids": r, "idx": i} for i, r in enumerate(ROWS)]
PLAIN = [{"input_ids": r} for r in ROWS]
STEPS_PER_EPOCH = 4  # 64 examples, batches of 16


class Recording(transformers.Trainer):
    """Keeps the inputs of every training step (in the main process, after the DataLoader)."""

    def training_step(self, model, inputs, num_items_in_batch=None):
        self.seen.append({k: inputs[k].detach().cpu().clone() for k in ("input_ids", "labels")})
        return super().training_step(model, inputs, num_items_in_batch)


def bert() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return transformers.BertForMaskedLM(config)


def train(
    tmp_path,
    data=KEYED,
    *,
    workers: int = 0,
    persistent: bool = False,
    callback: bool = True,
    model=None,
    collate=None,
    resume: str | None = None,
    eval_dataset=None,
    **args,
) -> list[dict[str, torch.Tensor]]:
    """Two epochs; returns the batches every step trained on."""
    collate = collate or MLMCollator(
        vocab_size=VOCAB,
        mask_token_id=MASK,
        pad_token_id=PAD,
        special_token_ids=[CLS, SEP],
        seed=7,
        return_tensors="pt",
    )
    settings = {
        "output_dir": str(tmp_path),
        "num_train_epochs": 2,
        "per_device_train_batch_size": 16,
        "dataloader_num_workers": workers,
        "dataloader_persistent_workers": persistent,
        # Examples with an idx keep it (masks keyed by example); without, Trainer's defaults.
        "remove_unused_columns": "idx" not in data[0],
        "report_to": [],
        "save_strategy": "no",
        "logging_strategy": "no",
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 0,
    }
    settings.update(args)
    trainer = Recording(
        model=model or bert(),
        args=transformers.TrainingArguments(**settings),
        train_dataset=data,
        eval_dataset=eval_dataset,
        data_collator=collate,
        callbacks=[EpochCallback()] if callback else [],
    )
    trainer.seen = []
    trainer.train(resume_from_checkpoint=resume)
    return trainer.seen


def assert_same(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for k in x:
            torch.testing.assert_close(x[k], y[k], rtol=0, atol=0)


def masks_by_example(batches) -> dict[int, torch.Tensor]:
    """Each example's labels, found by its original tokens (labels fill in the masked ones)."""
    index = {tuple(r): i for i, r in enumerate(ROWS)}
    out = {}
    for b in batches:
        for ids, labels in zip(b["input_ids"], b["labels"], strict=True):
            original = torch.where(labels != -100, labels, ids)
            out[index[tuple(original.tolist())]] = labels.clone()
    return out


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """num_workers=0 runs with the callback, keyed and not."""
    return {
        keyed: train(tmp_path_factory.mktemp("ref"), KEYED if keyed else PLAIN)
        for keyed in (True, False)
    }


@pytest.mark.slow
@pytest.mark.parametrize("keyed", [True, False], ids=["idx", "no-idx"])
@pytest.mark.parametrize(
    ("workers", "persistent"), [(0, False), (2, False), (2, True)], ids=["0", "2", "2-persistent"]
)
def test_every_epoch_reaches_every_worker(tmp_path, references, keyed, workers, persistent):
    ref = references[keyed]
    got = train(tmp_path, KEYED if keyed else PLAIN, workers=workers, persistent=persistent)
    assert len(got) == 2 * STEPS_PER_EPOCH
    assert_same(got, ref)  # for workers=0: a second run, identical
    first, second = got[:STEPS_PER_EPOCH], got[STEPS_PER_EPOCH:]
    if keyed:  # every example got new masks in epoch 1
        e0, e1 = masks_by_example(first), masks_by_example(second)
        assert sorted(e0) == sorted(e1) == list(range(64))
        assert not any(torch.equal(e0[i], e1[i]) for i in e0)
    else:  # no batch slot repeats its pattern
        for a, b in zip(first, second, strict=True):
            assert not torch.equal(a["labels"] != -100, b["labels"] != -100)


@pytest.mark.slow
def test_without_the_callback_masks_repeat_and_the_collator_warns(tmp_path):
    with pytest.warns(RepeatedSampleKeyWarning, match="came twice in epoch 0"):
        got = train(tmp_path, callback=False)
    e0 = masks_by_example(got[:STEPS_PER_EPOCH])
    e1 = masks_by_example(got[STEPS_PER_EPOCH:])
    assert all(torch.equal(e0[i], e1[i]) for i in e0)  # what EpochCallback prevents


@pytest.mark.slow
def test_evaluation_with_the_training_collator(tmp_path, references):
    # Evaluation every 2 steps with the training collator (and overlapping idx): no warning,
    # and the training batches are those of a run without evaluation.
    with warnings.catch_warnings():
        warnings.simplefilter("error", RepeatedSampleKeyWarning)
        got = train(
            tmp_path,
            eval_dataset=KEYED[:32],
            eval_strategy="steps",
            eval_steps=2,
            per_device_eval_batch_size=16,
        )
    assert_same(got, references[True])


@pytest.mark.slow
def test_resuming_mid_epoch_gives_the_uninterrupted_batches(tmp_path, references):
    # Without idx (batches keyed by position): the resumed epoch must start at the right batch.
    ref = references[False]
    train(tmp_path, PLAIN, save_strategy="steps", save_steps=6)
    resumed = train(tmp_path, PLAIN, resume=str(tmp_path / "checkpoint-6"))
    assert len(resumed) == 2
    assert_same(resumed, ref[6:])


@pytest.mark.slow
def test_sentence_pairs_under_trainer_defaults(tmp_path, small_tokenizer):
    g = np.random.default_rng(2)
    docs = [list(g.integers(3, 20, size=int(g.integers(2, 8)))) for _ in range(40)]
    lengths = [n for d in docs for n in d]
    so = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    do = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    ids = g.integers(5, VOCAB, size=int(so[-1])).astype(np.uint16)
    corpus = TokenCorpus(ids, so, do, vocab_size=VOCAB, tokenizer=small_tokenizer)
    pairs = SentencePairDataset(corpus, "nsp", max_seq_length=48, seed=1)
    first_pass = [pairs[i]["input_ids"].tolist() for i in range(4)]
    torch.manual_seed(0)
    model = transformers.BertForPreTraining(
        transformers.BertConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        )
    )
    collate = MLMCollator(small_tokenizer, seed=3, return_tensors="pt")
    trainer = transformers.Trainer(  # remove_unused_columns=True: Trainer's default
        model=model,
        args=transformers.TrainingArguments(
            output_dir=str(tmp_path),
            num_train_epochs=2,
            per_device_train_batch_size=16,
            report_to=[],
            save_strategy="no",
            logging_steps=1,
            use_cpu=True,
            disable_tqdm=True,
        ),
        train_dataset=pairs,
        data_collator=collate,
        callbacks=[EpochCallback()],
    )
    out = trainer.train()
    assert np.isfinite(out.training_loss)
    assert pairs.epoch == collate.epoch == 1  # the callback found both behind the wrappers
    assert [pairs[i]["input_ids"].tolist() for i in range(4)] != first_pass


def test_the_callback_checks_its_objects():
    with pytest.raises(TypeError, match=r"objects\[1\]: expected a collator or dataset"):
        EpochCallback(MLMCollator(vocab_size=VOCAB, mask_token_id=MASK, pad_token_id=PAD), 3)


def test_roberta_positions_from_the_packing_offset():
    config = transformers.RobertaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=20,  # 16 positions + padding_idx + 1 (RoBERTa's 514 = 512 + 2)
        pad_token_id=1,
    )
    examples = [[0, 7, 8, 9, 2], [0, 10, 2], [0, 11, 12, 13, 14, 15, 2]]
    pack = PackingCollator(
        max_length=16,
        strategy="greedy",
        pad_token_id=config.pad_token_id,
        position_offset=config.pad_token_id + 1,
        return_sequence_ids=True,
        return_tensors="pt",
    )
    batch = pack(examples)
    numbering = transformers.models.roberta.modeling_roberta.RobertaEmbeddings
    row, seq = batch["position_ids"][0], batch["sequence_ids"][0]
    for e, ex in enumerate(examples):
        own = numbering.create_position_ids_from_input_ids(torch.tensor([ex]), 1)[0]
        torch.testing.assert_close(row[seq == e], own, rtol=0, atol=0)
    pad = seq == -1
    assert pad.any() and bool((row[pad] == config.pad_token_id).all())
    # One example in a padded row: the model given our positions equals the model numbering
    # its own.
    torch.manual_seed(0)
    model = transformers.RobertaModel(config).eval()
    single = PackingCollator(max_length=16, pad_token_id=1, position_offset=2, return_tensors="pt")(
        [examples[2]]
    )
    with torch.no_grad():
        ours = model(
            input_ids=single["input_ids"],
            attention_mask=single["attention_mask"],
            position_ids=single["position_ids"],
        ).last_hidden_state
        theirs = model(
            input_ids=single["input_ids"], attention_mask=single["attention_mask"]
        ).last_hidden_state
    n = len(examples[2])
    torch.testing.assert_close(ours[:, :n], theirs[:, :n])
