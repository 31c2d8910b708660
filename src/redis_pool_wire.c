/* The distributed pool's messages (redis_pool.h): what master and workers write and read.
 * Everything read here came from another machine through Redis: bounded, checked, fuzzed
 * (fuzz/fuzz_redis_pool.c). */
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "pool_wire.h"
#include "redis.h"
#include "redis_pool.h"
#include "target.h"

int mp__rp_put_task_head(mp__buf *b, uint64_t id, const char *key, uint32_t lease_ms,
                         const mp__buf *fnref, unsigned flags, uint32_t n) {
  size_t klen = strlen(key);
  int rc = mp__buf_put_u8(b, MP__RP_TASK);
  rc = rc ? rc : mp__buf_put_u64(b, id);
  rc = rc ? rc : mp__buf_put_u16(b, (unsigned)klen);
  rc = rc ? rc : mp__buf_put(b, key, klen);
  rc = rc ? rc : mp__buf_put_u32(b, lease_ms);
  rc = rc ? rc : mp__buf_put(b, fnref->data, fnref->len);
  rc = rc ? rc : mp__buf_put_u8(b, flags);
  return rc ? rc : mp__buf_put_u32(b, n);
}

static int malformed(const char *what) {
  return mp_set_error(MP_EPROTO, "redis pool: malformed %s", what);
}

int mp__rp_read_task(mp__reader *r, mp__rp_task *t) {
  memset(t, 0, sizeof *t);
  if (mp__get_u8(r) != MP__RP_TASK || r->bad)
    return malformed("task (not a task)");
  t->id = mp__get_u64(r);
  size_t klen = mp__get_u16(r);
  const unsigned char *key = mp__get_bytes(r, klen);
  if (r->bad || klen == 0 || klen > MP__RP_KEY_MAX || memchr(key, '\0', klen))
    return malformed("task (its reply key)");
  t->key = (const char *)key;
  t->klen = klen;
  t->lease_ms = mp__get_u32(r);
  if (r->bad || mp__fnref_parse(r, &t->target) < 0)
    return malformed("task (its function reference)");
  t->flags = mp__get_u8(r);
  t->n = mp__get_u32(r);
  if (r->bad || (t->flags & ~(unsigned)MP__PW_STAR) || t->n > r->left)
    return malformed("task (its head)");
  return 0;
}

int mp__rp_put_fail(mp__buf *b, uint64_t id, int code, const char *msg) {
  size_t n = strlen(msg);
  n = n > MP__RP_MSG_MAX ? MP__RP_MSG_MAX : n;
  int rc = mp__buf_put_u8(b, MP__RP_FAIL);
  rc = rc ? rc : mp__buf_put_u64(b, id);
  rc = rc ? rc : mp__buf_put_u32(b, (uint32_t)code);
  return rc ? rc : mp__buf_put(b, msg, n);
}

int mp__rp_read_answer(const void *p, size_t len, mp__rp_answer *a) {
  memset(a, 0, sizeof *a);
  if (len == 0)
    return 0;
  mp__reader r = {p, len, 0};
  a->kind = (int)mp__get_u8(&r);
  a->id = mp__get_u64(&r);
  if (r.bad)
    return malformed("answer (too short)");
  if (a->kind == MP__RP_RESULT) {
    a->n = mp__get_u32(&r);
    if (r.bad || a->n > r.left || mp__pw_check_results(r, a->n) < 0)
      return malformed("answer (its result items)");
    a->items = r;
    return 0;
  }
  if (a->kind != MP__RP_FAIL)
    return malformed("answer (unknown kind)");
  a->code = (int)(int32_t)mp__get_u32(&r);
  if (r.bad || a->code >= 0 || a->code < -1000)
    return malformed("answer (its failure code)");
  a->msg = (const char *)r.p;
  a->msg_len = r.left > MP__RP_MSG_MAX ? MP__RP_MSG_MAX : r.left;
  return 0;
}

int mp__rp_key(char *buf, size_t size, const char *name, const char *suffix) {
  size_t n = name ? strlen(name) : 0;
  if (n == 0 || n > MP_REDIS_NAME_MAX || strpbrk(name, "{} \t\r\n") != NULL)
    return mp_set_error(MP_EINVAL,
                        "redis pool: the name must be 1 to %d bytes without spaces or braces",
                        MP_REDIS_NAME_MAX);
  int w = snprintf(buf, size, "mp:pool:{%s}:%s", name, suffix);
  return w > 0 && (size_t)w < size ? 0 : mp_set_error(MP_EINVAL, "redis pool: key too long");
}

void mp__rp_cfg(mp__redis_cfg *cfg, int connect_ms, int io_ms, int reconnect_ms,
                const char *ca_file) {
  memset(cfg, 0, sizeof *cfg);
  cfg->connect_timeout_ms = connect_ms > 0 ? connect_ms : 5000;
  cfg->io_timeout_ms = io_ms > 0 ? io_ms : 10000;
  cfg->reconnect_ms = reconnect_ms > 0 ? reconnect_ms : 30000;
  cfg->tls_ca_file = ca_file;
}

int mp__rp_make_group(mp__redis *r, const char *k_tasks) {
  const char *argv[6] = {"XGROUP", "CREATE", k_tasks, MP__RP_GROUP, "0", "MKSTREAM"};
  size_t lens[6];
  for (int i = 0; i < 6; i++)
    lens[i] = strlen(argv[i]);
  redisReply *reply = NULL;
  int rc = mp__redis_call(r, 6, argv, lens, &reply);
  mp__redis_reply_free(reply);
  return rc < 0 && strstr(mp_last_error(), "BUSYGROUP") != NULL ? 0 : rc; /* made before */
}
