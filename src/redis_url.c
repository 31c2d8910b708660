/* Redis URLs: redis://[[user]:password@]host[:port][/db], and rediss:// for TLS, as
 * redis-py's from_url reads them. The password never appears in a message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis.h"

static int bad(const char *why) { return mp_set_error(MP_EINVAL, "redis URL: %s", why); }

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* A malloc'd copy of s[0..n) with %XX escapes decoded; NULL (error set) on a bad escape,
 * an escaped NUL, or no memory. what names the part for the message. */
static char *decode(const char *s, size_t n, const char *what) {
  char *out = malloc(n + 1), *o = out;
  if (out == NULL) {
    mp_set_error(MP_ENOMEM, "redis URL: out of memory");
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    if (s[i] != '%') {
      *o++ = s[i];
      continue;
    }
    int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
    int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
    if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
      free(out);
      mp_set_error(MP_EINVAL, "redis URL: bad %%-escape in the %s", what);
      return NULL;
    }
    *o++ = (char)(hi * 16 + lo);
    i += 2;
  }
  *o = '\0';
  return out;
}

/* Reads a decimal number in [lo, hi] from s[0..n). */
static int number(const char *s, size_t n, long lo, long hi, long *out) {
  if (n == 0 || n > 10)
    return -1;
  long v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (s[i] - '0');
  }
  if (v < lo || v > hi)
    return -1;
  *out = v;
  return 0;
}

static int host_char_ok(char c, int bracketed) {
  if (bracketed)
    return hexval(c) >= 0 || c == ':' || c == '.';
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '_';
}

/* host[:port] from s[0..n). */
static int parse_hostport(const char *s, size_t n, mp__redis_url *u) {
  const char *h = s, *rest;
  size_t hn;
  int bracketed = n > 0 && s[0] == '[';
  if (bracketed) {
    const char *close = memchr(s, ']', n);
    if (close == NULL)
      return bad("an IPv6 host needs its closing ']'");
    h = s + 1;
    hn = (size_t)(close - h);
    rest = close + 1;
  } else {
    const char *colon = memchr(s, ':', n);
    hn = colon ? (size_t)(colon - s) : n;
    rest = s + hn;
  }
  if (hn == 0 || hn > 253)
    return bad(hn == 0 ? "no host" : "host name too long");
  for (size_t i = 0; i < hn; i++)
    if (!host_char_ok(h[i], bracketed))
      return bad("invalid character in the host");
  size_t rn = (size_t)(s + n - rest);
  long port = 6379;
  if (rn > 0 && (rest[0] != ':' || number(rest + 1, rn - 1, 1, 65535, &port) < 0))
    return bad("the port must be a number from 1 to 65535");
  u->host = malloc(hn + 1);
  if (u->host == NULL)
    return mp_set_error(MP_ENOMEM, "redis URL: out of memory");
  memcpy(u->host, h, hn);
  u->host[hn] = '\0';
  u->port = (int)port;
  return 0;
}

/* [user]:password from s[0..n). */
static int parse_userinfo(const char *s, size_t n, mp__redis_url *u) {
  const char *colon = memchr(s, ':', n);
  if (colon == NULL)
    return bad("give user:password (or :password) before '@'");
  size_t un = (size_t)(colon - s);
  if (un > 0 && (u->user = decode(s, un, "user name")) == NULL)
    return mp_last_error_code();
  if ((u->password = decode(colon + 1, n - un - 1, "password")) == NULL)
    return mp_last_error_code();
  return 0;
}

int mp__redis_url_parse(const char *url, mp__redis_url *u) {
  memset(u, 0, sizeof *u);
  if (url == NULL)
    return bad("url is NULL");
  size_t len = strnlen(url, MP_REDIS_URL_MAX + 1);
  if (len > MP_REDIS_URL_MAX)
    return bad("longer than 2048 bytes");
  const char *p;
  if (strncmp(url, "redis://", 8) == 0)
    p = url + 8;
  else if (strncmp(url, "rediss://", 9) == 0) {
    p = url + 9;
    u->tls = 1;
  } else
    return bad("it must start with redis:// or rediss://");
  const char *end = url + len;
  const char *slash = memchr(p, '/', (size_t)(end - p));
  const char *auth_end = slash ? slash : end;
  /* The last '@' ends the user part, so an unescaped '@' in a password still works. */
  const char *at = NULL;
  for (const char *c = p; c < auth_end; c++)
    if (*c == '@')
      at = c;
  int rc = 0;
  if (at != NULL)
    rc = parse_userinfo(p, (size_t)(at - p), u);
  if (rc == 0)
    rc = parse_hostport(at ? at + 1 : p, (size_t)(auth_end - (at ? at + 1 : p)), u);
  long db = 0;
  if (rc == 0 && slash != NULL && slash + 1 < end &&
      number(slash + 1, (size_t)(end - slash - 1), 0, 0x7fffffff, &db) < 0)
    rc = bad("the path must be a database number (redis://host:port/0); no query options");
  u->db = (int)db;
  return rc;
}

void mp__redis_url_clear(mp__redis_url *u) {
  free(u->host);
  free(u->user);
  if (u->password != NULL) { /* do not leave it lying around in freed memory */
    volatile char *v = u->password;
    while (*v)
      *v++ = 0;
  }
  free(u->password);
  memset(u, 0, sizeof *u);
}

void mp__redis_url_show(const mp__redis_url *u, char *buf, size_t size) {
  int v6 = u->host && strchr(u->host, ':') != NULL;
  snprintf(buf, size, "%s://%s%s%s%s%s:%d/%d", u->tls ? "rediss" : "redis", u->user ? u->user : "",
           u->user ? "@" : "", v6 ? "[" : "", u->host ? u->host : "", v6 ? "]" : "", u->port,
           u->db);
}
