#!/usr/bin/python3
"""Times a sharded RMSNorm forward+backward over torch.distributed (gloo, 127.0.0.1) against
the alternative users have today (all-gather the activation, norm the whole row locally, keep
this rank's columns) and against the unsharded norm in one process (issue 14).

    RMSNORM_TORCH_LIBRARY=build/torch/librmsnorm_torch.so PYTHONPATH=python \\
        /usr/bin/python3 scripts/bench_distributed.py --world 2 4 --rows 4096 --hidden 8192 --reps 10

Prints, per world size, medians over --reps interleaved repetitions (after one warm-up) of each
rank's wall time and, for the sharded norm, the part spent communicating, plus the bytes each
rank sends. Every rank's result is first checked against the all-gather result.
"""
import argparse
import io
import queue as queue_module
import socket
import statistics
import time
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, args, results):
    import rmsnorm
    import rmsnorm.distributed as rd

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=600))
    try:
        widths = rd.even_split(args.hidden, world)
        begin = sum(widths[:rank])
        g = torch.Generator().manual_seed(rank)
        x_local = torch.randn(args.rows, widths[rank], generator=g)
        dy_local = torch.randn(args.rows, widths[rank], generator=g)
        weight = torch.ones(args.hidden)
        norm = rd.ShardedRMSNorm(args.hidden, eps=1e-6)

        communication = [0.0]
        sent = [0]
        original = rd._sum_in_rank_order

        def timed_sum(sums, group):
            start = time.perf_counter()
            out = original(sums, group)
            communication[0] += time.perf_counter() - start
            sent[0] += sums.numel() * sums.element_size()
            return out

        rd._sum_in_rank_order = timed_sum

        def sharded():
            x = x_local.clone().requires_grad_()
            y = norm(x)
            y.backward(dy_local)
            return y.detach(), x.grad

        def gather(t):
            parts = [torch.empty(args.rows, w) for w in widths]
            dist.all_gather(parts, t.contiguous())
            return torch.cat(parts, dim=1)

        def all_gather_norm():
            start = time.perf_counter()
            x = gather(x_local).requires_grad_()
            dy = gather(dy_local)
            comm = time.perf_counter() - start
            y = rmsnorm.rms_norm(x, [args.hidden], weight, eps=1e-6)
            y.backward(dy)
            return y.detach()[:, begin:begin + widths[rank]], x.grad[:, begin:begin + widths[rank]], comm

        y1, dx1 = sharded()
        y2, dx2, _ = all_gather_norm()
        torch.testing.assert_close(y1, y2, rtol=3e-5, atol=1e-5)
        torch.testing.assert_close(dx1, dx2, rtol=3e-5, atol=1e-5)

        times = {"sharded": [], "sharded_comm": [], "allgather": [], "allgather_comm": []}
        for _ in range(args.reps):
            dist.barrier()
            communication[0] = 0.0
            sent[0] = 0
            start = time.perf_counter()
            sharded()
            times["sharded"].append(time.perf_counter() - start)
            times["sharded_comm"].append(communication[0])
            sharded_bytes = sent[0] * (world - 1)  # all-gather: each rank's sums go to every other rank
            dist.barrier()
            start = time.perf_counter()
            _, _, comm = all_gather_norm()
            times["allgather"].append(time.perf_counter() - start)
            times["allgather_comm"].append(comm)
        allgather_bytes = 2 * args.rows * widths[rank] * 4 * (world - 1)
        buffer = io.BytesIO()
        torch.save({k: statistics.median(v) for k, v in times.items()} |
                   {"sharded_bytes": sharded_bytes, "allgather_bytes": allgather_bytes}, buffer)
        results.put((rank, buffer.getvalue(), None))
    except Exception as e:  # noqa: BLE001
        results.put((rank, None, repr(e)))
    finally:
        dist.destroy_process_group()


def _unsharded(args):
    import rmsnorm

    torch.set_num_threads(1)
    x0 = torch.randn(args.rows, args.hidden)
    dy = torch.randn(args.rows, args.hidden)
    weight = torch.ones(args.hidden)
    samples = []
    for _ in range(args.reps + 1):
        x = x0.clone().requires_grad_()
        start = time.perf_counter()
        rmsnorm.rms_norm(x, [args.hidden], weight, eps=1e-6).backward(dy)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples[1:])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--hidden", type=int, default=8192)
    parser.add_argument("--reps", type=int, default=10)
    args = parser.parse_args()
    print(f"rows x hidden = {args.rows} x {args.hidden}, float32, RMSNorm forward+backward, 1 thread per process, "
          f"medians of {args.reps}")
    print(f"unsharded, one process: {_unsharded(args) * 1e3:.1f} ms")
    for world in args.world:
        context = mp.get_context("spawn")
        results = context.Queue()
        port = _free_port()
        processes = [context.Process(target=_worker, args=(r, world, port, args, results)) for r in range(world)]
        for p in processes:
            p.start()
        per_rank = {}
        try:
            for _ in range(world):
                rank, value, error = results.get(timeout=1800)
                if error:
                    raise SystemExit(f"rank {rank}: {error}")
                per_rank[rank] = torch.load(io.BytesIO(value))
        except queue_module.Empty:
            raise SystemExit("no answer from every rank in 30 minutes")
        finally:
            for p in processes:
                p.join(timeout=60)
                if p.is_alive():
                    p.kill()
        slowest = max(per_rank.values(), key=lambda r: r["sharded"])
        gathered = max(per_rank.values(), key=lambda r: r["allgather"])
        print(f"{world} processes: sharded {slowest['sharded'] * 1e3:.1f} ms "
              f"(communication {slowest['sharded_comm'] * 1e3:.1f} ms, sends {slowest['sharded_bytes'] / 1e3:.0f} kB); "
              f"all-gather {gathered['allgather'] * 1e3:.1f} ms (communication {gathered['allgather_comm'] * 1e3:.1f} ms, "
              f"sends {gathered['allgather_bytes'] / 1e6:.0f} MB); "
              f"all-gather / sharded time {gathered['allgather'] / slowest['sharded']:.2f}x, "
              f"bytes {gathered['allgather_bytes'] / slowest['sharded_bytes']:.0f}x")


if __name__ == "__main__":
    main()
