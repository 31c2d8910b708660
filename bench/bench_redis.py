"""The plain redis-py list queue (one LPUSH per put, one BRPOP per get: the usual Python
idiom), measured the way bench_redis.c measures multiproc's Redis queue.

    bench_redis.py rate <port> <size> <count>
A producer process LPUSHes <count> messages of <size> bytes (benchutil.message); this
process BRPOPs and checks every one (size, order, both stamps). The clock runs from the
producer's go to the last message checked, as in the C peers. Prints value=<msg/s>.
"""
import multiprocessing as mp
import time

import benchutil


def produce(port, key, barrier, count, size):
    import redis
    r = redis.Redis(port=port)
    pad = bytes(size - benchutil.HDR.size - benchutil.TAIL.size)
    barrier.wait()
    for seq in range(count):
        r.lpush(key, benchutil.message(0, seq, pad))


def rate(port, size, count):
    import redis
    port, size, count = int(port), int(size), int(count)
    key = "bench-list-%d" % time.monotonic_ns()
    r = redis.Redis(port=port)
    r.delete(key)
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(2)
    p = ctx.Process(target=produce, args=(port, key, barrier, count, size))
    p.start()
    checker = benchutil.Checker(1, size)
    barrier.wait()
    t0 = time.perf_counter()
    for _ in range(count):
        checker.check(r.brpop(key)[1])
    elapsed = time.perf_counter() - t0
    p.join()
    r.delete(key)
    if p.exitcode != 0:
        raise SystemExit(f"the producer exited with {p.exitcode}")
    return count / elapsed


if __name__ == "__main__":
    benchutil.run({"rate": rate})
