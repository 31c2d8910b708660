"""Python peer of bench_lock.c: threading.Lock, nanoseconds per acquire+release.

    bench_lock.py uncontended <n>   one thread, n pairs
    bench_lock.py contended <n>     two threads, n pairs each; total time / (2n)
"""
import threading
import time

import benchutil


def uncontended(n):
    n = int(n)
    lock = threading.Lock()
    acquire, release = lock.acquire, lock.release
    start = time.perf_counter_ns()
    for _ in range(n):
        acquire()
        release()
    return (time.perf_counter_ns() - start) / n


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


if __name__ == "__main__":
    benchutil.run({"uncontended": uncontended, "contended": contended})
