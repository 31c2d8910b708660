# A Python manager for C clients (run by tests/test_manager_python.c): serves
# get_task_queue, get_result_queue and small (maxsize 1) until a client calls shutdown or
# stdin closes. Prints "Manager serving on host:port" first.
import os
import queue
import sys
import threading
from multiprocessing.managers import BaseManager

task_queue = queue.Queue()
result_queue = queue.Queue()
small_queue = queue.Queue(1)


class QueueManager(BaseManager):
    pass


QueueManager.register('get_task_queue', callable=lambda: task_queue)
QueueManager.register('get_result_queue', callable=lambda: result_queue)
QueueManager.register('small', callable=lambda: small_queue)


def exit_when_stdin_closes():
    sys.stdin.read()
    os._exit(0)


if __name__ == '__main__':
    host, port = sys.argv[1].rsplit(':', 1)
    server = QueueManager(address=(host, int(port)), authkey=sys.argv[2].encode()).get_server()
    print('Manager serving on %s:%d' % server.address, flush=True)
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    server.serve_forever()
