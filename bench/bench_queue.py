"""Python's multiprocessing.Queue, measured the way bench_queue.c measures mp_queue.

Usage: bench_queue.py <size> <count per producer> <producers>
Prints "msgs_per_s=<n> mb_per_s=<n>". Each message is a bytes object of <size> bytes whose
first 16 bytes are (producer id, sequence, stamp) and whose last 8 repeat the stamp; the
consumer (this process) checks the count, each producer's order and every stamp. The clock
runs from the first message received to the last, as in the C benchmark.
"""
import multiprocessing as mp
import struct
import sys
import time

HDR = struct.Struct("<IIQ")


def stamp(producer, seq):
    return (seq * 0x9E3779B97F4A7C15 ^ (producer + 1) * 0xC2B2AE3D27D4EB4F) & 0xFFFFFFFFFFFFFFFF


def make(producer, seq, size, pad):
    s = stamp(producer, seq)
    return HDR.pack(producer, seq, s) + pad + struct.pack("<Q", s)


def produce(q, producer, count, size):
    pad = bytes(size - HDR.size - 8)
    for seq in range(count):
        q.put(make(producer, seq, size, pad))


def main():
    size, count, producers = (int(a) for a in sys.argv[1:4])
    q = mp.Queue()
    procs = [mp.Process(target=produce, args=(q, i, count, size)) for i in range(producers)]
    for p in procs:
        p.start()
    expected = [0] * producers
    total = count * producers
    start = None
    for _ in range(total):
        m = q.get()
        if start is None:
            start = time.perf_counter()
        producer, seq, s = HDR.unpack_from(m)
        if (len(m) != size or producer >= producers or seq != expected[producer]
                or s != stamp(producer, seq) or m[-8:] != struct.pack("<Q", s)):
            sys.exit("corrupt or out-of-order message")
        expected[producer] += 1
    elapsed = time.perf_counter() - start
    for p in procs:
        p.join()
    rate = (total - 1) / elapsed
    print(f"msgs_per_s={rate:.1f} mb_per_s={rate * size / 1e6:.1f}")


if __name__ == "__main__":
    main()
