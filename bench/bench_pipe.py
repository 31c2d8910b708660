"""Python peer of bench_pipe.c: Pipe round trips to an echoing child.

    bench_pipe.py rtt <pings> <size>   microseconds per round trip, every reply checked
"""
import multiprocessing as mp
import time

import benchutil


def echo(conn):
    # A fork child also holds the parent's end, so EOF never comes: stop on b"".
    while True:
        msg = conn.recv_bytes()
        if not msg:
            return
        conn.send_bytes(msg)


def rtt(pings, size):
    pings, size = int(pings), int(size)
    ctx = mp.get_context("fork")
    a, b = ctx.Pipe()
    p = ctx.Process(target=echo, args=(b,))
    p.start()
    b.close()
    t0 = time.perf_counter()
    for i in range(pings):
        msg = i.to_bytes(4, "little") + bytes([i & 0xFF]) * (size - 4)
        a.send_bytes(msg)
        if a.recv_bytes() != msg:
            raise SystemExit(f"round trip {i}: the echo differs")
    us = (time.perf_counter() - t0) * 1e6 / pings
    a.send_bytes(b"")
    a.close()
    p.join()
    return us


if __name__ == "__main__":
    benchutil.run({"rtt": rtt})
