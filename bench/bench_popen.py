"""Python peer of bench_popen.c: spawn+wait of a trivial program with subprocess.run.

Usage: python3 bench_popen.py <iterations> <program>; prints "median_us=<x> n=<n>"."""
import statistics
import subprocess
import sys
import time


def main():
    n = int(sys.argv[1])
    prog = sys.argv[2]
    for _ in range(10):  # warm-up: imports, page cache, the child's first exec
        subprocess.run([prog])
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([prog])
        samples.append((time.perf_counter() - t0) * 1e6)
    print(f"median_us={statistics.median(samples):.1f} n={n}")


if __name__ == "__main__":
    main()
