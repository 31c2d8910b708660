"""Python's threading.Lock, measured the way bench_lock.c measures mp_lock, and
multiprocessing.Lock / Semaphore the way it measures mp_plock / mp_psem.

Prints "uncontended_ns=<ns per acquire+release> contended_ns=<ns per acquire+release>":
uncontended is one thread in a loop; contended is two threads sharing the lock, total time
divided by the total number of acquire+release pairs. Median of several runs each. Then
mp_lock_uncontended_ns, mp_lock_contended_ns (two forked processes counting under the lock
in a RawValue, checked) and mp_sem_uncontended_ns.
"""
import multiprocessing
import statistics
import threading
import time

UNCONTENDED = 1_000_000
CONTENDED = 200_000  # per thread
RUNS = 5


def uncontended(lock):
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


P_CONTENDED = 100_000  # per process


def count_under(lock, counter):
    acquire, release = lock.acquire, lock.release
    for _ in range(P_CONTENDED):
        acquire()
        counter.value += 1
        release()


def mp_contended():
    ctx = multiprocessing.get_context("fork")
    lock, counter = ctx.Lock(), ctx.RawValue("q", 0)
    procs = [ctx.Process(target=count_under, args=(lock, counter)) for _ in range(2)]
    start = time.perf_counter_ns()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    ns = (time.perf_counter_ns() - start) / (2 * P_CONTENDED)
    assert counter.value == 2 * P_CONTENDED
    return ns


if __name__ == "__main__":
    u = statistics.median(uncontended(threading.Lock()) for _ in range(RUNS))
    c = statistics.median(contended() for _ in range(RUNS))
    mu = statistics.median(uncontended(multiprocessing.Lock()) for _ in range(RUNS))
    mc = statistics.median(mp_contended() for _ in range(RUNS))
    su = statistics.median(uncontended(multiprocessing.Semaphore(1)) for _ in range(RUNS))
    print(f"uncontended_ns={u:.1f} contended_ns={c:.1f} mp_lock_uncontended_ns={mu:.1f} "
          f"mp_lock_contended_ns={mc:.1f} mp_sem_uncontended_ns={su:.1f}")
