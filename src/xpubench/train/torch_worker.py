"""One torch DDP worker, started by torchrun: `python -m xpubench.train.torch_worker SPEC.pkl OUT_DIR`.

It learns its rank from the environment torchrun sets (RANK, WORLD_SIZE, MASTER_ADDR/PORT), trains the calo
GAN wrapped in DistributedDataParallel, times each step's phases, and writes OUT_DIR/rank{R}.json. A DDP comm
hook all-reduces each gradient bucket and waits for it: the all-reduce is timed bucket by bucket and is not
hidden behind the backward pass (the study's loop, an all-reduce after each gradient tape, does the same)."""

from __future__ import annotations

import datetime
import json
import os
import pickle
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _checksum(modules: list[Any]) -> float:
    import torch

    with torch.no_grad():
        return float(sum((p.double() * (1 + torch.arange(p.numel(), dtype=torch.float64).view(p.shape) % 7)).sum()
                         for m in modules for p in m.parameters()))


def main(spec_file: str, out_dir: str) -> None:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from xpubench.models.datasets import ENERGY_UNIT, generator_inputs
    from xpubench.train.feed import Feed, load_split, model_facts, sampling_fraction
    from xpubench.train.gan_torch import CaloDiscriminator, CaloGenerator
    from xpubench.train.validity import shower_distance

    spec = pickle.loads(Path(spec_file).read_bytes())
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    torch.set_num_threads(spec.threads)
    cuda = spec.device.startswith("cuda") and torch.cuda.is_available()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    dist.init_process_group("nccl" if cuda else "gloo",
                            timeout=datetime.timedelta(seconds=spec.collective_timeout_s))
    facts = model_facts(spec.model)
    split = load_split(facts)
    kw = facts.keywords
    cells, latent, width = tuple(kw["cells"]), kw["latent"], kw["width"]
    sampling = sampling_fraction(split)
    torch.manual_seed(spec.seed)  # the same initial weights everywhere (DDP broadcasts rank 0's anyway)
    generator = CaloGenerator(cells, latent, width).to(device)
    discriminator = CaloDiscriminator(cells, width).to(device)

    def validity() -> dict[str, Any]:
        z = torch.from_numpy(generator_inputs(split.y_test, latent, spec.seed + 1)).to(device)
        with torch.no_grad():
            fake = generator(z).cpu().numpy()
        return shower_distance(fake, np.asarray(split.x_test))

    untrained = validity() if rank == 0 else None
    buckets: list[float] = []
    bucket_bytes: list[int] = []  # the last step's bucket layout: the probe all-reduces the same buffers
    marks: list[tuple[float, float]] = []  # each bucket's all-reduce (start, end) in this step: its sync points

    def timed_allreduce(state, bucket):  # noqa: ANN001, ANN202 - DDP checks the annotations: none, or its own
        # Wait for each bucket's all-reduce here, so its time is its own and not overlapped with backward.
        begun = time.perf_counter()
        tensor = bucket.buffer()
        bucket_bytes.append(tensor.numel() * tensor.element_size())
        dist.all_reduce(tensor)
        tensor.div_(world)
        ended = time.perf_counter()
        buckets.append(ended - begun)
        marks.append((begun, ended))
        done: torch.futures.Future = torch.futures.Future()
        done.set_result(tensor)
        return done

    g_ddp, d_ddp = DDP(generator), DDP(discriminator)
    g_ddp.register_comm_hook(None, timed_allreduce)
    d_ddp.register_comm_hook(None, timed_allreduce)
    lr = spec.learning_rate or facts.learning_rate
    g_opt = torch.optim.RMSprop(generator.parameters(), lr=lr)
    d_opt = torch.optim.RMSprop(discriminator.parameters(), lr=lr)
    bce = torch.nn.BCEWithLogitsLoss()
    feed = Feed(spec, facts, split, rank, world)
    scale = ENERGY_UNIT * sampling

    phases: dict[str, list[float]] = {p: [] for p in ("input", "forward", "backward", "allreduce", "optimizer", "idle")}
    step_s: list[float] = []
    checksums: list[float] = []
    calls = 0
    first_step_s = 0.0
    total = spec.warmup + spec.steps
    last_end = previous_start = last_sync = 0.0
    # The work between one sync point (a bucket's all-reduce) and the next: at each, the workers wait for the
    # slowest of them, which the scaling model's straggler term estimates from these gaps' spread.
    sync_segments: list[list[float]] = []
    for step in range(total):
        if spec.fault is not None and spec.fault.rank == rank and spec.fault.step == step:
            os.kill(os.getpid(), signal.SIGKILL)
        t0 = time.perf_counter()
        real_np, z_np = feed.next()
        real, z = torch.from_numpy(real_np).to(device), torch.from_numpy(z_np).to(device)
        t1 = time.perf_counter()
        e = z[:, -1:]
        norm = (e * scale / 100.0).view(-1, 1, 1, 1)
        fake = g_ddp(z)
        d_logits = d_ddp(torch.cat([real / norm, fake.detach() / norm]), torch.cat([e, e]))
        labels = torch.cat([torch.ones(len(real), 1), torch.zeros(len(real), 1)]).to(device)
        d_loss = bce(d_logits, labels)
        g_logits = discriminator(fake / norm, e)  # the plain module: no reduction of D's grads for G's loss
        ratio = fake.sum(dim=(1, 2, 3)) / (e[:, 0] * scale)
        g_loss = bce(g_logits, torch.ones_like(g_logits)) + 10.0 * torch.mean((ratio - 1.0) ** 2)
        if cuda:
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        buckets.clear()
        bucket_bytes.clear()
        marks.clear()
        d_opt.zero_grad(set_to_none=True)
        g_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        torch.autograd.backward(g_loss, inputs=list(generator.parameters()))
        if cuda:
            torch.cuda.synchronize()
        t3 = time.perf_counter()
        d_opt.step()
        g_opt.step()
        if cuda:
            torch.cuda.synchronize()
        t4 = time.perf_counter()
        if step > spec.warmup:  # the previous step ends where this one starts
            phases["idle"].append(t0 - last_end)
            step_s.append(t0 - previous_start)
        if step >= spec.warmup:
            reduce_s = sum(buckets)
            for name, value in (("input", t1 - t0), ("forward", t2 - t1), ("backward", t3 - t2 - reduce_s),
                                ("allreduce", reduce_s), ("optimizer", t4 - t3)):
                phases[name].append(value)
            calls = len(buckets)
        elif step == 0:
            first_step_s = t4 - t0
        if step - spec.warmup < spec.checksums and step >= spec.warmup:
            checksums.append(_checksum([generator, discriminator]))
        if step > spec.warmup and marks:
            starts, ends = [m[0] for m in marks], [last_sync] + [m[1] for m in marks[:-1]]
            sync_segments.append([b - e for b, e in zip(starts, ends, strict=True)])
        if marks:
            last_sync = marks[-1][1]
        previous_start, last_end = t0, t4
    dist.barrier()  # the last step's idle: waiting for the slowest worker to finish it
    end = time.perf_counter()
    phases["idle"].append(end - last_end)
    step_s.append(end - previous_start)
    report = {
        "rank": rank,
        "phases": phases,
        "step_s": step_s,
        "first_step_s": first_step_s,
        "checksums": checksums,
        "allreduce_calls": calls,
        "allreduce_bucket_bytes": list(bucket_bytes),
        "sync_segments_s": sync_segments,
        "gradient_bytes": 4 * sum(p.numel() for m in (generator, discriminator) for p in m.parameters()),
        "parameters": sum(p.numel() for m in (generator, discriminator) for p in m.parameters()),
        "forward_split": "measured",
        "engine_version": f"torch {torch.__version__}, {dist.get_backend()}",
    }
    if rank == 0:
        report["validity"] = {**validity(), "untrained_distance": untrained["distance"]}  # type: ignore[index]
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(report))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])
