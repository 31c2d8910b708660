/* One connection to Redis through hiredis' synchronous API: connect with a timeout, TLS
 * (rediss://, where hiredis_ssl is built), AUTH and SELECT from the URL, pipelined commands,
 * and the reconnect policy (back-off, bounded by the caller's deadline and reconnect_ms).
 * hiredis keeps the sockets (and Winsock's set-up) to itself; SIGPIPE from its writes is
 * held off through platform.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#if MP_HAVE_REDIS_TLS
#  include <hiredis/hiredis_ssl.h>
#  include <openssl/ssl.h>
#  include <openssl/x509v3.h>
#endif

#include "platform.h"
#include "redis.h"

struct mp__redis {
  mp__redis_url url;
  char where[MP_REDIS_URL_MAX];
  mp__redis_cfg cfg;
  char *ca_file;
  redisContext *c;
  uint64_t epoch;
  size_t owed;
  int timeout_ms; /* the socket timeout now set; -2: unknown */
#if MP_HAVE_REDIS_TLS
  SSL_CTX *ssl_ctx;
#endif
};

/* hiredis' own write for plain TCP uses send() without MSG_NOSIGNAL; this one goes through
 * the platform, which never raises SIGPIPE, so plain connections need no signal mask
 * changes per write (TLS writes, done by OpenSSL, are guarded with mp_plat_sigpipe_hold). */
static ssize_t plain_write(redisContext *c) {
  size_t sent = 0;
  int rc = mp_plat_sock_send((uint64_t)c->fd, c->obuf, sdslen(c->obuf), &sent);
  if (rc == 0)
    return (ssize_t)sent;
  c->err = REDIS_ERR_IO;
  snprintf(c->errstr, sizeof c->errstr, "%s", mp_last_error());
  return -1;
}

static redisContextFuncs plain_funcs;

/* The calling thread's SIGPIPE guard, for TLS connections only. */
static int guard(const mp__redis *r) { return r->url.tls ? mp_plat_sigpipe_hold() : -1; }
static void unguard(int token) {
  if (token >= 0)
    mp_plat_sigpipe_release(token);
}

int mp__redis_create(mp__redis **out, const char *url, const mp__redis_cfg *cfg) {
  mp__redis *r = calloc(1, sizeof *r);
  if (r == NULL)
    return mp_set_error(MP_ENOMEM, "redis: out of memory");
  int rc = mp__redis_url_parse(url, &r->url);
  if (rc == 0 && r->url.tls && !MP_HAVE_REDIS_TLS)
    rc = mp_set_error(MP_ENOTSUP, "rediss:// (TLS) is not supported by this build: hiredis_ssl was "
                                  "not available (the Windows build has none; see docs/redis.md)");
  if (rc == 0 && cfg->tls_ca_file && (r->ca_file = strdup(cfg->tls_ca_file)) == NULL)
    rc = mp_set_error(MP_ENOMEM, "redis: out of memory");
  if (rc < 0) {
    mp__redis_url_clear(&r->url);
    free(r);
    return rc;
  }
  mp__redis_url_show(&r->url, r->where, sizeof r->where);
  r->cfg = *cfg;
  r->cfg.tls_ca_file = r->ca_file;
  r->timeout_ms = -2;
  *out = r;
  return 0;
}

void mp__redis_drop(mp__redis *r) {
  if (r->c != NULL) {
    int token = guard(r);
    redisFree(r->c);
    unguard(token);
  }
  r->c = NULL;
  r->owed = 0;
  r->timeout_ms = -2;
}

void mp__redis_free(mp__redis *r) {
  if (r == NULL)
    return;
  mp__redis_drop(r);
#if MP_HAVE_REDIS_TLS
  if (r->ssl_ctx)
    SSL_CTX_free(r->ssl_ctx);
#endif
  mp__redis_url_clear(&r->url);
  free(r->ca_file);
  free(r);
}

const char *mp__redis_where(const mp__redis *r) { return r->where; }
int mp__redis_connected(const mp__redis *r) { return r->c != NULL; }
uint64_t mp__redis_epoch(const mp__redis *r) { return r->epoch; }
size_t mp__redis_owed(const mp__redis *r) { return r->owed; }
void mp__redis_reply_free(redisReply *reply) { freeReplyObject(reply); }

static struct timeval tv_ms(int ms) {
  struct timeval tv;
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  return tv;
}

/* The connection failed (hiredis' context error): drop it, MP_EBROKEN or MP_EPROTO. */
static int lost(mp__redis *r, const char *what) {
  int proto = r->c && r->c->err == REDIS_ERR_PROTOCOL;
  char why[128];
  snprintf(why, sizeof why, "%s", r->c && r->c->errstr[0] ? r->c->errstr : "connection lost");
  mp__redis_drop(r);
  return mp_set_error(proto ? MP_EPROTO : MP_EBROKEN, "%s: %s: %s%s", r->where, what, why,
                      proto ? " (not a Redis server?)" : "");
}

int mp__redis_reply_is(const redisReply *reply, const char *prefix) {
  return reply && reply->type == REDIS_REPLY_ERROR && reply->str &&
         strncmp(reply->str, prefix, strlen(prefix)) == 0;
}

int mp__redis_reply_error(const mp__redis *r, const redisReply *reply, const char *what) {
  if (reply == NULL || reply->type != REDIS_REPLY_ERROR)
    return 0;
  static const struct {
    const char *prefix;
    int code;
  } map[] = {{"WRONGPASS", MP_EAUTH},  {"NOAUTH", MP_EAUTH},      {"NOPERM", MP_EPERM},
             {"OOM", MP_ENOMEM},       {"MPCLOSED", MP_ECLOSED},  {"READONLY", MP_EPERM},
             {"LOADING", MP_EBROKEN},  {"BUSY ", MP_EBROKEN},     {"MASTERDOWN", MP_EBROKEN},
             {"TRYAGAIN", MP_EBROKEN}, {"UNBLOCKED", MP_EBROKEN}, {"NOGROUP", MP_EBROKEN},
             {"NOSCRIPT", MP_EBROKEN}, {"MPKIND", MP_EINVAL}};
  int code = MP_EPROTO;
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
    if (mp__redis_reply_is(reply, map[i].prefix)) {
      code = map[i].code;
      break;
    }
  return mp_set_error(code, "%s: %s: %s", r->where, what, reply->str ? reply->str : "error");
}

int mp__redis_amend(int code, const char *before, const char *after) {
  char last[512];
  snprintf(last, sizeof last, "%s", mp_last_error());
  return mp_set_error(code, "%s%s%s", before, last, after);
}

int mp__redis_send(mp__redis *r, int argc, const char *const *argv, const size_t *lens) {
  if (r->c == NULL)
    return mp_set_error(MP_EBROKEN, "%s: not connected", r->where);
  if (redisAppendCommandArgv(r->c, argc, (const char **)argv, lens) != REDIS_OK)
    return lost(r, "queueing a command");
  int token = guard(r), done = 0, ok = REDIS_OK;
  while (!done && ok == REDIS_OK)
    ok = redisBufferWrite(r->c, &done);
  unguard(token);
  if (ok != REDIS_OK)
    return lost(r, "sending");
  r->owed++;
  return 0;
}

int mp__redis_recv(mp__redis *r, int wait_ms, redisReply **reply) {
  *reply = NULL;
  if (r->c == NULL)
    return mp_set_error(MP_EBROKEN, "%s: not connected", r->where);
  /* 0 is "no limit" for the socket: a blocking command that may wait forever. */
  int limit = wait_ms == MP_FOREVER ? 0 : wait_ms + r->cfg.io_timeout_ms;
  if (limit != r->timeout_ms) {
    if (redisSetTimeout(r->c, tv_ms(limit)) != REDIS_OK)
      return lost(r, "setting the socket timeout");
    r->timeout_ms = limit;
  }
  int token = guard(r);
  void *out = NULL;
  int ok = redisGetReply(r->c, &out);
  unguard(token);
  if (ok != REDIS_OK || out == NULL)
    return lost(r, "waiting for a reply");
  if (r->owed > 0)
    r->owed--;
  *reply = out;
  return 0;
}

int mp__redis_call(mp__redis *r, int argc, const char *const *argv, const size_t *lens,
                   redisReply **reply) {
  int rc = mp__redis_send(r, argc, argv, lens);
  while (rc == 0 && r->owed > 1) { /* earlier replies nobody wanted */
    rc = mp__redis_recv(r, 0, reply);
    mp__redis_reply_free(*reply);
    *reply = NULL;
  }
  if (rc == 0)
    rc = mp__redis_recv(r, 0, reply);
  if (rc == 0 && (*reply)->type == REDIS_REPLY_ERROR) {
    rc = mp__redis_reply_error(r, *reply, argv[0]);
    mp__redis_reply_free(*reply);
    *reply = NULL;
  }
  return rc;
}

/* ---- connecting ------------------------------------------------------------------- */

#if MP_HAVE_REDIS_TLS
/* Verifies the server's certificate chain (the CA file, else the system's store) and that
 * it names the URL's host, which hiredis' own context would not check. */
static int tls_start(mp__redis *r) {
  if (r->ssl_ctx == NULL) {
    r->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (r->ssl_ctx == NULL)
      return mp_set_error(MP_ENOMEM, "%s: cannot make a TLS context", r->where);
    SSL_CTX_set_min_proto_version(r->ssl_ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(r->ssl_ctx, SSL_VERIFY_PEER, NULL);
    int ok = r->ca_file ? SSL_CTX_load_verify_locations(r->ssl_ctx, r->ca_file, NULL)
                        : SSL_CTX_set_default_verify_paths(r->ssl_ctx);
    if (ok != 1) {
      SSL_CTX_free(r->ssl_ctx);
      r->ssl_ctx = NULL;
      return mp_set_error(MP_EINVAL, "%s: cannot load the CA certificates %s", r->where,
                          r->ca_file ? r->ca_file : "of the system");
    }
  }
  SSL *ssl = SSL_new(r->ssl_ctx);
  if (ssl == NULL)
    return mp_set_error(MP_ENOMEM, "%s: cannot make a TLS session", r->where);
  X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
  int is_ip = X509_VERIFY_PARAM_set1_ip_asc(param, r->url.host) == 1;
  if (!is_ip) {
    SSL_set_tlsext_host_name(ssl, r->url.host);
    X509_VERIFY_PARAM_set1_host(param, r->url.host, 0);
  }
  if (redisInitiateSSL(r->c, ssl) != REDIS_OK) {
    SSL_free(ssl); /* hiredis owns it only on success */
    char why[200];
    snprintf(why, sizeof why, "%s", r->c->errstr);
    mp__redis_drop(r);
    return mp_set_error(MP_EAUTH,
                        "%s: TLS handshake failed (server certificate not trusted or "
                        "not for this host?): %s",
                        r->where, why);
  }
  return 0;
}
#endif

/* AUTH and SELECT, pipelined: one round trip. */
static int login(mp__redis *r) {
  char db[16];
  snprintf(db, sizeof db, "%d", r->url.db);
  const char *auth[3] = {"AUTH", r->url.user, r->url.password};
  size_t auth_len[3] = {4, r->url.user ? strlen(r->url.user) : 0,
                        r->url.password ? strlen(r->url.password) : 0};
  int rc = 0, sent_auth = r->url.password != NULL, sent_select = r->url.db != 0;
  if (sent_auth) {
    if (r->url.user)
      rc = mp__redis_send(r, 3, auth, auth_len);
    else {
      const char *a[2] = {"AUTH", r->url.password};
      size_t al[2] = {4, auth_len[2]};
      rc = mp__redis_send(r, 2, a, al);
    }
  }
  const char *sel[2] = {"SELECT", db};
  size_t sel_len[2] = {6, strlen(db)};
  if (rc == 0 && sent_select)
    rc = mp__redis_send(r, 2, sel, sel_len);
  for (int i = 0; rc == 0 && i < sent_auth + sent_select; i++) {
    redisReply *reply;
    rc = mp__redis_recv(r, 0, &reply);
    if (rc == 0 && reply->type == REDIS_REPLY_ERROR) {
      int auth_reply = i == 0 && sent_auth;
      rc = mp__redis_reply_error(r, reply, auth_reply ? "AUTH refused" : "SELECT refused");
      if (auth_reply) /* whatever Redis calls it, a refused AUTH is an authentication error */
        rc = mp__redis_amend(MP_EAUTH, "", "");
    }
    mp__redis_reply_free(reply);
  }
  return rc;
}

static int connect_once(mp__redis *r) {
  redisOptions o;
  memset(&o, 0, sizeof o);
  struct timeval ctv = tv_ms(r->cfg.connect_timeout_ms);
  struct timeval iotv = tv_ms(r->cfg.io_timeout_ms);
  REDIS_OPTIONS_SET_TCP(&o, r->url.host, r->url.port);
  o.connect_timeout = &ctv;
  o.command_timeout = &iotv;
  redisContext *c = redisConnectWithOptions(&o);
  if (c == NULL)
    return mp_set_error(MP_ENOMEM, "%s: out of memory connecting", r->where);
  if (c->err) {
    int rc = mp_set_error(MP_EBROKEN, "%s: cannot connect: %s", r->where, c->errstr);
    redisFree(c);
    return rc;
  }
  redisEnableKeepAlive(c);
  if (!r->url.tls) { /* TLS replaces the functions with its own at the handshake */
    mp_plat_global_lock();
    if (plain_funcs.write == NULL) {
      plain_funcs = *c->funcs;
      plain_funcs.write = plain_write;
    }
    mp_plat_global_unlock();
    c->funcs = &plain_funcs;
  }
  c->reader->maxelements =
      MP_REDIS_MAX_ELEMENTS; /* a hostile server cannot make us allocate more */
  r->c = c;
  r->owed = 0;
  r->timeout_ms = r->cfg.io_timeout_ms;
  int rc = 0;
#if MP_HAVE_REDIS_TLS
  if (r->url.tls) {
    int token = guard(r);
    rc = tls_start(r);
    unguard(token);
  }
#endif
  if (rc == 0)
    rc = login(r);
  if (rc == 0) {
    r->epoch++;
    if (r->cfg.on_connect)
      rc = r->cfg.on_connect(r, r->cfg.arg);
  }
  if (rc < 0)
    mp__redis_drop(r);
  return rc;
}

/* Sleeps until deadline_ns on a private condition variable (nobody signals it). */
static void sleep_until(int64_t deadline_ns) {
  mp_plat_mutex m;
  mp_plat_cond cv;
  if (mp_plat_mutex_init(&m) < 0)
    return;
  if (mp_plat_cond_init(&cv) == 0) {
    mp_plat_mutex_lock(&m);
    while ((int64_t)mp_plat_monotonic_ns() < deadline_ns)
      mp_plat_cond_wait(&cv, &m, deadline_ns);
    mp_plat_mutex_unlock(&m);
    mp_plat_cond_destroy(&cv);
  }
  mp_plat_mutex_destroy(&m);
}

int mp__redis_ensure(mp__redis *r, int64_t deadline_ns) {
  if (r->c != NULL)
    return 0;
  int64_t start = (int64_t)mp_plat_monotonic_ns();
  int64_t limit = start + (int64_t)r->cfg.reconnect_ms * 1000000;
  if (deadline_ns >= 0 && deadline_ns < limit)
    limit = deadline_ns;
  int64_t backoff = 50000000; /* 50 ms, doubling to 1 s */
  for (;;) {
    int rc = connect_once(r);
    /* Only an unreachable or not yet ready server is worth waiting for. */
    if (rc != MP_EBROKEN)
      return rc;
    int64_t now = (int64_t)mp_plat_monotonic_ns();
    if (now >= limit) {
      char after[80];
      snprintf(after, sizeof after, " (Redis unreachable; tried for %lld ms)",
               (long long)((now - start) / 1000000));
      return mp__redis_amend(MP_EBROKEN, "", after);
    }
    sleep_until(now + backoff < limit ? now + backoff : limit);
    backoff = backoff * 2 > 1000000000 ? 1000000000 : backoff * 2;
  }
}
