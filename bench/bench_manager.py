"""Python's managers on loopback, measured the way bench_manager.c measures multiproc.

  bench_manager.py pp N              Python client and Python server (manager.start()):
                                     prints "rps=<put+get round trips per second>"
  bench_manager.py client ADDR KEY N a Python client against a server at ADDR: "rps=..."
  bench_manager.py server KEY        serves get_task_queue on 127.0.0.1 (any port), prints
                                     "serving on host:port", exits when stdin closes
A round trip is q.put(i) then q.get() through a queue proxy: two requests and replies.
"""
import os
import queue
import sys
import threading
import time
from multiprocessing.managers import BaseManager

q = queue.Queue()


class QueueManager(BaseManager):
    pass


def get_q():
    return q


def rate(proxy, n):
    start = time.perf_counter()
    for i in range(n):
        proxy.put(i)
        proxy.get()
    return n / (time.perf_counter() - start)


def client(host, port, key, n):
    QueueManager.register('get_task_queue')
    m = QueueManager(address=(host, port), authkey=key)
    m.connect()
    proxy = m.get_task_queue()
    rate(proxy, n // 10)  # warm-up: connections and proxy set up
    return rate(proxy, n)


def main():
    mode = sys.argv[1]
    if mode == 'pp':
        QueueManager.register('get_task_queue', callable=get_q)
        m = QueueManager(address=('127.0.0.1', 0), authkey=b'bench')
        m.start()
        r = client(m.address[0], m.address[1], b'bench', int(sys.argv[2]))
        m.shutdown()
    elif mode == 'client':
        host, port = sys.argv[2].rsplit(':', 1)
        r = client(host, int(port), sys.argv[3].encode(), int(sys.argv[4]))
    else:
        QueueManager.register('get_task_queue', callable=get_q)
        server = QueueManager(address=('127.0.0.1', 0), authkey=sys.argv[2].encode()).get_server()
        print('serving on %s:%d' % server.address, flush=True)
        threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
        server.serve_forever()
        return
    print('rps=%.1f' % r)


if __name__ == '__main__':
    main()
