# A Python worker of multiproc's distributed pool, written from docs/redis.md ("Wire
# format") with redis-py (Debian's python3-redis) and msgpack (python3-msgpack), sharing
# nothing with the C library but the format:
#   redis_pool_peer.py URL NAME N   take N tasks of pool NAME as consumer py-worker, answer
#                                   each input x with x * x (a Python program cannot run
#                                   the C function the task names: it checks the reference
#                                   is well formed and stands in for it), acknowledge and
#                                   delete the entries; prints "answered N"
import struct
import sys

import msgpack
import redis


def task(d):
    if d[:1] != b'T':
        raise SystemExit('not a task')
    tid, klen = struct.unpack_from('>QH', d, 1)
    key, at = d[11:11 + klen], 11 + klen
    lease_ms, mlen = struct.unpack_from('>IH', d, at)
    at += 6
    module = d[at:at + mlen].decode()
    at += mlen
    offset, flen = struct.unpack_from('>QB', d, at)
    at += 9 + flen
    flags, n = struct.unpack_from('>BI', d, at)
    at += 5
    u = msgpack.Unpacker(raw=False)
    u.feed(d[at:])
    inputs = list(u)
    if len(inputs) != n or lease_ms == 0 or flen == 0 or flags != 0:
        raise SystemExit('malformed task %r' % ((tid, n, lease_ms, flen, flags),))
    return tid, key, inputs


def main(url, name, count):
    r = redis.Redis.from_url(url)
    stream = 'mp:pool:{%s}:tasks' % name
    try:
        r.xgroup_create(stream, 'w', id='0', mkstream=True)
    except redis.ResponseError as e:
        if 'BUSYGROUP' not in str(e):
            raise
    done = 0
    while done < count:
        got = r.xreadgroup('w', 'py-worker', {stream: '>'}, count=count - done, block=60000)
        if not got:
            raise SystemExit('no task within 60 s')
        for _, entries in got:
            for entry_id, fields in entries:
                tid, key, inputs = task(fields[b'd'])
                answer = b'R' + struct.pack('>QI', tid, len(inputs))
                answer += b''.join(msgpack.packb(x * x) for x in inputs)
                p = r.pipeline(transaction=False)
                p.rpush(key, answer)
                p.xack(stream, 'w', entry_id)
                p.xdel(stream, entry_id)
                p.execute()
                done += 1
    print('answered %d' % done)


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
