# Writes the seed corpora of the manager's fuzz targets from what this CPython really sends:
#   fuzz/corpus/pickle/   manager requests and replies, pickled as multiprocessing pickles them
#   fuzz/corpus/manager/  one flag byte + the frames a client sends after authentication
#   fuzz/corpus/frame/    two option bytes + frames as multiprocessing.connection writes them
#   fuzz/corpus/auth/     a flag byte + the handshake frames a client sends (fuzz_auth.c's
#                         key and challenge), as this version's connection module makes them
# Run it with each interpreter (Debian's python3 is 3.11; pyenv has 3.12 and 3.13); a file
# that another version already wrote with the same bytes is not written again:
#   for py in /usr/bin/python3 ~/.pyenv/versions/3.1[23]*/bin/python3; do
#     $py tests/interop/gen_fuzz_corpus.py fuzz/corpus; done
import hmac
import os
import pickle
import queue
import struct
import sys
from multiprocessing.managers import Token
from multiprocessing.reduction import ForkingPickler

IDENT = '7f0000001000'  # what the C server names its first queue
SMALL = '7f0000001040'  # and its second (fuzz_manager.c registers 'small', maxsize 1)
TOKEN = Token('get_task_queue', ('127.0.0.1', 5000), IDENT)
VALUES = {
    'int': 7, 'neg': -2**63, 'float': 1.5, 'str': 'h\u00e9llo', 'bytes': b'\x00\xff',
    'none': None, 'bool': True, 'list': [1, [2, 'x']], 'tuple': (1, (2, 3), ()),
    'dict': {'k': [1, 2], 7: None, (1, 'a'): b''}, 'nested': [[[[{'a': ([],)}]]]],
    'shared': [[1], [1]], 'long_str': 'x' * 300, 'long_bytes': b'y' * 300,
}
REFUSED = {'set': {1, 2}, 'bytearray': bytearray(b'ab'), 'complex': 1j, 'big_int': 2**64}


def dumps(obj):
    return bytes(ForkingPickler.dumps(obj))


def frame(data):
    # multiprocessing.connection: a 4-byte signed big-endian length, or -1 and 8 bytes.
    if len(data) > 0x7fffffff:
        return struct.pack('!iQ', -1, len(data)) + data
    return struct.pack('!i', len(data)) + data


def requests():
    """(name, request) pairs a client sends."""
    yield 'create', (None, 'create', ('get_task_queue',), {})
    yield 'accept', (None, 'accept_connection', ('MainProcess|Thread-1',), {})
    yield 'dummy', (None, 'dummy', (), {})
    yield 'decref', (None, 'decref', (IDENT,), {})
    yield 'get_methods', (None, 'get_methods', (TOKEN,), {})
    yield 'shutdown', (None, 'shutdown', (), {})
    yield 'get_timeout', (IDENT, 'get', (), {'timeout': 1.0})
    yield 'get_nowait', (IDENT, 'get', (), {'block': False})
    yield 'qsize', (IDENT, 'qsize', (), {})
    yield 'task_done', (IDENT, 'task_done', (), {})
    for name, v in VALUES.items():
        yield 'put_' + name, (IDENT, 'put', (v,), {})
    for name, v in REFUSED.items():
        yield 'put_' + name, (IDENT, 'put', (v,), {})


def replies():
    yield 'reply_return', ('#RETURN', VALUES['dict'])
    yield 'reply_created', ('#RETURN', (IDENT, ('get', 'put', 'qsize')))
    yield 'reply_empty', ('#ERROR', queue.Empty())
    yield 'reply_value_error', ('#ERROR', ValueError("'timeout' must be a non-negative number"))
    yield 'reply_traceback', ('#TRACEBACK', 'Traceback (most recent call last):\n...')


def sessions():
    """(name, frames) a client sends on one connection after authentication."""
    r = dict(requests())
    yield 'create', [r['create']]
    yield 'get_methods', [r['get_methods']]
    yield 'put_get', [r['accept'], r['put_dict'], r['qsize'], r['get_nowait'], r['task_done']]
    yield 'put_every_value', [r['accept']] + [r['put_' + n] for n in VALUES] + \
        [r['get_nowait']] * 3
    yield 'refused_values', [r['accept']] + [r['put_' + n] for n in REFUSED] + [r['put_int']]
    yield 'two_calls', [r['dummy'], r['create']]
    calls = [  # items first: a call that would block ends the session (its client is gone)
        (IDENT, 'put', ('x',), {}), (IDENT, 'get', (), {'timeout': 0.001}),
        (IDENT, 'put', (), {'item': [1, {'k': b'v'}]}), (IDENT, 'get', (True, 0), {}),
        (IDENT, 'get', (), {'block': True, 'timeout': -1.0}), (IDENT, 'get', (1, 2, 3), {}),
        (IDENT, 'get', (), {'colour': 1}), (SMALL, 'put', (1,), {}),
        (SMALL, 'put', (2,), {'block': False}), (SMALL, 'put_nowait', (3,), {}),
        (SMALL, 'full', (), {}), (SMALL, 'qsize', (1,), {}), (SMALL, 'get', (), {'timeout': 5}),
        (SMALL, 'task_done', (), {}), (SMALL, 'task_done', (), {}), (SMALL, 'join', (), {}),
        (IDENT, '__repr__', (), {}), (IDENT, 'empty', (), {}), (IDENT, '__del__', (), {}),
        ('ffff', 'get', (), {}), (IDENT, 'get', (), {}),
    ]
    yield 'method_calls', [r['accept']] + calls
    yield 'server_calls', [(None, 'create', ('small',), {})]
    yield 'incref', [(None, 'incref', (SMALL,), {})]
    yield 'unknown_call', [(None, 'debug_info', (), {})]
    yield 'shutdown', [r['shutdown'], r['dummy']]
    yield 'bad_server_calls', [(None, 'decref', ('nope',), {})]
    yield 'get_methods_not_a_token', [(None, 'get_methods', ('x',), {})]


def auth_frames():
    """What this Python's client answers to fuzz_auth.c's challenge, then sends itself."""
    import multiprocessing.connection as mc
    key = b'fuzz key'
    message = b'{sha256}' + bytes(range(1, 11)) + bytes(30)  # fuzz_auth.c's challenge
    if hasattr(mc, '_create_response'):  # 3.12+
        answer = mc._create_response(key, message)
        challenge = b'#CHALLENGE#{sha256}' + bytes(range(40, 80))
    else:  # 3.11: a bare HMAC-MD5, and a 20-byte challenge
        answer = hmac.new(key, message, 'md5').digest()
        challenge = b'#CHALLENGE#' + bytes(range(40, 60))
    return [answer, challenge, b'#WELCOME#']


def write(folder, name, data):
    os.makedirs(folder, exist_ok=True)
    for existing in os.listdir(folder):
        with open(os.path.join(folder, existing), 'rb') as f:
            if f.read() == data:
                return
    tag = 'py%d%d' % sys.version_info[:2]
    with open(os.path.join(folder, '%s-%s' % (name, tag)), 'wb') as f:
        f.write(data)


def main():
    root = sys.argv[1]
    for name, obj in list(requests()) + list(replies()):
        write(os.path.join(root, 'pickle'), name, dumps(obj))
    # Other protocols a client may choose: 2 (bytes as _codecs.encode / bytes()), 3 and 5.
    for proto in (2, 3, 5):
        for name, obj in (('put_bytes', (IDENT, 'put', (b'\x00\xff\x80', b''), {})),
                          ('put_dict', (IDENT, 'put', (VALUES['dict'],), {})),
                          ('reply_full', ('#ERROR', queue.Full())),
                          ('get_methods', (None, 'get_methods', (TOKEN,), {}))):
            write(os.path.join(root, 'pickle'), '%s_p%d' % (name, proto),
                  pickle.dumps(obj, protocol=proto))
    for name, reqs in sessions():
        write(os.path.join(root, 'manager'), name, b'\x00' + b''.join(frame(dumps(q)) for q in reqs))
    frames = [frame(dumps(q)) for _, q in requests()]
    write(os.path.join(root, 'frame'), 'requests', b'\x00\x00' + b''.join(frames[:8]))
    write(os.path.join(root, 'frame'), 'empty_and_long_form',
          b'\x00\x03' + frame(b'') + struct.pack('!iQ', -1, 5) + b'hello' + frame(b'x' * 300))
    auth = b''.join(bytes([len(f)]) + f for f in auth_frames())
    write(os.path.join(root, 'auth'), 'client_handshake', b'\x00' + auth)
    write(os.path.join(root, 'auth'), 'client_handshake_prefixed', b'\x01' + auth)
    write(os.path.join(root, 'frame'), 'big', b'\x00\x07' + frame(dumps(VALUES['long_bytes'])))


if __name__ == '__main__':
    main()
