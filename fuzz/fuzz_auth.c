/* Fuzzes the authentication answer parser and the server's handshake (auth.c): CPython's
 * rule for the digest form of a message, the client's answer to any challenge (which must
 * verify against the same challenge and not under another key), and the server's state
 * machine fed any frames, with the harness supplying a correct answer or #WELCOME# on
 * request so the later states are reached too. The property: no crash, outputs within
 * their bounds, and no handshake completes without a correct answer.
 *
 * Input: byte 0 holds flags, the rest is frames, each a length byte then its bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "platform.h"

#define KEY "fuzz key"

static const unsigned char nonce[MP_AUTH_NONCE_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};

/* The digest form: 16 or 20 bytes is legacy, anything accepted otherwise has a prefix. */
static void check_digest_form(const uint8_t *m, size_t n) {
  int alg = 0;
  size_t skip = 99;
  if (mp__auth_digest(m, n, &alg, &skip) != 0)
    return;
  if (alg != MP_HMAC_MD5 && alg != MP_HMAC_SHA256)
    abort();
  if ((n == 16 || n == 20) != (skip == 0))
    abort();
  if (skip > 0 && (skip > 10 || m[0] != '{' || m[skip - 1] != '}'))
    abort();
}

/* The client's answer to a challenge verifies against it, and not under another key. */
static void check_respond(const uint8_t *m, size_t n, int add_header) {
  uint8_t frame[11 + 256], out[64];
  size_t len = 0, olen = 0;
  if (add_header) {
    memcpy(frame, "#CHALLENGE#", 11);
    len = 11;
  }
  memcpy(frame + len, m, n);
  len += n;
  if (mp__auth_respond(KEY, sizeof KEY - 1, frame, len, out, &olen) != 0)
    return;
  if (olen > 40 || len < 11 + 20)
    abort();
  if (mp__auth_verify(KEY, sizeof KEY - 1, frame + 11, len - 11, out, olen) != 0)
    abort();
  if (mp__auth_verify("other", 5, frame + 11, len - 11, out, olen) == 0)
    abort();
}

/* The server's state machine over the frames. */
static void check_server(const uint8_t *frames[], const size_t lens[], size_t n, int flags) {
  mp__auth_server s;
  uint8_t out[MP_AUTH_OUT_MAX], chal[MP_AUTH_OUT_MAX], answer[64];
  size_t olen, clen, alen = 0;
  mp__auth_server_start(&s, KEY, sizeof KEY - 1, nonce, chal, &clen);
  if (mp__auth_respond(KEY, sizeof KEY - 1, chal, clen, answer, &alen) != 0)
    abort();
  int answered_right = 0;
  for (size_t i = 0; i < n; i++) {
    const uint8_t *in = frames[i];
    size_t len = lens[i];
    if (i == 0 && (flags & 2)) { /* the harness answers correctly */
      in = answer;
      len = alen;
    } else if (i == 2 && (flags & 4)) {
      in = (const uint8_t *)"#WELCOME#";
      len = 9;
    }
    if (i == 0)
      answered_right = mp__auth_verify(KEY, sizeof KEY - 1, chal + 11, clen - 11, in, len) == 0;
    int rc = mp__auth_server_feed(&s, in, len, out, &olen);
    if (olen > MP_AUTH_OUT_MAX)
      abort();
    if (i == 0 && (rc == MP_AUTH_MORE) != answered_right)
      abort();
    if (rc == MP_AUTH_DONE && (!answered_right || i != 2))
      abort();
    if (rc != MP_AUTH_MORE)
      return;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  int flags = data[0];
  const uint8_t *frames[16];
  size_t lens[16], n = 0, pos = 1;
  while (pos < size && n < 16) {
    size_t len = data[pos++];
    if (len > size - pos)
      len = size - pos;
    frames[n] = data + pos;
    lens[n++] = len;
    pos += len;
  }
  check_digest_form(data + 1, size - 1);
  if (n > 0) {
    check_respond(frames[0], lens[0], flags & 1);
    check_digest_form(frames[0], lens[0]);
  }
  check_server(frames, lens, n, flags);
  return 0;
}
