"""Python peer of bench_process.c: Process start+join with a given start method.

    bench_process.py start <fork|spawn|forkserver> <n>   median microseconds of n starts
"""
import multiprocessing as mp
import time

import benchutil


def nothing():
    pass


def start(method, n):
    ctx = mp.get_context(method)

    def one():
        t0 = time.perf_counter()
        p = ctx.Process(target=nothing)
        p.start()
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"child exit code {p.exitcode}")
        return (time.perf_counter() - t0) * 1e6

    one()  # warm-up: imports, the forkserver's start, page cache
    return benchutil.median_of(int(n), one)


if __name__ == "__main__":
    benchutil.run({"start": start})
