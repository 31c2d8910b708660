"""The trivial task of the Redis pool benchmark, for Celery's and RQ's workers (imported
by name: `celery -A redis_tasks worker`, RQ jobs `redis_tasks.inc`). The broker's URL comes
from MP_BENCH_REDIS."""
import os

from celery import Celery

URL = os.environ.get("MP_BENCH_REDIS", "redis://127.0.0.1:6379/0")
app = Celery("redis_tasks", broker=URL, backend=URL)
app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)


@app.task
def inc(i):
    return i + 1


def rq_inc(i):
    return i + 1
