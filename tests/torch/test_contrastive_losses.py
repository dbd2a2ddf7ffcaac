"""Contrastive losses (lmobjectives.torch): InfoNCE (parity with sentence-transformers,
cross-rank gathering on 2 gloo processes), CPC and SimCSE.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from lmobjectives.torch import CPCHead, InfoNCELoss, SimCSE, cpc_loss, info_nce_loss


def leaves(*shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g, requires_grad=True) for s in shapes]


# -- InfoNCE -----------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 2, 64])
@pytest.mark.parametrize("n_neg", [0, 1, 3])
@pytest.mark.parametrize("symmetric", [False, True])
def test_loss_and_gradients_equal_sentence_transformers(batch, n_neg, symmetric):
    q, p, *negs = leaves(*[(batch, 24)] * (2 + n_neg), seed=batch + 10 * n_neg)
    ours = info_nce_loss(q, p, negs or None, symmetric=symmetric)
    ours_grads = torch.autograd.grad(ours, [q, p, *negs])
    # MultipleNegativesSymmetricRankingLoss is now this configuration of MNRL: the
    # doc→query term scores p_i against the queries only (hard negatives are not queries).
    st_loss = MultipleNegativesRankingLoss(
        None,
        directions=("query_to_doc", "doc_to_query") if symmetric else ("query_to_doc",),
        partition_mode="per_direction" if symmetric else "joint",
    )
    ref = st_loss.compute_loss_from_embeddings([q, p, *negs], None)
    ref_grads = torch.autograd.grad(ref, [q, p, *negs])
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)
    for a, b in zip(ours_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_loss_is_cross_entropy_over_the_documented_layout():
    q, p, n1, n2 = leaves((5, 8), (5, 8), (5, 8), (5, 8), seed=1)
    docs = torch.cat([p, n1, n2])  # [P | N1 | N2]
    logits = (q @ docs.T) * 3.0
    want = F.cross_entropy(logits, torch.arange(5))
    got = info_nce_loss(q, p, torch.stack([n1, n2], 1), scale=3.0, similarity="dot")
    torch.testing.assert_close(got, want)
    # temperature = 1 / scale; [B, n, d] and a list of columns are the same thing.
    torch.testing.assert_close(
        info_nce_loss(q, p, [n1, n2], temperature=1 / 3.0, similarity="dot"), want
    )
    per_row = info_nce_loss(q, p, [n1, n2], scale=3.0, similarity="dot", reduction="none")
    torch.testing.assert_close(per_row, F.cross_entropy(logits, torch.arange(5), reduction="none"))


def test_duplicates_are_not_each_others_negatives():
    q, p = leaves((4, 8), (4, 8), seed=2)
    dup = torch.tensor([0, 1, 0, 2])  # rows 0 and 2 share an anchor text
    logits = (F.normalize(q, dim=1) @ F.normalize(p, dim=1).T) * 20
    logits[0, 2] = logits[2, 0] = float("-inf")
    want = F.cross_entropy(logits, torch.arange(4))
    torch.testing.assert_close(info_nce_loss(q, p, duplicates=dup), want)
    # Control: without the ids the loss differs.
    assert not torch.isclose(info_nce_loss(q, p), want)
    # Hard-negative columns are never masked.
    n = leaves((4, 8), seed=3)[0]
    full = torch.cat([logits, (F.normalize(q, dim=1) @ F.normalize(n, dim=1).T) * 20], 1)
    torch.testing.assert_close(
        info_nce_loss(q, p, [n], duplicates=dup), F.cross_entropy(full, torch.arange(4))
    )


def test_learnable_scale_gets_a_gradient_and_matches_the_fixed_scale():
    q, p, n = leaves((6, 8), (6, 8), (6, 2, 8), seed=4)
    module = InfoNCELoss(temperature=0.05, learnable_scale=True)
    loss = module(q, p, n)
    torch.testing.assert_close(loss, info_nce_loss(q, p, n, scale=20.0))
    loss.backward()
    assert module.log_scale.grad is not None
    assert module.log_scale.grad.abs() > 0
    assert "scale=20" in repr(module)
    fixed = InfoNCELoss(scale=5.0, symmetric=True)
    assert not list(fixed.parameters())
    torch.testing.assert_close(fixed(q, p), info_nce_loss(q, p, scale=5.0, symmetric=True))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"scale": 2.0, "temperature": 0.5}, ValueError, "give one of them"),
        ({"temperature": 0.0}, ValueError, "temperature: must be > 0"),
        ({"scale": -1.0}, ValueError, "scale: must be > 0"),
        ({"similarity": "l2"}, ValueError, "similarity:"),
        ({"reduction": "max"}, ValueError, "reduction:"),
        ({"negatives": torch.randn(4, 8)}, ValueError, r"negatives\[0\]: expected shape \(3, 8\)"),
        ({"negatives": torch.randn(3, 1, 1, 8)}, ValueError, "negatives: expected"),
        ({"negatives": 3}, TypeError, "negatives:"),
        ({"duplicates": torch.zeros(3)}, ValueError, "duplicates: expected"),
        ({"gather": True}, RuntimeError, "gather: needs an initialised"),
    ],
)
def test_info_nce_errors(kwargs, error, match):
    q, p = torch.randn(3, 8), torch.randn(3, 8)
    with pytest.raises(error, match=match):
        info_nce_loss(q, p, **kwargs)
    with pytest.raises(ValueError, match="positives: expected shape"):
        info_nce_loss(q, p[:2])


# -- cross-rank negatives: 2 gloo processes ----------------------------------------------------

SIZES = (3, 5)  # ragged per-rank batch sizes
D_IN, D_OUT = 6, 4


def _global_inputs():
    g = torch.Generator().manual_seed(7)
    total = sum(SIZES)
    return {k: torch.randn(total, D_IN, generator=g) for k in ("q", "p", "n")}


def _model():
    torch.manual_seed(0)
    return torch.nn.Linear(D_IN, D_OUT)


def _loss(model, x, sl, *, gather, symmetric, duplicates):
    return info_nce_loss(
        model(x["q"][sl]),
        model(x["p"][sl]),
        [model(x["n"][sl])],
        gather=gather,
        symmetric=symmetric,
        duplicates=None if duplicates is None else duplicates[sl],
    )


def _worker(rank, world, init, out_dir, symmetric, with_dups):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        x = _global_inputs()
        dups = torch.tensor([0, 1, 2, 0, 3, 4, 2, 5]) if with_dups else None
        sl = slice(sum(SIZES[:rank]), sum(SIZES[: rank + 1]))
        model = DDP(_model())
        loss = _loss(model, x, sl, gather=True, symmetric=symmetric, duplicates=dups)
        loss.backward()
        # Control: the interleaved layout of sentence-transformers #3453 / SimCLR #46
        # ([P_r0, N_r0, P_r1, N_r1] with block targets) trains toward the wrong columns.
        with torch.no_grad():
            q, _p, _n = (model.module(x[k][sl]) for k in ("q", "p", "n"))
            parts = []
            for r in range(world):
                rs = slice(sum(SIZES[:r]), sum(SIZES[: r + 1]))
                parts += [model.module(x["p"][rs]), model.module(x["n"][rs])]
            docs = torch.cat(parts)
            logits = F.normalize(q, dim=1) @ F.normalize(docs, dim=1).T * 20
            wrong = F.cross_entropy(logits, torch.arange(sl.start, sl.stop)).item()
        torch.save(
            {
                "loss": loss.item(),
                "rows": sl.stop - sl.start,
                "wrong": wrong,
                "grads": [p.grad.clone() for p in model.parameters()],
            },
            f"{out_dir}/rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize(("symmetric", "with_dups"), [(False, False), (True, True)])
def test_gathered_loss_and_ddp_gradients_equal_the_global_batch(tmp_path, symmetric, with_dups):
    import torch.multiprocessing as mp

    init = f"file://{tmp_path}/rendezvous"
    mp.spawn(_worker, args=(2, init, str(tmp_path), symmetric, with_dups), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    x = _global_inputs()
    dups = torch.tensor([0, 1, 2, 0, 3, 4, 2, 5]) if with_dups else None
    model = _model()
    want = _loss(model, x, slice(None), gather=False, symmetric=symmetric, duplicates=dups)
    want.backward()
    # Mean over ranks of the returned losses = the global loss ...
    got = sum(r["loss"] for r in ranks) / 2
    assert math.isclose(got, want.item(), rel_tol=1e-5)
    # ... and DDP's averaged gradients (identical on both ranks) = the global gradients.
    for g0, g1, g in zip(ranks[0]["grads"], ranks[1]["grads"], model.parameters(), strict=True):
        torch.testing.assert_close(g0, g1)
        torch.testing.assert_close(g0, g.grad, rtol=1e-5, atol=1e-6)
    # The control layout really differs (the test would catch that bug).
    per_row = [
        _loss(
            model,
            x,
            slice(sum(SIZES[:r]), sum(SIZES[: r + 1])),
            gather=False,
            symmetric=False,
            duplicates=None,
        ).item()
        for r in range(2)
    ]
    if not symmetric:
        assert any(abs(r["wrong"] - v) > 1e-3 for r, v in zip(ranks, per_row, strict=True))


# -- CPC ---------------------------------------------------------------------------------------


def cpc_reference(z, c, w, negatives, mask=None):
    """A loop over steps and positions: −log softmax of the true target among candidates."""
    bsz, t_len, _ = z.shape
    mask = torch.ones(bsz, t_len, dtype=torch.bool) if mask is None else mask
    per_step = []
    for k in range(1, w.shape[0] + 1):
        terms = []
        for b in range(bsz):
            for t in range(t_len - k):
                if not (mask[b, t] and mask[b, t + k]):
                    continue
                pred = w[k - 1] @ c[b, t]
                if negatives == "batch":
                    cands = [(bb, t + k) for bb in range(bsz)]
                elif negatives == "time":
                    cands = [(b, tt + k) for tt in range(t_len - k)]
                else:
                    cands = [(bb, tt + k) for bb in range(bsz) for tt in range(t_len - k)]
                cands = [x for x in cands if mask[x]]
                scores = torch.stack([z[x] @ pred for x in cands])
                terms.append(-torch.log_softmax(scores, 0)[cands.index((b, t + k))])
        per_step.append(torch.stack(terms).mean())
    return torch.stack(per_step).mean()


@pytest.mark.parametrize("negatives", ["batch", "time", "all"])
def test_cpc_equals_the_closed_form(negatives):
    z, c, w = leaves((3, 7, 5), (3, 7, 4), (3, 5, 4), seed=5)
    got = cpc_loss(z, c, w, negatives=negatives)
    want = cpc_reference(z, c, w, negatives)
    torch.testing.assert_close(got, want)
    g1 = torch.autograd.grad(got, [z, c, w])
    g2 = torch.autograd.grad(want, [z, c, w])
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 5:] = False
    torch.testing.assert_close(
        cpc_loss(z, c, w, negatives=negatives, mask=mask), cpc_reference(z, c, w, negatives, mask)
    )


def test_cpc_head_learns_a_predictable_sequence():
    # z_{t+1} = R z_t for a fixed rotation R: a linear context c_t = z_t makes every step
    # predictable, so accuracy must rise from chance (1/B) to ~1 with training.
    torch.manual_seed(0)
    r = torch.linalg.qr(torch.randn(8, 8))[0]
    z0 = torch.randn(16, 8)
    seq = [z0]
    for _ in range(9):
        seq.append(seq[-1] @ r.T)
    z = torch.stack(seq, 1)
    head = CPCHead(8, 8, steps=2)
    _, acc0 = head(z, z, return_accuracy=True)
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        head(z, z).backward()
        opt.step()
    loss, acc = head(z, z, return_accuracy=True)
    assert acc.min() > 0.95 > acc0.max()
    assert loss.item() < 0.2


def test_cpc_errors():
    z, c = torch.randn(2, 5, 3), torch.randn(2, 5, 4)
    with pytest.raises(ValueError, match="weights: expected"):
        cpc_loss(z, c, torch.randn(2, 4, 3))
    with pytest.raises(ValueError, match="needs 1 <= K < T"):
        cpc_loss(z, c, torch.randn(5, 3, 4))
    with pytest.raises(ValueError, match="z, c: expected"):
        cpc_loss(z, c[:1], torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="negatives:"):
        cpc_loss(z, c, torch.randn(2, 3, 4), negatives="future")
    with pytest.raises(ValueError, match="mask: expected"):
        cpc_loss(z, c, torch.randn(2, 3, 4), mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="steps: must be"):
        CPCHead(3, 4, 0)


# -- SimCSE ------------------------------------------------------------------------------------


def test_simcse_views_differ_only_by_dropout():
    torch.manual_seed(0)
    enc = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(0.1), torch.nn.Linear(16, 8))
    simcse = SimCSE(enc)
    x = torch.randn(6, 8)
    z1, z2 = simcse.views(x)
    assert not torch.equal(z1, z2)
    torch.manual_seed(1)
    loss = simcse(x)
    torch.manual_seed(1)
    a, b = simcse.views(x)
    torch.testing.assert_close(loss, info_nce_loss(a, b, temperature=0.05))
    simcse.eval()
    e1, e2 = simcse.views(x)
    torch.testing.assert_close(e1, e2)
