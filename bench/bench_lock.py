"""Python's threading.Lock, measured the way bench_lock.c measures mp_lock.

Prints "uncontended_ns=<ns per acquire+release> contended_ns=<ns per acquire+release>":
uncontended is one thread in a loop; contended is two threads sharing the lock, total time
divided by the total number of acquire+release pairs. Median of several runs each.
"""
import statistics
import threading
import time

UNCONTENDED = 1_000_000
CONTENDED = 200_000  # per thread
RUNS = 5


def uncontended():
    lock = threading.Lock()
    acquire, release = lock.acquire, lock.release
    start = time.perf_counter_ns()
    for _ in range(UNCONTENDED):
        acquire()
        release()
    return (time.perf_counter_ns() - start) / UNCONTENDED


def contended():
    lock = threading.Lock()

    def work():
        acquire, release = lock.acquire, lock.release
        for _ in range(CONTENDED):
            acquire()
            release()

    threads = [threading.Thread(target=work) for _ in range(2)]
    start = time.perf_counter_ns()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (time.perf_counter_ns() - start) / (2 * CONTENDED)


if __name__ == "__main__":
    u = statistics.median(uncontended() for _ in range(RUNS))
    c = statistics.median(contended() for _ in range(RUNS))
    print(f"uncontended_ns={u:.1f} contended_ns={c:.1f}")
