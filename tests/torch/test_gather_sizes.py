"""``info_nce_loss(gather=True, batch_sizes=...)`` (issue 19): with the ranks' batch sizes
given, a gathered call exchanges no sizes and reads no tensor on the host, and gives the same
loss and gradients as the exchange; wrong sizes are a typed error. Two gloo processes."""

from __future__ import annotations

import pytest
import torch

SIZES = [3, 5]


def _worker(rank: int, world: int, init: str, out_dir: str) -> None:
    import torch.distributed as dist
    from torch.overrides import TorchFunctionMode

    from lmobjectives import InvalidArgumentError
    from lmobjectives.torch import info_nce_loss

    reads = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__int__, torch.Tensor.__bool__}

    class NoHostRead(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            if func in reads:
                raise AssertionError(f"host read: {func.__name__}")
            return func(*args, **(kwargs or {}))

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        g = torch.Generator().manual_seed(rank)
        q = torch.randn(SIZES[rank], 8, generator=g, requires_grad=True)
        p = torch.randn(SIZES[rank], 8, generator=g, requires_grad=True)
        exchanged = info_nce_loss(q, p, gather=True, symmetric=True)
        (gq,) = torch.autograd.grad(exchanged, q)
        with NoHostRead():
            given = info_nce_loss(q, p, gather=True, symmetric=True, batch_sizes=SIZES)
            (gq2,) = torch.autograd.grad(given, q)
        control = ""
        try:
            with NoHostRead():
                info_nce_loss(q, p, gather=True)  # exchanges the sizes: reads them
        except AssertionError as e:
            control = str(e)
        error = ""
        try:
            info_nce_loss(q, p, gather=True, batch_sizes=[SIZES[rank], SIZES[rank], 1])
        except InvalidArgumentError as e:
            error = str(e)
        torch.save(
            {
                "same_loss": bool(torch.equal(exchanged.detach(), given.detach())),
                "same_grad": bool(torch.equal(gq, gq2)),
                "control": control,
                "error": error,
            },
            f"{out_dir}/rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_given_batch_sizes_skip_the_exchange(tmp_path) -> None:
    # cost: two spawned processes, about 10 s
    import torch.multiprocessing as mp

    init = f"file://{tmp_path}/rendezvous"
    mp.spawn(_worker, args=(2, init, str(tmp_path)), nprocs=2, join=True)
    for r in range(2):
        got = torch.load(tmp_path / f"rank{r}.pt")
        assert got["same_loss"] and got["same_grad"]
        assert got["control"].startswith("host read")  # the exchange does read on the host
        assert got["error"].startswith("batch_sizes:")
