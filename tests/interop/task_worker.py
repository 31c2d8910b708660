# The seed's task_worker.py, with the address and key from argv.
import queue
import sys
from multiprocessing.managers import BaseManager


class QueueManager(BaseManager):
    pass


QueueManager.register('get_task_queue')
QueueManager.register('get_result_queue')

if __name__ == '__main__':
    host, port = (sys.argv[1] if len(sys.argv) > 1 else '127.0.0.1:5000').rsplit(':', 1)
    key = (sys.argv[2] if len(sys.argv) > 2 else 'abc').encode()
    print('Connect to server %s...' % host)
    m = QueueManager(address=(host, int(port)), authkey=key)
    m.connect()
    task = m.get_task_queue()
    result = m.get_result_queue()
    for i in range(10):
        try:
            n = task.get(timeout=1)
            print('run task %d * %d...' % (n, n), flush=True)
            r = '%d * %d = %d' % (n, n, n * n)
            result.put(r)
        except queue.Empty:
            print('task queue is empty.')
            break
    print('worker exit.')
