"""Python peers for bench_process: Process start+join (fork, spawn) and Pipe round trips.
Prints key=value medians in microseconds. Run by bench_process with Debian's python3."""
import multiprocessing as mp
import statistics
import sys
import time


def nothing():
    pass


def echo(conn):
    # A fork child also holds the parent's end, so EOF never comes: stop on b"".
    while True:
        msg = conn.recv_bytes()
        if not msg:
            return
        conn.send_bytes(msg)


def start_join_us(ctx, n):
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        p = ctx.Process(target=nothing)
        p.start()
        p.join()
        assert p.exitcode == 0
        samples.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(samples)


def pingpong_us(pings, size):
    ctx = mp.get_context("fork")
    a, b = ctx.Pipe()
    p = ctx.Process(target=echo, args=(b,))
    p.start()
    b.close()
    t0 = time.perf_counter()
    for i in range(pings):
        msg = i.to_bytes(4, "little") + bytes([i & 0xFF]) * (size - 4)
        a.send_bytes(msg)
        assert a.recv_bytes() == msg
    us = (time.perf_counter() - t0) * 1e6 / pings
    a.send_bytes(b"")
    a.close()
    p.join()
    return us


if __name__ == "__main__":
    starts, pings, size = (int(x) for x in sys.argv[1:4])
    fork_us = start_join_us(mp.get_context("fork"), starts)
    spawn_us = start_join_us(mp.get_context("spawn"), max(20, starts // 4))
    rtts = [pingpong_us(pings, size) for _ in range(3)]
    print(f"fork_us={fork_us:.1f} spawn_us={spawn_us:.1f} pipe_rtt_us={statistics.median(rtts):.2f}")
