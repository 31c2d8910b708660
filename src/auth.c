/* Python's multiprocessing.connection authentication, as CPython 3.12 and 3.13 do it and
 * compatible with 3.11's legacy HMAC-MD5: the server sends "#CHALLENGE#{sha256}" + 40
 * random bytes; the client answers "{sha256}" + HMAC-SHA256 of everything after
 * "#CHALLENGE#" (a 3.11 client: a bare 16-byte HMAC-MD5 of the same bytes); the server
 * sends #WELCOME# or #FAILURE#; then the roles swap. Whether a message carries a digest
 * prefix is decided by its length first, exactly as CPython decides it: a 16-byte MD5
 * answer or a 20-byte challenge that happens to start with '{' is still the legacy form.
 * Digests are compared in constant time; HMAC comes from the platform. */
#include <string.h>

#include "auth.h"
#include "platform.h"

static const char CHALLENGE[] = "#CHALLENGE#";
static const char WELCOME[] = "#WELCOME#";
static const char FAILURE[] = "#FAILURE#";
#define LEN(s) (sizeof(s) - 1)
#define MD5_LEN 16          /* _MD5_DIGEST_LEN */
#define MD5ONLY_LEN 20      /* _MD5ONLY_MESSAGE_LENGTH: a legacy challenge, and the minimum */
#define MAX_DIGEST_NAME 8   /* _MAX_DIGEST_LEN: "sha3_256" */
#define MAX_ANSWER (8 + 32) /* "{sha256}" + 32 bytes */

int mp__ct_equal(const void *a, const void *b, size_t n) {
  const volatile unsigned char *x = a, *y = b;
  unsigned char d = 0;
  for (size_t i = 0; i < n; i++)
    d |= x[i] ^ y[i];
  return d == 0;
}

/* Python's _ALLOWED_DIGESTS; the ones this library computes have an MP_HMAC_*. */
static int digest_by_name(const unsigned char *name, size_t n, int *alg) {
  static const struct {
    const char *name;
    int alg;
  } known[] = {{"md5", MP_HMAC_MD5},
               {"sha256", MP_HMAC_SHA256},
               {"sha384", 0},
               {"sha3_256", 0},
               {"sha3_384", 0}};
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
    if (strlen(known[i].name) != n || memcmp(known[i].name, name, n) != 0)
      continue;
    if (known[i].alg == 0)
      return mp_set_error(MP_EAUTH,
                          "authentication: the peer uses the digest %s, which this "
                          "library does not support (md5 and sha256 it does)",
                          known[i].name);
    *alg = known[i].alg;
    return 0;
  }
  return mp_set_error(MP_EAUTH, "authentication: unsupported message length, missing digest "
                                "prefix, or unsupported digest");
}

int mp__auth_digest(const unsigned char *msg, size_t n, int *alg, size_t *prefix_len) {
  *prefix_len = 0;
  if (n == MD5_LEN || n == MD5ONLY_LEN) { /* legacy: whatever the bytes look like */
    *alg = MP_HMAC_MD5;
    return 0;
  }
  /* message.find(b'}', 1, _MAX_DIGEST_LEN + 2) > 0 */
  size_t stop = n < MAX_DIGEST_NAME + 2 ? n : MAX_DIGEST_NAME + 2;
  const unsigned char *curly = n > 1 && msg[0] == '{' ? memchr(msg + 1, '}', stop - 1) : NULL;
  if (curly == NULL)
    return mp_set_error(MP_EAUTH, "authentication: unsupported message length, missing digest "
                                  "prefix, or unsupported digest");
  int rc = digest_by_name(msg + 1, (size_t)(curly - msg - 1), alg);
  if (rc == 0)
    *prefix_len = (size_t)(curly - msg) + 1;
  return rc;
}

int mp__auth_verify(const void *key, size_t keylen, const unsigned char *msg, size_t mlen,
                    const unsigned char *answer, size_t alen) {
  int alg = 0; /* set whenever mp__auth_digest succeeds; GCC's -O2 cannot tell */
  size_t skip = 0;
  unsigned char want[32];
  size_t wlen = 0;
  int rc = mp__auth_digest(answer, alen, &alg, &skip);
  if (rc == 0)
    rc = mp_plat_hmac(alg, key, keylen, msg, mlen, want, &wlen);
  if (rc < 0)
    return rc;
  if (alen - skip != wlen || !mp__ct_equal(answer + skip, want, wlen))
    return mp_set_error(MP_EAUTH, "authentication: the peer's digest is wrong (a different "
                                  "authkey?)");
  return 0;
}

int mp__auth_respond(const void *key, size_t keylen, const unsigned char *frame, size_t n,
                     unsigned char *out, size_t *outlen) {
  if (n < LEN(CHALLENGE) || memcmp(frame, CHALLENGE, LEN(CHALLENGE)) != 0)
    return mp_set_error(MP_EAUTH, "authentication: the peer did not send a challenge (not a "
                                  "multiprocessing manager, or a wrong protocol?)");
  const unsigned char *msg = frame + LEN(CHALLENGE);
  size_t mlen = n - LEN(CHALLENGE), skip, maclen = 0;
  if (mlen < MD5ONLY_LEN)
    return mp_set_error(MP_EAUTH,
                        "authentication: the peer's challenge is too short (%u "
                        "bytes)",
                        (unsigned)mlen);
  int alg;
  int rc = mp__auth_digest(msg, mlen, &alg, &skip);
  if (rc < 0)
    return rc;
  memcpy(out, msg, skip); /* answer in kind: "{name}" + MAC, or a bare MD5 */
  rc = mp_plat_hmac(alg, key, keylen, msg, mlen, out + skip, &maclen);
  *outlen = skip + maclen;
  return rc;
}

/* ---- the server's side, one frame at a time ------------------------------------------ */

enum { S_ANSWER, S_CHALLENGE, S_WELCOME, S_DONE, S_FAILED };

void mp__auth_server_start(mp__auth_server *s, const void *key, size_t keylen,
                           const unsigned char nonce[MP_AUTH_NONCE_LEN], unsigned char *out,
                           size_t *outlen) {
  s->state = S_ANSWER;
  s->key = key;
  s->keylen = keylen;
  memcpy(s->msg, "{sha256}", 8);
  memcpy(s->msg + 8, nonce, MP_AUTH_NONCE_LEN);
  memcpy(out, CHALLENGE, LEN(CHALLENGE));
  memcpy(out + LEN(CHALLENGE), s->msg, sizeof s->msg);
  *outlen = LEN(CHALLENGE) + sizeof s->msg;
}

static int fail(mp__auth_server *s, int rc) {
  s->state = S_FAILED;
  return rc;
}

int mp__auth_server_feed(mp__auth_server *s, const unsigned char *in, size_t n, unsigned char *out,
                         size_t *outlen) {
  int rc;
  *outlen = 0;
  switch (s->state) {
  case S_ANSWER: /* deliver_challenge: the answer to our challenge */
    rc = mp__auth_verify(s->key, s->keylen, s->msg, sizeof s->msg, in, n);
    memcpy(out, rc == 0 ? WELCOME : FAILURE, LEN(WELCOME));
    *outlen = LEN(WELCOME);
    if (rc < 0)
      return fail(s, rc);
    s->state = S_CHALLENGE;
    return MP_AUTH_MORE;
  case S_CHALLENGE: /* answer_challenge: the client's challenge */
    rc = mp__auth_respond(s->key, s->keylen, in, n, out, outlen);
    if (rc < 0)
      return fail(s, rc);
    s->state = S_WELCOME;
    return MP_AUTH_MORE;
  case S_WELCOME:
    if (n != LEN(WELCOME) || memcmp(in, WELCOME, n) != 0)
      return fail(s, mp_set_error(MP_EAUTH, "authentication: the peer rejected our digest (a "
                                            "different authkey?)"));
    s->state = S_DONE;
    return MP_AUTH_DONE;
  default: return mp_set_error(MP_ESTATE, "authentication: the handshake is over");
  }
}

/* ---- both roles over a connection ----------------------------------------------------- */

/* Milliseconds until deadline (>= 0). */
static int left_ms(uint64_t deadline) {
  uint64_t now = mp_plat_monotonic_ns();
  return now >= deadline ? 0 : (int)((deadline - now) / 1000000 + 1);
}

/* Receives one handshake frame (at most MP_AUTH_FRAME_MAX bytes) into buf. */
static int recv_small(mp_conn *c, uint64_t deadline, unsigned char *buf, size_t *len) {
  void *p = NULL;
  size_t n = 0;
  size_t max = mp_conn_max_message(c);
  mp_conn_set_max_message(c, MP_AUTH_FRAME_MAX);
  int rc = mp_conn_recv(c, &p, &n, left_ms(deadline));
  mp_conn_set_max_message(c, max);
  if (rc == MP_ETIMEDOUT)
    return mp_set_error(MP_ETIMEDOUT, "authentication: the peer did not answer in time");
  if (rc == MP_EPROTO)
    return mp_set_error(MP_EAUTH, "authentication: the peer sent an oversized or malformed "
                                  "handshake message");
  if (rc == 0) {
    memcpy(buf, p, n);
    *len = n;
    mp_free(p);
  }
  return rc;
}

int mp__auth_deliver(mp_conn *c, const void *key, size_t keylen, int timeout_ms) {
  uint64_t deadline = mp_plat_monotonic_ns() + (uint64_t)timeout_ms * 1000000u;
  unsigned char nonce[MP_AUTH_NONCE_LEN], out[MP_AUTH_OUT_MAX], in[MP_AUTH_FRAME_MAX];
  size_t olen, ilen;
  mp__auth_server s;
  int rc = mp_plat_random_bytes(nonce, sizeof nonce);
  if (rc < 0)
    return rc;
  mp__auth_server_start(&s, key, keylen, nonce, out, &olen);
  rc = mp_conn_send(c, out, olen);
  if (rc == 0)
    rc = recv_small(c, deadline, in, &ilen);
  if (rc < 0)
    return rc;
  rc = mp__auth_server_feed(&s, in, ilen, out, &olen);
  int src = mp_conn_send(c, out, olen); /* #WELCOME# or #FAILURE# */
  return rc < 0 ? rc : src;
}

int mp__auth_answer(mp_conn *c, const void *key, size_t keylen, int timeout_ms) {
  uint64_t deadline = mp_plat_monotonic_ns() + (uint64_t)timeout_ms * 1000000u;
  unsigned char in[MP_AUTH_FRAME_MAX], out[MAX_ANSWER];
  size_t ilen, olen = 0;
  int rc = recv_small(c, deadline, in, &ilen);
  if (rc == 0)
    rc = mp__auth_respond(key, keylen, in, ilen, out, &olen);
  if (rc == 0)
    rc = mp_conn_send(c, out, olen);
  if (rc == 0)
    rc = recv_small(c, deadline, in, &ilen);
  if (rc == 0 && (ilen != LEN(WELCOME) || memcmp(in, WELCOME, ilen) != 0))
    rc = mp_set_error(MP_EAUTH, "authentication: the peer rejected our digest (a different "
                                "authkey?)");
  return rc;
}
