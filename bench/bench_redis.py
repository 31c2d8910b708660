"""The plain redis-py list queue (LPUSH / BRPOP, one round trip per message each side),
measured the way bench_redis.c measures multiproc's Redis queue.

Usage: bench_redis.py <port> <size> <count>
Prints "msgs_per_s=<n>". A producer process LPUSHes <count> messages of <size> bytes (the
first 16 bytes are (producer, sequence, stamp), the last 8 repeat the stamp); this process
BRPOPs them, checking the count, the order and every stamp. The clock runs from the first
message received to the last, as in the C benchmark. Every wait is bounded (10 s).
"""
import multiprocessing as mp
import struct
import sys
import time

import redis

HDR = struct.Struct("<IIQ")


def stamp(producer, seq):
    return (seq * 0x9E3779B97F4A7C15 ^ (producer + 1) * 0xC2B2AE3D27D4EB4F) & 0xFFFFFFFFFFFFFFFF


def produce(port, key, count, size):
    r = redis.Redis(port=port)
    pad = bytes(size - HDR.size - 8)
    for seq in range(count):
        s = stamp(0, seq)
        r.lpush(key, HDR.pack(0, seq, s) + pad + struct.pack("<Q", s))


def main():
    port, size, count = (int(a) for a in sys.argv[1:4])
    key = "bench-list-%d" % time.monotonic_ns()
    r = redis.Redis(port=port)
    r.delete(key)
    p = mp.Process(target=produce, args=(port, key, count, size))
    p.start()
    start = None
    for expected in range(count):
        got = r.brpop(key, timeout=10)
        if got is None:
            sys.exit("timed out waiting for message %d" % expected)
        if start is None:
            start = time.monotonic()
        m = got[1]
        producer, seq, s = HDR.unpack_from(m)
        if len(m) != size or producer != 0 or seq != expected or s != stamp(0, seq) or \
                struct.unpack_from("<Q", m, size - 8)[0] != s:
            sys.exit("corrupt or out-of-order message %d" % expected)
    elapsed = time.monotonic() - start
    p.join(10)
    r.delete(key)
    print("msgs_per_s=%.1f" % ((count - 1) / elapsed))


if __name__ == "__main__":
    main()
