"""Shared code of the Python peers (see docs/benchmarks.md).

The C harness runs a peer script once per round, as
    /usr/bin/python3 bench_<name>.py <measure> <arg>...
and reads the one line "value=<number>" it prints: the round's figure in the case's unit.
The harness bounds each run in time and kills the interpreter's process group when it
overruns, so a script needs no timeouts of its own. Spawn children re-import the script,
so scripts keep `if __name__ == "__main__":` guards and few module-level imports.
"""
import statistics
import struct
import sys
import time

# Every queued message: (producer, seq, stamp) at the start, the stamp again at the end.
HDR = struct.Struct("<IIQ")
TAIL = struct.Struct("<Q")


def run(measures):
    """Runs measures[argv[1]](*argv[2:]) and prints its result as value=<number>."""
    name, args = sys.argv[1], sys.argv[2:]
    if name not in measures:
        sys.exit(f"unknown measure {name!r}; known: {', '.join(sorted(measures))}")
    print(f"value={measures[name](*args):.6g}", flush=True)


def now_us():
    return time.perf_counter() * 1e6


def median_of(n, fn):
    """The median of n calls of fn()."""
    return statistics.median(fn() for _ in range(n))


def stamp(producer, seq):
    """The same 64-bit stamp as bench_stamp() in benchutil.c."""
    return (seq * 0x9E3779B97F4A7C15 ^ (producer + 1) * 0xC2B2AE3D27D4EB4F) & 0xFFFFFFFFFFFFFFFF


def message(producer, seq, pad):
    """A message of len(pad) + 24 bytes that the consumer can check completely."""
    s = stamp(producer, seq)
    return HDR.pack(producer, seq, s) + pad + TAIL.pack(s)


class Checker:
    """Checks each message's size, its producer's order and both stamps."""

    def __init__(self, producers, size):
        self.expected = [0] * producers
        self.size = size

    def check(self, m):
        producer, seq, s = HDR.unpack_from(m)
        if (len(m) != self.size or producer >= len(self.expected)
                or seq != self.expected[producer] or s != stamp(producer, seq)
                or TAIL.unpack_from(m, len(m) - 8)[0] != s):
            sys.exit(f"corrupt or out-of-order message (producer {producer} seq {seq})")
        self.expected[producer] += 1
