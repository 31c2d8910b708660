/* Redis through hiredis: the URL, one connection with its reconnect policy (redis_url.c,
 * redis_conn.c), used by the Redis-backed queue (redis_queue.c) and the distributed pool
 * (redis_pool.c, redis_worker.c, redis_pool_wire.c). Not part of the public API. Only these
 * redis_*.c files see hiredis; the OS stays inside hiredis and behind platform.h. */
#ifndef MP_REDIS_H
#define MP_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "multiproc.h"

/* ---- URL: redis://[[user]:password@]host[:port][/db], rediss:// for TLS --------------- */

typedef struct mp__redis_url {
  char *host;     /* a name, an IPv4 address, or an IPv6 address without its brackets */
  int port;       /* 6379 when absent */
  int db;         /* 0 when absent */
  char *user;     /* NULL: AUTH with the password alone (the default user) */
  char *password; /* NULL: no AUTH; never printed */
  int tls;        /* rediss:// */
} mp__redis_url;

/* Longest URL accepted, and longest queue name. */
#define MP_REDIS_URL_MAX 2048
#define MP_REDIS_NAME_MAX 200

/* Most elements in one reply array the library accepts from a server (hiredis' reader bound;
 * its default is 2^32 - 1). The largest legitimate reply is an XAUTOCLAIM or XREADGROUP of
 * MP_REDIS_MAX_PREFETCH entries. */
#define MP_REDIS_MAX_ELEMENTS 65536

/* Most messages one get may take from Redis at once (mp_redis_opts.prefetch). */
#define MP_REDIS_MAX_PREFETCH 256

/* Parses url (percent-escapes allowed in user and password). MP_EINVAL with a message that
 * never contains the password; the caller clears u in every case. */
int mp__redis_url_parse(const char *url, mp__redis_url *u);
void mp__redis_url_clear(mp__redis_url *u);
/* "redis://user@host:port/db": the URL as messages show it, without the password. */
void mp__redis_url_show(const mp__redis_url *u, char *buf, size_t size);

/* ---- one connection --------------------------------------------------------------- */

struct redisReply;
typedef struct mp__redis mp__redis;

typedef struct mp__redis_cfg {
  int connect_timeout_ms; /* one connection attempt, TLS handshake and AUTH included */
  int io_timeout_ms;      /* a reply may be this late (beyond a blocking command's wait)
                             before the connection is taken for lost */
  int reconnect_ms;       /* how long one call keeps trying to get a connection back */
  const char *tls_ca_file;
  /* Runs after every (re)connection, before anything else is sent: the user's state on
   * the server (scripts, groups) and what must be resent. A connection error in it drops
   * the connection and the attempt is retried like a failed connect. */
  int (*on_connect)(mp__redis *r, void *arg);
  void *arg;
} mp__redis_cfg;

/* A handle on one server (the URL is copied); nothing is connected yet. */
int mp__redis_create(mp__redis **r, const char *url, const mp__redis_cfg *cfg);
void mp__redis_free(mp__redis *r);
/* The URL as messages show it (no password). */
const char *mp__redis_where(const mp__redis *r);

/* Connects if need be. A refused, unreachable or silent server is retried with back-off
 * until deadline_ns (-1: forever), capped by reconnect_ms, after at least one attempt:
 * MP_EBROKEN then. AUTH refused: MP_EAUTH; rediss:// without TLS support: MP_ENOTSUP. */
int mp__redis_ensure(mp__redis *r, int64_t deadline_ns);
/* 1 while a connection is up. */
int mp__redis_connected(const mp__redis *r);
/* Counts connections made: a change means state on the old one (a blocked call, unread
 * replies) is gone. */
uint64_t mp__redis_epoch(const mp__redis *r);
/* Drops the connection (the next ensure reconnects). */
void mp__redis_drop(mp__redis *r);

/* Queues one command (binary-safe arguments) and writes everything queued to the socket;
 * the reply is read later by mp__redis_recv, in order. MP_EBROKEN drops the connection. */
int mp__redis_send(mp__redis *r, int argc, const char *const *argv, const size_t *lens);
/* Reads the next reply (free with mp__redis_reply_free). Redis may take wait_ms (a
 * blocking command's own wait; MP_FOREVER: no limit) plus io_timeout_ms: a connection
 * that stays silent longer, closes or breaks is dropped with MP_EBROKEN. A malformed
 * reply is MP_EPROTO (also dropped). */
int mp__redis_recv(mp__redis *r, int wait_ms, struct redisReply **reply);
void mp__redis_reply_free(struct redisReply *reply);
/* Sends a command and reads its reply; an error reply becomes its MP_E* code. */
int mp__redis_call(mp__redis *r, int argc, const char *const *argv, const size_t *lens,
                   struct redisReply **reply);
/* Replies owed by sent commands that nobody has read yet. */
size_t mp__redis_owed(const mp__redis *r);

/* The MP_E* code for an error reply, with a message "<what>: <server text>" (EAUTH for
 * WRONGPASS/NOAUTH, EPERM for NOPERM, ENOMEM for OOM, ECLOSED for the queue's MPCLOSED,
 * EPROTO otherwise); 0 if reply is not an error. */
int mp__redis_reply_error(const mp__redis *r, const struct redisReply *reply, const char *what);
/* Re-sets the thread's last error as code with "<before><last error><after>". */
int mp__redis_amend(int code, const char *before, const char *after);
/* 1 if reply is an error whose text starts with prefix (e.g. "NOSCRIPT"). */
int mp__redis_reply_is(const struct redisReply *reply, const char *prefix);

/* ---- stream entries (redis_reply.c): replies from a server are hostile bytes --------- */

#define MP_REDIS_ID_MAX 48 /* "ms-seq": two 64-bit numbers and a dash, with room */

typedef struct mp__rentry {
  char id[MP_REDIS_ID_MAX];
  int control; /* from the control stream (a close marker) */
  int status;  /* 0; MP_EPROTO: malformed or too large (see why); MP_ENOENT: deleted */
  void *data;  /* the message (malloc'd; never NULL when status is 0) */
  size_t len;
  char why[160]; /* what was wrong, when status is MP_EPROTO */
} mp__rentry;

/* Appends to out[*n..cap) the entries of an XREADGROUP reply (nil: none) over the streams
 * data_key and ctl_key (ctl_key may be NULL). A reply of any other shape, or an entry id
 * that is not "ms-seq", is MP_EPROTO with nothing appended. An entry without a 'd' field,
 * or with one longer than max_message, is appended with status MP_EPROTO; a deleted one
 * (nil fields) with MP_ENOENT. */
int mp__redis_read_entries(const struct redisReply *reply, const char *data_key,
                           const char *ctl_key, size_t max_message, mp__rentry *out, size_t cap,
                           size_t *n);
/* The same for an XAUTOCLAIM reply; cursor receives the next start id ("0-0": done). */
int mp__redis_claim_entries(const struct redisReply *reply, size_t max_message, mp__rentry *out,
                            size_t cap, size_t *n, char cursor[MP_REDIS_ID_MAX]);
/* Frees an entry's data. */
void mp__rentry_clear(mp__rentry *e);

#endif /* MP_REDIS_H */
