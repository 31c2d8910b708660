"""Python's managers on loopback, measured the way bench_manager.c measures multiproc.

    bench_manager.py pp <n>                   Python client and Python server (start()):
                                              put+get round trips per second
    bench_manager.py client <addr> <key> <n>  a Python client against the server at addr
    bench_manager.py server <key>             serves get_task_queue on 127.0.0.1 (any port),
                                              prints "serving on host:port", exits when
                                              stdin closes
A round trip is q.put(i) then q.get() through a queue proxy: two requests and replies,
and the value that comes back is checked.
"""
import os
import queue
import sys
import threading
import time
from multiprocessing.managers import BaseManager

import benchutil

q = queue.Queue()


class QueueManager(BaseManager):
    pass


def get_q():
    return q


def rate(proxy, n):
    start = time.perf_counter()
    for i in range(n):
        proxy.put(i)
        if proxy.get() != i:
            raise SystemExit(f"round trip {i}: a different value came back")
    return n / (time.perf_counter() - start)


def client_rate(host, port, key, n):
    QueueManager.register('get_task_queue')
    m = QueueManager(address=(host, port), authkey=key)
    m.connect()
    proxy = m.get_task_queue()
    rate(proxy, n // 10)  # warm-up: connections and proxy set up
    return rate(proxy, n)


def pp(n):
    QueueManager.register('get_task_queue', callable=get_q)
    m = QueueManager(address=('127.0.0.1', 0), authkey=b'bench')
    m.start()
    try:
        return client_rate(m.address[0], m.address[1], b'bench', int(n))
    finally:
        m.shutdown()


def client(addr, key, n):
    host, port = addr.rsplit(':', 1)
    return client_rate(host, int(port), key.encode(), int(n))


def server(key):
    QueueManager.register('get_task_queue', callable=get_q)
    srv = QueueManager(address=('127.0.0.1', 0), authkey=key.encode()).get_server()
    print('serving on %s:%d' % srv.address, flush=True)
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    srv.serve_forever()


if __name__ == '__main__':
    if sys.argv[1] == 'server':
        server(sys.argv[2])
    else:
        benchutil.run({'pp': pp, 'client': client})
