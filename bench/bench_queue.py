"""Python peer of bench_queue.c: multiprocessing.Queue, measured the way the C peers are.

    bench_queue.py rate <size> <count per producer> <producers>   messages per second

The producers start, meet the consumer (this process) at a barrier, and put their
messages; the clock runs from the barrier to the last message, every one of which is
checked (size, each producer's order, a stamp at both ends); the producers are joined after.
"""
import multiprocessing as mp
import time

import benchutil


def produce(q, barrier, producer, count, size):
    pad = bytes(size - benchutil.HDR.size - benchutil.TAIL.size)
    barrier.wait()
    for seq in range(count):
        q.put(benchutil.message(producer, seq, pad))


def rate(size, count, producers):
    size, count, producers = int(size), int(count), int(producers)
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    barrier = ctx.Barrier(producers + 1)
    procs = [ctx.Process(target=produce, args=(q, barrier, i, count, size))
             for i in range(producers)]
    for p in procs:
        p.start()
    checker = benchutil.Checker(producers, size)
    total = count * producers
    barrier.wait()
    t0 = time.perf_counter()
    for _ in range(total):
        checker.check(q.get())
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"a producer exited with {p.exitcode}")
    return total / elapsed


if __name__ == "__main__":
    benchutil.run({"rate": rate})
