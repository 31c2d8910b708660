"""The plain redis-py list queue (one LPUSH per put, one BRPOP per get: the usual Python
idiom), measured the way bench_redis.c measures multiproc's Redis queue.

    bench_redis.py rate <port> <size> <count>
A producer process LPUSHes <count> messages of <size> bytes (benchutil.message); this
process BRPOPs and checks every one (size, order, both stamps). The clock runs from the
producer's go to the last message checked, as in the C peers. Prints value=<msg/s>.
"""
import multiprocessing as mp
import time

import benchutil


def produce(port, key, barrier, count, size):
    import redis
    r = redis.Redis(port=port)
    pad = bytes(size - benchutil.HDR.size - benchutil.TAIL.size)
    barrier.wait()
    for seq in range(count):
        r.lpush(key, benchutil.message(0, seq, pad))


def rate(port, size, count):
    import redis
    port, size, count = int(port), int(size), int(count)
    key = "bench-list-%d" % time.monotonic_ns()
    r = redis.Redis(port=port)
    r.delete(key)
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(2)
    p = ctx.Process(target=produce, args=(port, key, barrier, count, size))
    p.start()
    checker = benchutil.Checker(1, size)
    barrier.wait()
    t0 = time.perf_counter()
    for _ in range(count):
        checker.check(r.brpop(key)[1])
    elapsed = time.perf_counter() - t0
    p.join()
    r.delete(key)
    if p.exitcode != 0:
        raise SystemExit(f"the producer exited with {p.exitcode}")
    return count / elapsed


# ---- the Redis pool's peers: Celery and RQ, 2 workers, trivial tasks ------------------------


def _workers(cmd, env):
    """Starts worker processes (in this process group: a timeout kills them too)."""
    import os
    import subprocess
    here = os.path.dirname(os.path.abspath(__file__))
    # their logs to a file: an unread pipe would fill and stop them
    log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), "mp-bench-workers.log"), "ab")
    return subprocess.Popen(cmd, cwd=here, env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=log)


def _stop(p):
    p.terminate()
    try:
        p.wait(30)
    except Exception:
        p.kill()
        p.wait()


def _env(port):
    import os
    url = "redis://127.0.0.1:%d/0" % int(port)
    env = dict(os.environ, MP_BENCH_REDIS=url)
    os.environ.update(MP_BENCH_REDIS=url)
    return env


def celery(port, count):
    """Tasks per second through Celery (Redis broker and result backend, JSON, defaults):
    one worker of concurrency 2 (two prefork processes), started and answering a ping
    before the clock; every task sent with apply_async (as a group), every result
    checked."""
    import sys
    env = _env(port)
    count = int(count)
    queue = "bench-%d" % time.monotonic_ns()
    w = _workers([sys.executable, "-m", "celery", "-A", "redis_tasks", "worker", "-c", "2",
                  "-P", "prefork", "-Q", queue, "-n", queue + "@bench", "--without-gossip",
                  "--without-mingle", "--loglevel", "WARNING"], env)
    try:
        import celery as celery_pkg
        from redis_tasks import app, inc
        while not app.control.ping(destination=[queue + "@bench"], timeout=0.5):
            if w.poll() is not None:
                raise SystemExit("the celery worker exited (see mp-bench-workers.log)")
        t0 = time.perf_counter()
        res = celery_pkg.group(inc.s(i) for i in range(count)).apply_async(queue=queue)
        got = res.get(timeout=600)
        elapsed = time.perf_counter() - t0
        if got != [i + 1 for i in range(count)]:
            raise SystemExit("celery: wrong results")
        res.forget()
        return count / elapsed
    finally:
        _stop(w)


def rq(port, count):
    """Jobs per second through RQ (its default forking workers, two of them, registered
    before the clock): enqueued in one pipeline (enqueue_many), the finished-job registry's
    count polled every 10 ms, then every result fetched and checked."""
    import sys
    import redis
    from rq import Queue, Worker
    from rq.job import Job
    env = _env(port)
    count = int(count)
    name = "bench-%d" % time.monotonic_ns()
    conn = redis.Redis(port=int(port))
    q = Queue(name, connection=conn)
    url = env["MP_BENCH_REDIS"]
    ws = [_workers([sys.executable, "-m", "rq.cli", "worker", "--quiet", "-u", url, name], env)
          for _ in range(2)]
    try:
        while Worker.count(queue=q) < 2:
            for w in ws:
                if w.poll() is not None:
                    raise SystemExit("an rq worker exited (see mp-bench-workers.log)")
            time.sleep(0.05)
        t0 = time.perf_counter()
        jobs = q.enqueue_many([Queue.prepare_data("redis_tasks.rq_inc", (i,))
                               for i in range(count)])
        done, failed = q.finished_job_registry, q.failed_job_registry
        while done.count + failed.count < count:  # a ZCARD each: cheap to ask often
            time.sleep(0.01)
        results = [j.result for j in Job.fetch_many([j.id for j in jobs], connection=conn)]
        if results != [i + 1 for i in range(count)]:
            raise SystemExit("rq: wrong or failed results")
        elapsed = time.perf_counter() - t0
        q.delete(delete_jobs=True)
        return count / elapsed
    finally:
        for w in ws:
            _stop(w)


if __name__ == "__main__":
    benchutil.run({"rate": rate, "celery": celery, "rq": rq})
