# A Python peer on multiproc's Redis queue, written from docs/redis.md with redis-py
# (Debian's python3-redis) and msgpack (python3-msgpack), sharing nothing with the C
# library but the wire format and src/redis_queue.lua:
#   redis_peer.py URL echo IN OUT N        get N messages from the plain queue IN, put each
#                                          back on OUT prefixed with b'py:'; then N
#                                          MessagePack values from IN, put back as
#                                          ['py', value]
#   redis_peer.py URL work TASKS RESULTS   consume the joinable queue TASKS until it is
#                                          closed: put n*n for each int n on RESULTS, then
#                                          task_done
#   redis_peer.py URL produce OUT N        put N messages b'py-<i>' on the plain queue OUT,
#                                          half with XADD, half with the script's put
import os
import sys
import uuid

import msgpack
import redis

GROUP = 'mpq'
LUA = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'src',
                   'redis_queue.lua')


class Queue:
    """One handle: the keys of queue `name` and this peer's consumer name."""

    def __init__(self, r, name, joinable=False):
        self.r = r
        self.keys = ['mpq:{%s}' % name, 'mpq:{%s}:meta' % name, 'mpq:{%s}:ctl' % name,
                     'mpq:{%s}:join' % name]
        self.stream, self.meta, self.ctl, self.join_stream = self.keys
        self.joinable = joinable
        self.consumer = 'py-%d-%s' % (os.getpid(), uuid.uuid4().hex[:8])
        self.producer = 'mpq:{%s}:p:py-%s' % (name, uuid.uuid4().hex)
        self.seq = 0
        with open(LUA) as f:
            self.script = r.register_script(f.read())
        self.script(keys=self.keys, args=['init', 'joinable' if joinable else 'queue'])
        self.held = []
        self.closed = False

    def put(self, data):
        self.r.xadd(self.stream, {'d': data})

    def put_checked(self, data):
        """Refused once the queue is closed; a resend after a lost reply lands once."""
        seq = str(self.seq)
        self.script(keys=self.keys + [self.producer], args=['put', seq, seq, 86400000, data])
        self.seq += 1

    def get(self, timeout_ms):
        """The next message, or None once the queue is closed and drained."""
        while True:
            streams = {self.stream: '>', self.ctl: '>'}
            block = None if self.closed else timeout_ms
            got = self.r.xreadgroup(GROUP, self.consumer, streams, count=1, block=block,
                                    noack=not self.joinable)
            data = None
            for key, entries in got or []:
                for entry_id, fields in entries:
                    if key.decode() == self.ctl:  # the close marker: pass it on
                        self.closed = True
                        self.script(keys=self.keys, args=['relay', entry_id])
                    elif self.joinable:
                        self.held.append(entry_id)
                        data = fields[b'd']
                    else:
                        self.r.xdel(self.stream, entry_id)
                        data = fields[b'd']
            if data is not None:
                return data
            if self.closed:
                return None
            if not got:
                raise TimeoutError('no message within %d ms' % timeout_ms)

    def task_done(self):
        self.script(keys=self.keys, args=['done', self.held.pop(0)])


def main():
    url, mode = sys.argv[1], sys.argv[2]
    r = redis.Redis.from_url(url)
    if mode == 'echo':
        src, dst, n = Queue(r, sys.argv[3]), Queue(r, sys.argv[4]), int(sys.argv[5])
        for _ in range(n):
            dst.put(b'py:' + src.get(10000))
        for _ in range(n):
            value = msgpack.unpackb(src.get(10000), raw=False)
            dst.put(msgpack.packb(['py', value], use_bin_type=True))
    elif mode == 'work':
        tasks, results = Queue(r, sys.argv[3], joinable=True), Queue(r, sys.argv[4])
        while True:
            data = tasks.get(10000)
            if data is None:
                break
            n = msgpack.unpackb(data)
            results.put(msgpack.packb(n * n))
            tasks.task_done()
    elif mode == 'produce':
        out, n = Queue(r, sys.argv[3]), int(sys.argv[4])
        for i in range(n):
            data = b'py-%d' % i
            out.put(data) if i % 2 == 0 else out.put_checked(data)
    print('redis_peer %s: done' % mode)


if __name__ == '__main__':
    main()
