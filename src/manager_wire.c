/* What the manager's server and client share: Python's multiprocessing.connection
 * authentication (a mutual HMAC challenge), addresses, and pickled messages on a
 * connection. Nothing is unpickled before both directions of the challenge succeeded:
 * these functions only move raw bytes of at most MP_MANAGER_HANDSHAKE_MAX. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manager.h"
#include "platform.h"

static const char CHALLENGE[] = "#CHALLENGE#";
static const char WELCOME[] = "#WELCOME#";
static const char FAILURE[] = "#FAILURE#";
#define LEN(s) (sizeof(s) - 1)
#define NONCE_LEN 40 /* Python 3.12's MESSAGE_LENGTH; 3.11 used 20 */
#define MIN_NONCE 20 /* Python's _MD5ONLY_MESSAGE_LENGTH: shorter challenges are refused */

int mp__ct_equal(const void *a, const void *b, size_t n) {
  const volatile unsigned char *x = a, *y = b;
  unsigned char d = 0;
  for (size_t i = 0; i < n; i++)
    d |= x[i] ^ y[i];
  return d == 0;
}

/* Milliseconds until deadline (>= 0). */
static int left_ms(uint64_t deadline) {
  uint64_t now = mp_plat_monotonic_ns();
  return now >= deadline ? 0 : (int)((deadline - now) / 1000000 + 1);
}

static int recv_small(mp_conn *c, uint64_t deadline, void **buf, size_t *len) {
  int rc = mp_conn_recv(c, buf, len, left_ms(deadline));
  if (rc == MP_ETIMEDOUT)
    return mp_set_error(MP_ETIMEDOUT, "authentication: the peer did not answer in time");
  if (rc == MP_EPROTO)
    return mp_set_error(MP_EAUTH, "authentication: the peer sent an oversized or malformed "
                                  "handshake message");
  return rc;
}

/* Parses an optional "{name}" prefix: 0 none, or the MP_HMAC_* it names; -1 unsupported. */
static int digest_prefix(const unsigned char *p, size_t n, size_t *skip) {
  *skip = 0;
  if (n == 0 || p[0] != '{')
    return 0;
  const unsigned char *end = memchr(p, '}', n < 20 ? n : 20);
  if (end == NULL)
    return 0; /* no name: Python reads such a message as a legacy one too */
  size_t len = (size_t)(end - p) - 1;
  *skip = len + 2;
  if (len == 3 && memcmp(p + 1, "md5", 3) == 0)
    return MP_HMAC_MD5;
  if (len == 6 && memcmp(p + 1, "sha256", 6) == 0)
    return MP_HMAC_SHA256;
  return -1;
}

int mp__auth_deliver(mp_conn *c, const void *key, size_t keylen, int timeout_ms) {
  uint64_t deadline = mp_plat_monotonic_ns() + (uint64_t)timeout_ms * 1000000u;
  unsigned char msg[LEN(CHALLENGE) + 8 + NONCE_LEN];
  memcpy(msg, CHALLENGE, LEN(CHALLENGE));
  memcpy(msg + LEN(CHALLENGE), "{sha256}", 8);
  int rc = mp_plat_random_bytes(msg + LEN(CHALLENGE) + 8, NONCE_LEN);
  if (rc == 0)
    rc = mp_conn_send(c, msg, sizeof msg);
  void *resp = NULL;
  size_t n = 0;
  if (rc == 0)
    rc = recv_small(c, deadline, &resp, &n);
  if (rc < 0)
    return rc;
  /* A 3.12+ peer answers "{sha256}" + MAC; a 3.11 peer a bare HMAC-MD5. Both cover the
   * whole challenge after "#CHALLENGE#", prefix included. */
  size_t skip;
  int alg = digest_prefix(resp, n, &skip);
  unsigned char want[32];
  size_t wlen = 0;
  const unsigned char *nonce = msg + LEN(CHALLENGE);
  if (alg >= 0)
    rc = mp_plat_hmac(alg ? alg : MP_HMAC_MD5, key, keylen, nonce, 8 + NONCE_LEN, want, &wlen);
  int ok = alg >= 0 && rc == 0 && n - skip == wlen &&
           mp__ct_equal((unsigned char *)resp + skip, want, wlen);
  free(resp);
  int src = mp_conn_send(c, ok ? WELCOME : FAILURE, ok ? LEN(WELCOME) : LEN(FAILURE));
  if (!ok)
    return rc < 0 ? rc
                  : mp_set_error(MP_EAUTH, "authentication: the peer's digest is wrong "
                                           "(a different authkey?)");
  return src;
}

int mp__auth_answer(mp_conn *c, const void *key, size_t keylen, int timeout_ms) {
  uint64_t deadline = mp_plat_monotonic_ns() + (uint64_t)timeout_ms * 1000000u;
  void *msg = NULL;
  size_t n = 0;
  int rc = recv_small(c, deadline, &msg, &n);
  if (rc < 0)
    return rc;
  const unsigned char *p = msg;
  if (n < LEN(CHALLENGE) + MIN_NONCE || memcmp(p, CHALLENGE, LEN(CHALLENGE)) != 0) {
    free(msg);
    return mp_set_error(MP_EAUTH, "authentication: the peer did not send a valid challenge "
                                  "(not a multiprocessing manager, or a wrong protocol?)");
  }
  p += LEN(CHALLENGE);
  n -= LEN(CHALLENGE);
  size_t skip;
  int alg = digest_prefix(p, n, &skip);
  unsigned char resp[8 + 32];
  size_t off = 0, mlen = 0;
  if (alg < 0)
    rc = mp_set_error(MP_EAUTH, "authentication: the peer asks for a digest this library "
                                "does not support (md5 and sha256 are)");
  if (alg > 0) { /* answer in kind: "{name}" + MAC */
    off = skip;
    memcpy(resp, p, skip);
  }
  if (rc == 0)
    rc = mp_plat_hmac(alg ? alg : MP_HMAC_MD5, key, keylen, p, n, resp + off, &mlen);
  free(msg);
  if (rc == 0)
    rc = mp_conn_send(c, resp, off + mlen);
  void *reply = NULL;
  if (rc == 0)
    rc = recv_small(c, deadline, &reply, &n);
  if (rc < 0)
    return rc;
  int ok = n == LEN(WELCOME) && memcmp(reply, WELCOME, n) == 0;
  free(reply);
  return ok ? 0
            : mp_set_error(MP_EAUTH, "authentication: the peer rejected our digest "
                                     "(a different authkey?)");
}

int mp__split_address(const char *address, char *host, size_t hostsize, int *port) {
  const char *colon = address ? strrchr(address, ':') : NULL;
  if (colon == NULL)
    return mp_set_error(MP_EINVAL, "manager address '%s' is not \"host:port\"",
                        address ? address : "(null)");
  size_t hl = (size_t)(colon - address);
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (hl >= hostsize || *end != '\0' || end == colon + 1 || p < 0 || p > 65535)
    return mp_set_error(MP_EINVAL, "manager address '%s': bad host or port", address);
  memcpy(host, address, hl);
  host[hl] = '\0';
  if (strcmp(host, "0.0.0.0") == 0)
    host[0] = '\0';
  *port = (int)p;
  return 0;
}
