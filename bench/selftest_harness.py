"""Python peers of the harness's self-test (bench/run --self-test).

    selftest_harness.py sleep   never answers, and leaves a child that never ends either
    selftest_harness.py crash   exits with an error
"""
import multiprocessing as mp
import time

import benchutil


def forever():
    time.sleep(3600)


def sleep():
    mp.get_context("fork").Process(target=forever).start()
    forever()


def crash():
    raise SystemExit("the peer crashed on purpose")


if __name__ == "__main__":
    benchutil.run({"sleep": sleep, "crash": crash})
