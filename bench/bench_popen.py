"""Python peer of bench_popen.c: spawn+wait of a trivial program with subprocess.run.

    bench_popen.py run <n> <program>   median microseconds of n runs (exit codes checked)
"""
import subprocess
import time

import benchutil


def run(n, prog):
    def one():
        t0 = time.perf_counter()
        subprocess.run([prog], check=True)
        return (time.perf_counter() - t0) * 1e6

    one()  # warm-up: imports, page cache, the child's first exec
    return benchutil.median_of(int(n), one)


if __name__ == "__main__":
    benchutil.run({"run": run})
