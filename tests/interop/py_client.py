# A Python client for a C manager (run by tests/test_manager_python.c):
#   py_client.py host:port key values   -- reads the values the C side put, echoes them,
#                                          and checks Empty/Full/ValueError from the C server
#   py_client.py host:port key wrongkey -- must be refused with AuthenticationError
#   py_client.py host:port key methods  -- the 'get_methods' server call with a pickled
#                                          Token, by hand and through AutoProxy
#   py_client.py host:port key quick    -- connect, put and get one value on queue 'q';
#                                          prints "served in <ms> ms" (the hostile tests)
#   py_client.py host:port key nulkey   -- the same, with key + b'\0nul' as the key
import queue
import sys
import time
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client
from multiprocessing.managers import AutoProxy, BaseManager, RemoteError, Token, dispatch

# What test_manager_python.c puts, in order (keep the two lists in step).
EXPECTED = [None, True, False, 0, -1, 2**63 - 1, -2**63, 1.5, float('inf'), 'h\u00e9llo', '',
            b'\x00\xff', b'', [1, 'two', [3]], {'k': [1, 2], 7: None}, (1, (2, 3)), (),
            b'z' * (1 << 20)]


class QueueManager(BaseManager):
    pass


QueueManager.register('get_task_queue')
QueueManager.register('get_result_queue')
QueueManager.register('small')
QueueManager.register('q')


def server_call(address, key, name, args):
    conn = Client(address, authkey=key)
    try:
        return dispatch(conn, None, name, args)
    finally:
        conn.close()


def methods(address, key):
    ident, exposed = server_call(address, key, 'create', ('get_task_queue',))
    token = Token('get_task_queue', address, ident)
    names = server_call(address, key, 'get_methods', (token,))
    assert type(names) is tuple and names == tuple(exposed), (names, exposed)
    assert {'get', 'put', 'qsize', 'task_done', 'join'} <= set(names), names
    try:
        server_call(address, key, 'get_methods', (Token('get_task_queue', address, 'ffff0000'),))
        return 'get_methods answered for an unknown token'
    except RemoteError as e:
        assert 'ffff0000' in str(e), str(e)
    try:
        server_call(address, key, 'get_methods', ('not a token',))
        return 'get_methods answered for a string'
    except RemoteError as e:
        assert 'not a Token' in str(e), str(e)
    # A proxy made from a bare token (as one unpickled in another process) asks get_methods.
    proxy = AutoProxy(token, 'pickle', authkey=key)
    proxy.put('through an AutoProxy')
    assert proxy.qsize() == 1 and proxy.get() == 'through an AutoProxy'
    server_call(address, key, 'decref', (ident,))
    print('get_methods:', ' '.join(names))
    return 0


def main():
    host, port = sys.argv[1].rsplit(':', 1)
    key = sys.argv[2].encode()
    mode = sys.argv[3]
    if mode == 'nulkey':
        key, mode = key + b'\0nul', 'quick'
    if mode == 'methods':
        return methods((host, int(port)), key)
    if mode == 'quick':
        t0 = time.monotonic()
        m = QueueManager(address=(host, int(port)), authkey=key)
        m.connect()
        q = m.q()
        q.put('a good Python client')
        assert q.get(timeout=10) == 'a good Python client'
        print('served in %.1f ms' % ((time.monotonic() - t0) * 1000))
        return 0
    if mode == 'wrongkey':
        m = QueueManager(address=(host, int(port)), authkey=key + b'-wrong')
        try:
            m.connect()
        except AuthenticationError as e:
            print('refused:', e)
            return 0
        return 'a wrong key was accepted'
    m = QueueManager(address=(host, int(port)), authkey=key)
    m.connect()
    task = m.get_task_queue()
    result = m.get_result_queue()
    small = m.small()
    for want in EXPECTED:
        got = task.get(timeout=10)
        assert got == want and type(got) is type(want), (got, want)
        result.put(got)  # back through Python's pickler: the C side checks it
    t0 = time.monotonic()
    try:
        task.get(timeout=0.3)
        return 'get on an empty queue returned'
    except queue.Empty:
        pass
    assert time.monotonic() - t0 >= 0.29
    try:
        task.get_nowait()
        return 'get_nowait on an empty queue returned'
    except queue.Empty:
        pass
    small.put('one')
    try:
        small.put('two', timeout=0.1)
        return 'put on a full queue returned'
    except queue.Full:
        pass
    assert small.full() and small.qsize() == 1 and not small.empty()
    assert small.get() == 'one' and small.empty()
    try:
        small.get(timeout=-1)
        return 'a negative timeout was accepted'
    except ValueError:
        pass
    print(str(small))
    print('python client ok')
    return 0


if __name__ == '__main__':
    sys.exit(main())
