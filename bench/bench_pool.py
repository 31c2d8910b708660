"""Python peers for bench_pool: Pool(2).map and ProcessPoolExecutor(2).map over N trivial
tasks (x*x) with chunksize 1 and with the default, plus Pool(2) start-up + shutdown.
Prints key=value: tasks per second, and milliseconds for the start-up. Every result is
checked. Run by bench_pool with Debian's python3."""
import concurrent.futures as cf
import multiprocessing as mp
import statistics
import sys
import time


def square(x):
    return x * x


def check(out, n):
    assert list(out) == [x * x for x in range(n)]


def pool_rate(n, chunksize, rounds):
    """Median tasks/s of `rounds` maps on one warm Pool(2)."""
    rates = []
    with mp.get_context("fork").Pool(2) as p:
        p.map(square, range(100))  # workers up and warm
        for _ in range(rounds):
            t0 = time.perf_counter()
            out = p.map(square, range(n), chunksize) if chunksize else p.map(square, range(n))
            rates.append(n / (time.perf_counter() - t0))
            check(out, n)
    return statistics.median(rates)


def ppe_rate(n, chunksize, rounds):
    rates = []
    with cf.ProcessPoolExecutor(2, mp_context=mp.get_context("fork")) as ex:
        list(ex.map(square, range(100)))
        for _ in range(rounds):
            t0 = time.perf_counter()
            out = list(ex.map(square, range(n), chunksize=chunksize or 1))
            rates.append(n / (time.perf_counter() - t0))
            check(out, n)
    return statistics.median(rates)


def start_stop_ms(rounds):
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        p = mp.get_context("fork").Pool(2)
        p.apply(square, (3,))
        p.close()
        p.join()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


if __name__ == "__main__":
    n, rounds = int(sys.argv[1]), int(sys.argv[2])
    # ProcessPoolExecutor.map's default chunksize is 1; its "default" row uses Pool's rule.
    default = -(-n // (2 * 4))
    slow = max(1, rounds // 2)  # the chunksize-1 peers take seconds per run
    print(f"pool_c1={pool_rate(n, 1, slow):.0f} pool_def={pool_rate(n, 0, rounds):.0f} "
          f"ppe_c1={ppe_rate(n, 1, slow):.0f} ppe_def={ppe_rate(n, default, rounds):.0f} "
          f"start_ms={start_stop_ms(rounds):.1f}")
