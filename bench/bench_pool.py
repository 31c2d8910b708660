"""Python peer of bench_pool.c.

    bench_pool.py map pool <n> <chunksize>       Pool(2).map over x*x: tasks per second
    bench_pool.py map executor <n> <chunksize>   ProcessPoolExecutor(2).map: tasks per second
    bench_pool.py startstop <k>                  Pool(2) start-up + one task + shutdown: median ms

chunksize 0 is the default: Pool's own rule, which the executor row uses too (its own
default is 1). Each run makes a pool, warms it, times one map and checks every result.
"""
import concurrent.futures as cf
import multiprocessing as mp
import time

import benchutil


def square(x):
    return x * x


def timed_map(fn, n):
    t0 = time.perf_counter()
    out = list(fn(range(n)))
    rate = n / (time.perf_counter() - t0)
    if out != [x * x for x in range(n)]:
        raise SystemExit("a result is wrong")
    return rate


def map_rate(kind, n, chunksize):
    n, chunksize = int(n), int(chunksize) or -(-int(n) // (2 * 4))
    ctx = mp.get_context("fork")
    if kind == "pool":
        with ctx.Pool(2) as p:
            p.map(square, range(100))  # workers up and warm
            return timed_map(lambda xs: p.map(square, xs, chunksize), n)
    with cf.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        list(ex.map(square, range(100)))
        return timed_map(lambda xs: ex.map(square, xs, chunksize=chunksize), n)


def start_stop_ms(k):
    def one():
        t0 = time.perf_counter()
        p = mp.get_context("fork").Pool(2)
        if p.apply(square, (3,)) != 9:
            raise SystemExit("a result is wrong")
        p.close()
        p.join()
        return (time.perf_counter() - t0) * 1e3

    return benchutil.median_of(int(k), one)


if __name__ == "__main__":
    benchutil.run({"map": map_rate, "startstop": start_stop_ms})
