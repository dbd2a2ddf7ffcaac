"""The torch side is device-agnostic and free of host synchronisation (issue 19), and the
losses check their arguments (issue 15) — all tested on a CPU-only machine.

Guards:

- :func:`no_host_sync`: a ``TorchFunctionMode`` that fails on every way Python code reads a
  tensor's value on the host (``.item()``, ``bool()``, ``int()``, ``float()``, ``.tolist()``,
  ``.numpy()``, ``.cpu()``) — on an accelerator each of them would stall until the device
  finishes. It also fails on the ops whose output *shape* depends on tensor values (boolean
  indexing, ``nonzero``, ``argwhere``, ``masked_select``, ``unique``, ``bincount``,
  one-argument ``where``, ``repeat_interleave`` without ``output_size``): the host must read
  that shape before it can go on, a sync as surely as ``.item()``. The value checks that run
  only on CPU tensors (``_checks.reads_values``) are switched off, as they are on any other
  device.
- :func:`on_input_device_only`: sets the default device to ``meta`` and records every tensor
  an op returns on ``meta``. Inputs and models live on the CPU, so any ``meta`` tensor is one
  created without ``device=`` — a tensor that would land on the CPU for a CUDA input.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from lmobjectives.torch import _checks

READS = {
    torch.Tensor.item,
    torch.Tensor.__bool__,
    torch.Tensor.__int__,
    torch.Tensor.__float__,
    torch.Tensor.__index__,
    torch.Tensor.tolist,
    torch.Tensor.numpy,
    torch.Tensor.cpu,
}


#: ops whose output shape depends on the values of their input (nonzero_static is not one)
DATA_DEPENDENT_SHAPE = {
    torch.nonzero,
    torch.Tensor.nonzero,
    torch.argwhere,
    torch.Tensor.argwhere,
    torch.masked_select,
    torch.Tensor.masked_select,
    torch.unique,
    torch.Tensor.unique,
    torch.unique_consecutive,
    torch.Tensor.unique_consecutive,
    torch._unique,
    torch._unique2,
    torch.bincount,
    torch.Tensor.bincount,
}
#: indexing ops that sync when an index is a boolean (or uint8) mask
INDEXING = {
    torch.Tensor.__getitem__,
    torch.Tensor.__setitem__,
    torch.Tensor.index_put,
    torch.Tensor.index_put_,
    torch.index_put,
}


class HostSync(AssertionError):
    pass


def _has_mask_index(index: Any) -> bool:
    items = index if isinstance(index, (tuple, list)) else (index,)
    return any(
        isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)
        for i in tree_flatten(list(items))[0]
    )


def _data_dependent_shape(func: Any, args: Any, kwargs: dict[str, Any]) -> bool:
    if func in DATA_DEPENDENT_SHAPE:
        return True
    if func in INDEXING:
        return len(args) > 1 and _has_mask_index(args[1])
    if func is torch.where:
        return len(args) + len(kwargs) == 1
    if func in (torch.repeat_interleave, torch.Tensor.repeat_interleave):
        repeats = args[1] if len(args) > 1 else kwargs.get("repeats", args[0] if args else None)
        return isinstance(repeats, torch.Tensor) and kwargs.get("output_size") is None
    return False


class _NoHostSync(TorchFunctionMode):
    def __init__(self, shapes: bool = True) -> None:
        super().__init__()
        self.shapes = shapes

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", func)
        if func in READS:
            raise HostSync(f"host read of a tensor: {name}")
        if self.shapes and _data_dependent_shape(func, args, kwargs):
            raise HostSync(f"data-dependent output shape (a host sync): {name}")
        return func(*args, **kwargs)


@contextlib.contextmanager
def no_host_sync(monkeypatch: Any, *, shapes: bool = True) -> Iterator[None]:
    """Fails (:class:`HostSync`) on any host read of a tensor inside the block, and (unless
    ``shapes=False``) on any op with a data-dependent output shape."""
    import lmobjectives.torch as lt

    monkeypatch.setattr(_checks, "reads_values", lambda t: False)
    monkeypatch.setattr(lt, "reads_values", lambda t: False)
    with _NoHostSync(shapes):
        yield


class _DeviceRecorder(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.strays: list[str] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type == "meta":
                self.strays.append(getattr(func, "__name__", str(func)))
        return out


@contextlib.contextmanager
def on_input_device_only() -> Iterator[list[str]]:
    """Yields the list of ops that created a tensor off the inputs' (CPU) device; the caller
    asserts it is empty. An op mixing such a tensor with a CPU one may also raise."""
    recorder = _DeviceRecorder()
    previous = torch.get_default_device()
    torch.set_default_device("meta")
    try:
        with recorder:
            yield recorder.strays
    finally:
        torch.set_default_device(previous)


# -- issue 15: argument checks of the losses -----------------------------------------------------

import math  # noqa: E402

import pytest  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from lmobjectives import InvalidArgumentError, TokenIdError  # noqa: E402
from lmobjectives.torch import (  # noqa: E402
    InfoNCELoss,
    MLMHead,
    cpc_loss,
    info_nce_loss,
    labelled_positions,
    masked_lm_loss,
    seq2seq_loss,
)


def test_info_nce_empty_batch_is_a_typed_error() -> None:
    with pytest.raises(InvalidArgumentError, match="queries"):
        info_nce_loss(torch.zeros(0, 4), torch.zeros(0, 4))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"scale": math.inf}, "scale"),
        ({"scale": math.nan}, "scale"),
        ({"scale": 0.0}, "scale"),
        ({"scale": -2.0}, "scale"),
        ({"scale": 1e39}, "scale"),
        ({"temperature": 1e-45}, "temperature"),
        ({"temperature": 1e-39}, "temperature"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": math.inf}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"scale": torch.ones(2)}, "scale"),
    ],
)
def test_info_nce_bad_scale_or_temperature_is_a_typed_error(kwargs, name) -> None:
    q = torch.randn(4, 8)
    with pytest.raises(InvalidArgumentError, match=name):
        info_nce_loss(q, q, **kwargs)
    if not isinstance(kwargs.get("scale"), torch.Tensor):
        with pytest.raises(InvalidArgumentError, match=name):
            InfoNCELoss(**kwargs)


def test_info_nce_smallest_valid_temperature_gives_a_finite_loss() -> None:
    # the control of the test above: a temperature whose reciprocal fits float32 is accepted
    q, p = torch.randn(4, 8), torch.randn(4, 8)
    assert torch.isfinite(info_nce_loss(q, p, temperature=1e-30))
    assert torch.isfinite(info_nce_loss(q, p, scale=1e30))


def test_masked_lm_loss_label_out_of_vocab_is_a_token_id_error() -> None:
    logits = torch.randn(2, 5, 10)
    labels = torch.full((2, 5), -100)
    labels[0, 1] = 3
    labels[1, 2] = 10  # == vocab
    labels[1, 4] = 12
    with pytest.raises(TokenIdError, match=r"labels: id 10 at position \(1, 2\)"):
        masked_lm_loss(logits, labels)
    labels[1, 2] = labels[1, 4] = -7  # negative but not the ignore index
    with pytest.raises(TokenIdError, match=r"labels: id -7 at position \(1, 2\)"):
        masked_lm_loss(logits, labels)
    labels[1, 2] = labels[1, 4] = 9  # the control: in range
    assert torch.isfinite(masked_lm_loss(logits, labels))


def test_mlm_head_and_seq2seq_loss_check_label_range() -> None:
    head = MLMHead(8, 10)
    labels = torch.full((2, 5), -100)
    labels[1, 3] = 11
    with pytest.raises(TokenIdError, match=r"labels: id 11 at position \(1, 3\)"):
        head(torch.randn(2, 5, 8), labels)
    with pytest.raises(TokenIdError, match=r"labels: id 11 at position \(1, 3\)"):
        seq2seq_loss(torch.randn(2, 5, 10), labels)


def test_masked_lm_loss_unchanged_values() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=g, requires_grad=True)
    labels = torch.randint(0, 11, (3, 7), generator=g)
    labels[torch.rand(3, 7, generator=g) < 0.6] = -100
    keep = labels != -100
    ref = F.cross_entropy(logits[keep], labels[keep])
    full = masked_lm_loss(logits, labels)
    compact = masked_lm_loss(logits[keep], labels)
    torch.testing.assert_close(full, ref)
    torch.testing.assert_close(compact, ref)
    with pytest.raises(ValueError, match="labelled positions"):
        masked_lm_loss(logits[keep][:-1], labels)
    empty = masked_lm_loss(logits, torch.full((3, 7), -100))
    assert float(empty.detach()) == 0.0 and empty.requires_grad
    ref2 = F.cross_entropy(
        logits.reshape(-1, 11), labels.reshape(-1), label_smoothing=0.1, ignore_index=-100
    )
    torch.testing.assert_close(seq2seq_loss(logits, labels, label_smoothing=0.1), ref2)


# -- no host synchronisation inside the losses and the pretrain step ---------------------------


def _loss_calls() -> list[tuple[str, Any]]:
    g = torch.Generator().manual_seed(1)
    q, p = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    neg = torch.randn(6, 2, 8, generator=g)
    dup = torch.tensor([0, 1, 1, 2, 3, 4])
    logits = torch.randn(2, 5, 10, generator=g)
    labels = torch.tensor([[1, -100, 3, -100, 9], [-100, -100, 0, 4, -100]])
    compact = logits[labels != -100]
    z, c, w = torch.randn(2, 6, 4), torch.randn(2, 6, 3), torch.randn(2, 4, 3)
    zg, cg = z.clone().requires_grad_(), c.clone().requires_grad_()
    steps = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    module = InfoNCELoss(learnable_scale=True)
    head = MLMHead(10, 10, max_predictions=3)
    hidden = torch.randn(2, 5, 10, generator=g, requires_grad=True)
    return [
        ("info_nce", lambda: info_nce_loss(q, p, neg, duplicates=dup, symmetric=True)),
        ("info_nce_none", lambda: info_nce_loss(q, p, reduction="none", temperature=0.1)),
        ("info_nce_module", lambda: module(q, p)),
        ("masked_lm", lambda: masked_lm_loss(logits, labels)),
        ("masked_lm_compact", lambda: masked_lm_loss(compact, labels)),
        ("seq2seq", lambda: seq2seq_loss(logits, labels, label_smoothing=0.1)),
        ("cpc_no_mask", lambda: cpc_loss(z, c, w, negatives="time")),
        *(
            (f"cpc_{n}", lambda n=n: cpc_loss(zg, cg, w, negatives=n, mask=steps))
            for n in ("batch", "time", "all")
        ),
        ("cpc_accuracy", lambda: cpc_loss(z, c, w, mask=steps, return_accuracy=True)[1]),
        ("mlm_head_fixed", lambda: head(hidden, labels)[0]),
        ("labelled_positions", lambda: labelled_positions(labels, 3)[1].float()),
    ]


@pytest.mark.parametrize("name", [n for n, _ in _loss_calls()])
def test_losses_read_no_tensor_on_the_host(monkeypatch, name: str) -> None:
    call = dict(_loss_calls())[name]
    with no_host_sync(monkeypatch):
        loss = call()
        loss.sum().backward() if loss.requires_grad else None
    assert torch.isfinite(loss).all()


def test_the_guard_catches_a_host_read(monkeypatch) -> None:
    # the control: the old masked_lm_loss counted labels on the host (int(keep.sum()))
    with pytest.raises(HostSync), no_host_sync(monkeypatch):
        int(torch.ones(3).sum())


_x = torch.arange(6.0).reshape(2, 3)
_m = _x > 2


@pytest.mark.parametrize(
    "op",
    [
        lambda: _x[_m],
        lambda: _x[0, _m[0]],
        lambda: _x.clone().__setitem__(_m, 0.0),
        lambda: _x.clone().index_put_((_m,), torch.tensor(0.0)),
        lambda: _m.nonzero(),
        lambda: torch.nonzero(_m),
        lambda: torch.argwhere(_m),
        lambda: torch.where(_m),
        lambda: _x.masked_select(_m),
        lambda: torch.unique(_x),
        lambda: _x.unique(),
        lambda: torch.unique_consecutive(_x),
        lambda: torch.bincount(_m.flatten().long()),
        lambda: torch.repeat_interleave(torch.tensor([1, 2])),
        lambda: _x.repeat_interleave(torch.tensor([1, 2]), dim=0),
    ],
)
def test_the_guard_catches_a_data_dependent_shape(monkeypatch, op: Any) -> None:
    with pytest.raises(HostSync, match="data-dependent"), no_host_sync(monkeypatch):
        op()


def test_the_guard_lets_fixed_shape_ops_through(monkeypatch) -> None:
    # the control of the test above: the same selections with a shape known in advance
    with no_host_sync(monkeypatch):
        _x[0, torch.tensor([2, 0])]
        _x[:, torch.tensor([2, 0])]
        _x[_x.argsort(dim=1)[:, :1]]
        _x.masked_fill(_m, 0.0)
        torch.where(_m, _x, 0.0)
        torch.nonzero_static(_m, size=4)
        _x.repeat_interleave(2, dim=0)
        _x.repeat_interleave(torch.tensor([1, 2]), dim=0, output_size=3)


def _pretrain_run(objective: str, **kw: Any) -> tuple[Any, list[dict[str, Any]]]:
    from lmobjectives import TokenCorpus
    from lmobjectives.lab.pretrain import PretrainConfig, _batches, _Run, build

    cfg = PretrainConfig(
        objective=objective,
        steps=3,
        batch_size=4,
        seq_length=32,
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        **kw,
    )
    task, train, _ = build(cfg, TokenCorpus.default())
    run = _Run.start(cfg, task, torch.device("cpu"), None)
    stream = _batches(task, task.dataset(train, 0), task.collator(0), cfg, 0)
    batches = [next(stream)[1] for _ in range(3)]
    stream.close()
    return run, batches


@pytest.mark.parametrize(
    ("objective", "selection"),
    [(o, "auto") for o in ("mlm", "rtd", "t5", "infonce", "nsp")]
    + [(o, "fixed") for o in ("mlm", "wwm", "span", "nsp", "sop")],
)
def test_pretrain_step_reads_no_tensor_on_the_host(
    monkeypatch, objective: str, selection: str
) -> None:
    from lmobjectives.lab.pretrain import _to

    run, batches = _pretrain_run(objective, mlm_selection=selection)
    run.step(0, _to(batches[0], run.device))  # creates the optimiser state
    # On the CPU, "auto" keeps the i.i.d. MLM-side objectives' boolean selection (their rows
    # have no label bound; a sync costs nothing on the CPU): data-dependent shapes there, and
    # the guard with shapes=True fails (the control). "fixed" — what "auto" picks on an
    # accelerator — gathers seq_length slots: no sync at all. ELECTRA's exact budget and the
    # other objectives never select by a mask.
    shapes = objective in ("t5", "infonce", "rtd") or selection == "fixed"
    if not shapes:
        with pytest.raises(HostSync), no_host_sync(monkeypatch):
            run.step(1, _to(batches[1], run.device))
    with no_host_sync(monkeypatch, shapes=shapes):
        for i, b in enumerate(batches[1:], start=1):
            loss = run.step(i, _to(b, run.device))
    assert math.isfinite(float(loss.detach()))


def _electra(max_predictions: int | None = None) -> Any:
    from lmobjectives.torch import TinyEncoder
    from lmobjectives.torch.electra import ElectraRTD

    torch.manual_seed(0)
    gen = TinyEncoder(20, 8, 1, 2, max_length=12, embedding_size=16, head="mlm")
    disc = TinyEncoder(20, 16, 1, 2, max_length=12, head="token")
    return ElectraRTD(gen, disc, max_predictions=max_predictions)


def _mlm_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(0, 20, (3, 12), generator=g)
    labels = torch.where(torch.rand(3, 12, generator=g) < 0.3, ids, torch.full_like(ids, -100))
    labels[2] = -100  # a row without labels
    return ids, labels, torch.randn(3, 12, 16, generator=g, requires_grad=True)


def test_fixed_size_heads_read_no_tensor_on_the_host(monkeypatch) -> None:
    ids, labels, hidden = _mlm_inputs()
    head, rtd = MLMHead(16, 20, max_predictions=12), _electra(max_predictions=12)
    rng = torch.Generator().manual_seed(0)
    with no_host_sync(monkeypatch):
        head(hidden, labels)[0].backward()
        out = rtd(ids, labels, torch.ones_like(ids), generator=rng)
        (out.loss + out.gen_accuracy).backward()
        rtd.generator.masked_logits(ids, labelled_positions(labels, 12)[0])


def test_default_heads_still_select_with_a_mask(monkeypatch) -> None:
    # the control of the test above, and what the docs say: without max_predictions the
    # heads' [n_labelled, vocab] output has a data-dependent shape
    ids, labels, hidden = _mlm_inputs()
    with pytest.raises(HostSync, match="data-dependent"), no_host_sync(monkeypatch):
        MLMHead(16, 20)(hidden, labels)
    with pytest.raises(HostSync, match="data-dependent"), no_host_sync(monkeypatch):
        _electra()(ids, labels)


# -- every module keeps its tensors on the inputs' device ---------------------------------------


def test_the_device_guard_catches_a_default_device_tensor() -> None:
    # the control: torch.arange(n) without device= is the pattern the guard exists to catch
    x = torch.ones(3)
    with on_input_device_only() as strays:
        torch.arange(3)
        x + 1
    assert strays == ["arange"]


@pytest.mark.parametrize("name", [n for n, _ in _loss_calls()])
def test_losses_create_tensors_on_the_inputs_device(name: str) -> None:
    call = dict(_loss_calls())[name]
    with on_input_device_only() as strays:
        loss = call()
        loss.sum().backward() if loss.requires_grad else None
    assert strays == []


def test_electra_and_heads_stay_on_the_inputs_device() -> None:
    from lmobjectives.torch import SentencePairHead, TinyEncoder
    from lmobjectives.torch.electra import ElectraRTD

    torch.manual_seed(0)
    gen = TinyEncoder(20, 8, 1, 2, max_length=12, embedding_size=16, head="mlm")
    disc = TinyEncoder(20, 16, 1, 2, max_length=12, head="token")
    model, head, pair = ElectraRTD(gen, disc), MLMHead(16, 20), SentencePairHead(16)
    ids = torch.randint(0, 20, (3, 12))
    labels = torch.where(torch.rand(3, 12) < 0.3, ids, torch.full_like(ids, -100))
    hidden = torch.randn(3, 12, 16)
    rng = torch.Generator().manual_seed(0)
    pair_labels = torch.tensor([0, 1, 1])
    fixed = ElectraRTD(gen, disc, max_predictions=12)
    fixed_head = MLMHead(16, 20, max_predictions=12)
    with on_input_device_only() as strays:
        model(ids, labels, torch.ones_like(ids), generator=rng).loss.backward()
        head(hidden, labels)[0].backward()
        pair(hidden, pair_labels)[0].backward()
        fixed(ids, labels, torch.ones_like(ids), generator=rng).loss.backward()
        fixed_head(hidden, labels)[0].backward()
    assert strays == []


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from lmobjectives.torch.gan import OracleConfig, oracle_data

    cfg = OracleConfig(vocab_size=12, hidden_size=8, length=8, num_train=64, num_test=32, seed=3)
    return oracle_data(cfg, cache=False)


def test_gan_trainers_stay_on_the_inputs_device(oracle) -> None:
    from lmobjectives.torch.gan import (
        CNNDiscriminator,
        LSTMGenerator,
        SeqGAN,
        SeqGANConfig,
        TransformerGenerator,
    )
    from lmobjectives.torch.gan.leakgan import LeakGAN, LeakGANConfig, LeakGANGenerator
    from lmobjectives.torch.gan.maskgan import (
        InfillModel,
        MaskGAN,
        MaskGANConfig,
        TokenDiscriminator,
    )

    v, t = 12, 8
    small = {"batch_size": 8, "num_rollouts": 2, "d_steps": 1, "d_epochs": 1, "d_negatives": 16}
    torch.manual_seed(0)
    trainers: list[Any] = [
        SeqGAN(
            LSTMGenerator(v, 8, 8),
            CNNDiscriminator(v, t, filter_sizes=(2, 3), num_filters=(4, 4)),
            oracle.train,
            SeqGANConfig(rollout_policy="ema", rescale="rank", **small),
        ),
        SeqGAN(
            TransformerGenerator(v, 8, 1, 2, noise_size=4),
            None,
            oracle.train,
            SeqGANConfig(reward="constant", rescale="rank_released", batch_size=8),
        ),
        LeakGAN(
            LeakGANGenerator(
                v,
                t,
                CNNDiscriminator(v, t, filter_sizes=(2,), num_filters=(4,)),
                embedding_size=8,
                hidden_size=8,
                goal_size=4,
                step_size=4,
            ),
            oracle.train,
            LeakGANConfig(**small),
        ),
    ]
    for baseline in ("critic", "ema", "none"):
        cfg = MaskGANConfig(batch_size=8, baseline=baseline)  # type: ignore[arg-type]
        trainers.append(
            MaskGAN(InfillModel(v, 8, 8), TokenDiscriminator(v, 8, 8), oracle.train, cfg)
        )
    for tr in trainers:
        tr.step()  # outside the guard: creates the optimisers' state
    with on_input_device_only() as strays:
        for tr in trainers:
            stats = tr.step()
            assert all(math.isfinite(x) for x in stats.values())
    assert strays == []


def test_scatter_means_equals_the_rust_kernel() -> None:
    # mc_rewards' on-device path (used for non-CPU samples) against lmobjectives.rl
    import numpy as np

    from lmobjectives import rl
    from lmobjectives.torch.gan.seqgan import _scatter_means

    b, length, k = 5, 6, 3
    plan = rl.rollout_plan(np.full(b, length, dtype=np.int64), k)
    g = np.random.default_rng(0)
    scores, final = g.random(len(plan.sample)), g.random(b)
    keep = np.ones(len(plan.sample), dtype=bool)
    want = rl.rollout_rewards(scores, plan, final, seq_len=length)
    got = _scatter_means(
        torch.from_numpy(scores), plan, keep, torch.from_numpy(final), b, length, k
    )
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)


def test_maskgan_returns_torch_path_equals_the_rust_kernel() -> None:
    from lmobjectives.torch import rl_reference
    from lmobjectives.torch.gan.maskgan import maskgan_returns

    g = torch.Generator().manual_seed(0)
    r = torch.randn(4, 7, generator=g)
    missing = torch.rand(4, 7, generator=g) < 0.5
    rr = torch.where(missing, r.double(), torch.zeros_like(r, dtype=torch.float64))
    torch_path = rl_reference.discounted_returns(rr, torch.ones_like(missing), 0.9).float()
    torch.testing.assert_close(maskgan_returns(r, missing, 0.9), torch_path)


@pytest.mark.parametrize("whiten", [True, False])
def test_ppo_torch_fallback_equals_the_rust_kernels(whiten: bool) -> None:
    # ppo_step's bookkeeping for non-CPU tensors (rl_reference), run on the CPU
    from lmobjectives.torch.rl import _ppo_advantages

    g = torch.Generator().manual_seed(5)
    b, t = 6, 9
    mask = torch.zeros(b, t, dtype=torch.bool)
    for i, start in enumerate([2, 3, 3, 4, 5, 1]):
        mask[i, start : t - (i % 3)] = True
    old_lp, ref = -torch.rand(b, t, generator=g), -torch.rand(b, t, generator=g)
    old_v, scores = torch.randn(b, t, generator=g), torch.randn(b, generator=g)
    args = (scores, mask, old_lp, old_v, ref, 0.05, 0.99, 0.95, whiten)
    kernels = _ppo_advantages(*args, kernels=True)
    fallback = _ppo_advantages(*args, kernels=False)
    for a, f in zip(kernels, fallback, strict=True):
        torch.testing.assert_close(f.float() * mask, a.float() * mask, rtol=1e-5, atol=1e-5)


# -- torch.compile -------------------------------------------------------------------------------


def test_losses_compile_fullgraph_and_match_eager() -> None:
    # fullgraph=True fails on any graph break (a host read, a data-dependent shape); the
    # aot_eager backend traces forward and backward like inductor but skips code generation,
    # which would cost ~90 s of CI on a busy 2-core machine for no extra evidence of this.
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(2)
    q, p = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    dup = torch.tensor([0, 1, 2, 2, 3, 4, 5, 6])
    nce = torch.compile(
        lambda a, b: info_nce_loss(a, b, duplicates=dup, symmetric=True),
        fullgraph=True,
        backend="aot_eager",
    )
    torch.testing.assert_close(nce(q, p), info_nce_loss(q, p, duplicates=dup, symmetric=True))
    logits = torch.randn(2, 5, 10, generator=g)
    labels = torch.tensor([[1, -100, 3, -100, 9], [-100, -100, 0, 4, -100]])
    mlm = torch.compile(masked_lm_loss, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(mlm(logits, labels), masked_lm_loss(logits, labels))
    compact = logits[labels != -100]
    torch.testing.assert_close(mlm(compact, labels), masked_lm_loss(compact, labels))


@pytest.mark.parametrize("negatives", ["batch", "time", "all"])
def test_cpc_loss_compiles_fullgraph_with_a_mask(negatives: str) -> None:
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(3)
    z, c, w = (torch.randn(*s, generator=g) for s in ((3, 7, 4), (3, 7, 5), (2, 4, 5)))
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 4:] = mask[2, 2:] = False

    def f(z: torch.Tensor, c: torch.Tensor, w: torch.Tensor) -> Any:
        return cpc_loss(z, c, w, negatives=negatives, mask=mask, return_accuracy=True)  # type: ignore[arg-type]

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    for got, want in zip(compiled(z, c, w), f(z, c, w), strict=True):
        torch.testing.assert_close(got, want)


def test_fixed_size_heads_compile_fullgraph_and_match_eager() -> None:
    torch._dynamo.reset()
    ids, labels, hidden = _mlm_inputs()
    head = MLMHead(16, 20, max_predictions=5)
    for got, want in zip(
        torch.compile(head, fullgraph=True, backend="aot_eager")(hidden, labels),
        head(hidden, labels),
        strict=True,
    ):
        torch.testing.assert_close(got, want)
    rtd = _electra(max_predictions=5)
    compiled = torch.compile(rtd, fullgraph=True, backend="aot_eager")
    # the global RNG: dynamo does not take a torch.Generator argument without a graph break
    torch.manual_seed(7)
    got = compiled(ids, labels)
    torch.manual_seed(7)
    want = rtd(ids, labels)
    torch.testing.assert_close(got.loss, want.loss)
    assert torch.equal(got.corrupted_ids, want.corrupted_ids)


def test_the_default_heads_do_not_compile_fullgraph() -> None:
    # the control of the test above: the boolean selection breaks the graph
    torch._dynamo.reset()
    _, labels, hidden = _mlm_inputs()
    with pytest.raises(Exception, match=r"(?i)data.dependent|dynamic|nonzero|graph break"):
        torch.compile(MLMHead(16, 20), fullgraph=True, backend="aot_eager")(hidden, labels)


@pytest.mark.parametrize("include_eos", [True, False])
def test_completion_mask_torch_path_equals_the_rust_kernel_without_a_sync(
    monkeypatch, include_eos: bool
) -> None:
    # rl_reference.completion_mask set its first-EOS column with a boolean index (a sync)
    from lmobjectives import rl
    from lmobjectives.torch import rl_reference

    g = torch.Generator().manual_seed(6)
    ids = torch.randint(3, 9, (7, 10), generator=g)
    ids[0, 4] = ids[1, 0] = ids[2, 9] = ids[3, 2] = ids[3, 6] = 2  # rows 4-6: no EOS
    ids[5, 3] = 1
    want = rl.completion_mask(ids.numpy(), [2, 1], include_eos=include_eos)
    with no_host_sync(monkeypatch):
        mask, last, truncated = rl_reference.completion_mask(ids, [2, 1], include_eos=include_eos)
    assert torch.equal(mask, torch.from_numpy(want.mask))
    assert torch.equal(last, torch.from_numpy(want.last))
    assert torch.equal(truncated, torch.from_numpy(want.truncated))
    assert truncated.tolist() == [False] * 4 + [True, False, True]  # rows 4 and 6: no EOS
