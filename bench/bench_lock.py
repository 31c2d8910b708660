"""Python peer of bench_lock.c: threading.Lock, and multiprocessing.Lock / Semaphore,
nanoseconds per acquire+release.

    bench_lock.py uncontended <n>           one thread, n pairs
    bench_lock.py contended <n>             two threads, n pairs each; total time / (2n)
    bench_lock.py mp_lock_uncontended <n>   multiprocessing.Lock, one process
    bench_lock.py mp_sem_uncontended <n>    multiprocessing.Semaphore(1), one process
    bench_lock.py mp_lock_contended <n>     two forked processes counting under one
                                            multiprocessing.Lock (checked), n pairs each
"""
import multiprocessing
import threading
import time

import benchutil


def pairs(lock, n):
    acquire, release = lock.acquire, lock.release
    start = time.perf_counter_ns()
    for _ in range(n):
        acquire()
        release()
    return (time.perf_counter_ns() - start) / n


def uncontended(n):
    return pairs(threading.Lock(), int(n))


def contended(n):
    n = int(n)
    lock = threading.Lock()

    def work():
        acquire, release = lock.acquire, lock.release
        for _ in range(n):
            acquire()
            release()

    threads = [threading.Thread(target=work) for _ in range(2)]
    start = time.perf_counter_ns()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (time.perf_counter_ns() - start) / (2 * n)


def mp_lock_uncontended(n):
    return pairs(multiprocessing.Lock(), int(n))


def mp_sem_uncontended(n):
    return pairs(multiprocessing.Semaphore(1), int(n))


def count_under(lock, counter, n):
    acquire, release = lock.acquire, lock.release
    for _ in range(n):
        acquire()
        counter.value += 1
        release()


def mp_lock_contended(n):
    n = int(n)
    ctx = multiprocessing.get_context("fork")
    lock, counter = ctx.Lock(), ctx.RawValue("q", 0)
    procs = [ctx.Process(target=count_under, args=(lock, counter, n)) for _ in range(2)]
    start = time.perf_counter_ns()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    ns = (time.perf_counter_ns() - start) / (2 * n)
    if counter.value != 2 * n:
        raise RuntimeError(f"lost updates: {counter.value} of {2 * n}")
    return ns


if __name__ == "__main__":
    benchutil.run({"uncontended": uncontended, "contended": contended,
                   "mp_lock_uncontended": mp_lock_uncontended,
                   "mp_sem_uncontended": mp_sem_uncontended,
                   "mp_lock_contended": mp_lock_contended})
