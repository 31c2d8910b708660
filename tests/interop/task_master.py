# The seed's task_master.py, with the address and key from argv (port 0: any free port;
# the bound address is printed first) and fixed tasks so that a test can check results.
import queue
import sys
from multiprocessing.managers import BaseManager

task_queue = queue.Queue()
result_queue = queue.Queue()


class QueueManager(BaseManager):
    pass


def get_task_queue():
    return task_queue


def get_result_queue():
    return result_queue


QueueManager.register('get_task_queue', callable=get_task_queue)
QueueManager.register('get_result_queue', callable=get_result_queue)

if __name__ == '__main__':
    host, port = (sys.argv[1] if len(sys.argv) > 1 else '127.0.0.1:0').rsplit(':', 1)
    key = (sys.argv[2] if len(sys.argv) > 2 else 'abc').encode()
    manager = QueueManager(address=(host, int(port)), authkey=key)
    manager.start()
    print('Manager serving on %s:%d' % manager.address, flush=True)
    task = manager.get_task_queue()
    result = manager.get_result_queue()
    tasks = [3411, 0, 1, 10000, 77, 123, 4096, 9999, 5, 42]
    for n in tasks:
        print('Put task %d...' % n)
        task.put(n)
    print('Try get results...', flush=True)
    got = []
    for i in range(10):
        r = result.get(timeout=10)
        print('Result: %s' % r, flush=True)
        got.append(r)
    manager.shutdown()
    assert sorted(got) == sorted('%d * %d = %d' % (n, n, n * n) for n in tasks), got
    print('master exit.')
