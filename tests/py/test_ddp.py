"""DistributedDataParallel: two CPU processes (gloo) train a blfft model; replicas stay equal."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as tnn

WORLD = 2
STEPS = 4


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model():
    import blfft

    torch.manual_seed(0)
    model = tnn.Sequential(
        tnn.Conv2d(3, 8, 3, padding=1),
        tnn.ReLU(),
        tnn.Conv2d(8, 8, 3, stride=2, padding=1),
        tnn.ReLU(),
        tnn.AdaptiveAvgPool2d(1),
        tnn.Flatten(),
        tnn.Linear(8, 4),
    )
    return blfft.convert(model, compress_rate=0.5)


def _worker(rank: int, port: int, out_dir: str) -> None:
    import blfft

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    blfft.set_num_threads(1)  # two processes on two cores
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        model = _model()
        initial = [p.detach().clone() for p in model.parameters()]
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
        gen = torch.Generator().manual_seed(100 + rank)  # each rank sees different data
        for _ in range(STEPS):
            x = torch.randn(4, 3, 12, 12, generator=gen)
            target = torch.randint(0, 4, (4,), generator=gen)
            opt.zero_grad()
            loss = tnn.functional.cross_entropy(ddp(x), target)
            loss.backward()
            opt.step()
        assert isinstance(model[0], blfft.nn.Conv2d)
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        moved = max(
            (p.detach() - q).abs().max().item() for p, q in zip(model.parameters(), initial)
        )
        torch.save({"flat": flat, "moved": moved}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_replicas_stay_equal(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    assert r0["moved"] > 1e-3  # training did something
    assert torch.equal(r0["flat"], r1["flat"])  # and the replicas agree exactly
