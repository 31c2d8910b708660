/* Python's multiprocessing.connection authentication (auth.c): a mutual HMAC challenge.
 * The message rules are pure functions (the fuzzer drives them without sockets), the
 * server's side is a state machine fed one frame at a time (the manager's handshake stage
 * runs many at once without a thread each), and the client's side runs on a connection.
 * Not part of the public API. */
#ifndef MP_AUTH_H
#define MP_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "multiproc.h"

/* Largest frame during the handshake, as Python's recv_bytes(256). */
#define MP_AUTH_FRAME_MAX 256
/* Random bytes in a challenge (Python 3.12's MESSAGE_LENGTH; 3.11 sent 20). */
#define MP_AUTH_NONCE_LEN 40
/* Largest frame the server sends during the handshake ("#CHALLENGE#{sha256}" + nonce). */
#define MP_AUTH_OUT_MAX 64

/* Compares two buffers in time that depends only on their length. 1 if equal. */
int mp__ct_equal(const void *a, const void *b, size_t n);

/* CPython's _get_digest_name_and_payload: how a challenge (after "#CHALLENGE#") or an
 * answer names its digest. Exactly 16 or 20 bytes is the legacy form, HMAC-MD5 without a
 * prefix, whatever the bytes; anything else must start with "{name}" (name one of
 * Python's allowed digests, its '}' within the first 10 bytes). Gives the MP_HMAC_* to
 * use and the prefix's length (0: legacy); MP_EAUTH if the form is not one of these or
 * the digest is one this library cannot compute. */
int mp__auth_digest(const unsigned char *msg, size_t n, int *alg, size_t *prefix_len);
/* CPython's _verify_challenge: checks an answer to our challenge message (the bytes after
 * "#CHALLENGE#"). 0 or MP_EAUTH. */
int mp__auth_verify(const void *key, size_t keylen, const unsigned char *msg, size_t mlen,
                    const unsigned char *answer, size_t alen);
/* CPython's answer_challenge and _create_response: the answer (at most 40 bytes) to a
 * received challenge frame. MP_EAUTH if the frame is no challenge. */
int mp__auth_respond(const void *key, size_t keylen, const unsigned char *frame, size_t n,
                     unsigned char *out, size_t *outlen);

/* The server's side: it delivers its challenge, checks the answer (#WELCOME# or
 * #FAILURE#), then answers the client's challenge and waits for #WELCOME#. */
typedef struct mp__auth_server {
  int state;
  const void *key;
  size_t keylen;
  unsigned char msg[8 + MP_AUTH_NONCE_LEN]; /* our challenge after "#CHALLENGE#" */
} mp__auth_server;

enum { MP_AUTH_MORE = 0, MP_AUTH_DONE = 1 };

/* Starts with the given random nonce; out receives the challenge frame to send. */
void mp__auth_server_start(mp__auth_server *s, const void *key, size_t keylen,
                           const unsigned char nonce[MP_AUTH_NONCE_LEN], unsigned char *out,
                           size_t *outlen);
/* Takes the next frame from the client; out receives the frame to send now (*outlen may
 * be 0). Returns MP_AUTH_MORE, MP_AUTH_DONE (authenticated both ways) or MP_EAUTH (send
 * out, e.g. #FAILURE#, then close). */
int mp__auth_server_feed(mp__auth_server *s, const unsigned char *in, size_t n, unsigned char *out,
                         size_t *outlen);

/* The same two roles over a connection, blocking up to timeout_ms for each: the server
 * delivers its challenge first, then answers the client's; the client the reverse. */
int mp__auth_deliver(mp_conn *c, const void *key, size_t keylen, int timeout_ms);
int mp__auth_answer(mp_conn *c, const void *key, size_t keylen, int timeout_ms);

#endif /* MP_AUTH_H */
