/* The distributed pool's messages in Redis (redis_pool.c is the master, redis_worker.c the
 * worker; docs/redis.md documents them for other languages). Not part of the public API.
 *
 * Keys of the pool `name` (the braces keep them in one cluster slot):
 *   mp:pool:{name}:tasks       a stream with the consumer group "w": one entry per task,
 *                              field 'd' the task (below); a task run again after its
 *                              worker died is a new entry with fields 'a' (deaths so far)
 *                              and 'w' (the dead workers' names)
 *   mp:pool:{name}:res:<id>    a list per master: answers, RPUSHed by workers
 * A task ('d'), integers big-endian:
 *   'T' u8, task id u64, reply key length u16 + reply key, lease_ms u32, the function
 *   reference (target.c), flags u8 (1: starmap), n u32, then n input values (value.c)
 * An answer (one list element):
 *   'R' u8, task id u64, n u32, then n result items (pool_wire.h)
 *   'F' u8, task id u64, code i32 (an MP_E* code), then a UTF-8 message: every item failed
 *   an empty element: a master's wake-up call to itself, ignored */
#ifndef MP_REDIS_POOL_H
#define MP_REDIS_POOL_H

#include "buf.h"
#include "platform.h"

#define MP__RP_GROUP "w"
#define MP__RP_KEY_MAX 512        /* longest reply key */
#define MP__RP_MSG_MAX 1024       /* longest failure message kept */
#define MP__RP_RES_TTL "86400000" /* a master's answers outlive it a day at most */

enum { MP__RP_TASK = 'T', MP__RP_RESULT = 'R', MP__RP_FAIL = 'F' };

/* A task's head, read from bytes of another machine; its pointers borrow those bytes. */
typedef struct mp__rp_task {
  uint64_t id;
  const char *key; /* the reply key, klen bytes */
  size_t klen;
  uint32_t lease_ms;
  mp_plat_target target;
  unsigned flags;
  uint32_t n; /* r is left at the first input */
} mp__rp_task;

/* Appends a task's head (everything before its n inputs). */
int mp__rp_put_task_head(mp__buf *b, uint64_t id, const char *key, uint32_t lease_ms,
                         const mp__buf *fnref, unsigned flags, uint32_t n);
/* Reads a task's head from r: 0, or MP_EPROTO for anything malformed (t->id and t->key are
 * set as soon as they are read, so that a malformed task can still be answered). */
int mp__rp_read_task(mp__reader *r, mp__rp_task *t);

/* An answer read from bytes of another machine (borrowed). */
typedef struct mp__rp_answer {
  int kind; /* MP__RP_RESULT, MP__RP_FAIL, or 0 for an empty element */
  uint64_t id;
  uint32_t n; /* MP__RP_RESULT: items, whole (mp__pw_check_results) in items */
  mp__reader items;
  int code;        /* MP__RP_FAIL: a negative MP_E* code */
  const char *msg; /* MP__RP_FAIL: msg_len bytes, at most MP__RP_MSG_MAX */
  size_t msg_len;
} mp__rp_answer;

/* Reads one answer: 0, or MP_EPROTO for a malformed one. */
int mp__rp_read_answer(const void *p, size_t len, mp__rp_answer *a);
/* Appends a failure answer for task id. */
int mp__rp_put_fail(mp__buf *b, uint64_t id, int code, const char *msg);

/* The tasks stream's key and a reply key of pool `name`: MP_EINVAL for a bad name. */
int mp__rp_key(char *buf, size_t size, const char *name, const char *suffix);

struct mp__redis;
struct mp__redis_cfg;
/* A connection's settings from the options' fields (0: the defaults of docs/redis.md). */
void mp__rp_cfg(struct mp__redis_cfg *cfg, int connect_ms, int io_ms, int reconnect_ms,
                const char *ca_file);
/* Makes the tasks stream and its group (once: a second call finds them). */
int mp__rp_make_group(struct mp__redis *r, const char *k_tasks);

#endif /* MP_REDIS_POOL_H */
