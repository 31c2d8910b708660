/* multiprocessing.connection authentication (auth.c), without sockets: CPython's rules for
 * telling the legacy form (16- or 20-byte messages, HMAC-MD5, no prefix) from "{digest}"
 * messages, checked with crafted bytes rather than chance; answers in kind; refusals of
 * short challenges, unknown or unsupported digests and wrong digests; and the server's
 * state machine through a whole handshake and its failures. */
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "platform.h"
#include "testutil.h"

#define CHALLENGE "#CHALLENGE#"

static const unsigned char nonce[MP_AUTH_NONCE_LEN] = "0123456789abcdefghijklmnopqrstuvwxyzABCD";

static void expect_eauth(int rc, const char *needle) {
  assert_int_equal(rc, MP_EAUTH);
  if (needle && strstr(mp_last_error(), needle) == NULL)
    fail_msg("message '%s' lacks '%s'", mp_last_error(), needle);
}

/* The digest form of a message: CPython's _get_digest_name_and_payload. */
static void digest_form_is_decided_by_length_first(void **state) {
  (void)state;
  int alg;
  size_t skip;
  /* 16 and 20 bytes are legacy whatever they look like. */
  const unsigned char *looks = (const unsigned char *)"{sha256}0123456789abcdef";
  assert_mp_ok(mp__auth_digest(looks, 16, &alg, &skip));
  assert_int_equal(alg, MP_HMAC_MD5);
  assert_int_equal(skip, 0);
  assert_mp_ok(mp__auth_digest(looks, 20, &alg, &skip));
  assert_int_equal(alg, MP_HMAC_MD5);
  assert_int_equal(skip, 0);
  /* Other lengths need a prefix naming an allowed digest, '}' within the first 10 bytes. */
  assert_mp_ok(mp__auth_digest(looks, 24, &alg, &skip));
  assert_int_equal(alg, MP_HMAC_SHA256);
  assert_int_equal(skip, 8);
  assert_mp_ok(mp__auth_digest((const unsigned char *)"{md5}0123456789abcdef", 21, &alg, &skip));
  assert_int_equal(alg, MP_HMAC_MD5);
  assert_int_equal(skip, 5);
  expect_eauth(mp__auth_digest((const unsigned char *)"0123456789abcdefghijklmn", 24, &alg, &skip),
               "missing digest prefix");
  expect_eauth(mp__auth_digest((const unsigned char *)"{sha256xx}0123456789abcd", 24, &alg, &skip),
               "missing digest prefix");
  expect_eauth(mp__auth_digest((const unsigned char *)"{}0123456789abcdefghijkl", 24, &alg, &skip),
               "missing digest prefix");
  expect_eauth(mp__auth_digest((const unsigned char *)"{sha384}0123456789abcdef", 24, &alg, &skip),
               "sha384");
  expect_eauth(mp__auth_digest((const unsigned char *)"{", 1, &alg, &skip), NULL);
  expect_eauth(mp__auth_digest((const unsigned char *)"", 0, &alg, &skip), NULL);
}

/* Finds a key whose HMAC-MD5 of msg starts with '{' and has '}' within the first ten bytes:
 * a correct legacy answer that looks like a "{digest}" prefix (about 1 key in 7,000). */
static size_t crafted_key(const unsigned char *msg, size_t mlen, char *key, unsigned char *mac) {
  for (unsigned i = 0;; i++) {
    size_t klen = (size_t)snprintf(key, 32, "key-%u", i), n;
    assert_mp_ok(mp_plat_hmac(MP_HMAC_MD5, key, klen, msg, mlen, mac, &n));
    if (mac[0] == '{' && memchr(mac + 1, '}', 9) != NULL)
      return klen;
  }
}

/* Issue 11, class 8: a 3.11 client's correct answer that happens to start with '{' and
 * contain '}' was taken for a prefix and refused (about once in 2,000 handshakes). */
static void legacy_answer_that_looks_prefixed_is_accepted(void **state) {
  (void)state;
  mp__auth_server s;
  unsigned char out[MP_AUTH_OUT_MAX], mac[32];
  size_t olen;
  char key[32];
  mp__auth_server_start(&s, "unused", 6, nonce, out, &olen);
  size_t klen = crafted_key(out + 11, olen - 11, key, mac);
  mp__auth_server_start(&s, key, klen, nonce, out, &olen);
  assert_int_equal(mp__auth_server_feed(&s, mac, 16, out, &olen), MP_AUTH_MORE);
  assert_int_equal(olen, 9);
  assert_memory_equal(out, "#WELCOME#", 9);
  /* And mp__auth_verify directly, as the C client's server side uses it. */
  assert_mp_ok(mp__auth_verify(key, klen, s.msg, sizeof s.msg, mac, 16));
}

/* Issue 11, class 8, the client's side: a 20-byte challenge from a 3.11 server that
 * happens to look prefixed gets a bare HMAC-MD5 of all 20 bytes. */
static void legacy_challenge_that_looks_prefixed_gets_md5(void **state) {
  (void)state;
  unsigned char frame[64], out[64], want[32];
  size_t olen, wlen;
  memcpy(frame, CHALLENGE "{sha256}abcdefghijkl", 31);
  assert_mp_ok(mp__auth_respond("k", 1, frame, 31, out, &olen));
  assert_mp_ok(mp_plat_hmac(MP_HMAC_MD5, "k", 1, frame + 11, 20, want, &wlen));
  assert_int_equal(olen, 16);
  assert_memory_equal(out, want, 16);
}

static void answers_in_kind(void **state) {
  (void)state;
  unsigned char frame[80], out[64], want[32];
  size_t olen, wlen;
  /* "{sha256}" + 40: "{sha256}" + HMAC-SHA256 of all 48 bytes, prefix included. */
  memcpy(frame, CHALLENGE "{sha256}", 19);
  memcpy(frame + 19, nonce, 40);
  assert_mp_ok(mp__auth_respond("k", 1, frame, 59, out, &olen));
  assert_mp_ok(mp_plat_hmac(MP_HMAC_SHA256, "k", 1, frame + 11, 48, want, &wlen));
  assert_int_equal(olen, 8 + 32);
  assert_memory_equal(out, "{sha256}", 8);
  assert_memory_equal(out + 8, want, 32);
  assert_mp_ok(mp__auth_verify("k", 1, frame + 11, 48, out, olen));
  /* "{md5}" + 40. */
  memcpy(frame, CHALLENGE "{md5}", 16);
  memcpy(frame + 16, nonce, 40);
  assert_mp_ok(mp__auth_respond("k", 1, frame, 56, out, &olen));
  assert_int_equal(olen, 5 + 16);
  assert_mp_ok(mp__auth_verify("k", 1, frame + 11, 45, out, olen));
  /* Our challenge answered with MD5 by a client that may choose (the MAC covers the
   * prefix, so this is no downgrade; CPython's server accepts it too). */
  assert_mp_ok(mp_plat_hmac(MP_HMAC_MD5, "k", 1, frame + 11, 45, want, &wlen));
  assert_mp_ok(mp__auth_verify("k", 1, frame + 11, 45, want, 16));
}

static void refuses_bad_challenges_and_answers(void **state) {
  (void)state;
  unsigned char frame[80], out[64];
  size_t olen;
  memcpy(frame, CHALLENGE "{sha256}", 19);
  memcpy(frame + 19, nonce, 40);
  expect_eauth(mp__auth_respond("k", 1, (const unsigned char *)"#WELCOME#", 9, out, &olen),
               "did not send a challenge");
  expect_eauth(mp__auth_respond("k", 1, frame, 30, out, &olen), "too short");
  expect_eauth(mp__auth_respond("k", 1, (const unsigned char *)CHALLENGE "{sha3_256}01234567890",
                                32, out, &olen),
               "sha3_256");
  expect_eauth(mp__auth_respond("k", 1, (const unsigned char *)CHALLENGE "no prefix, 25 bytes long",
                                35, out, &olen),
               "missing digest prefix");
  /* Answers: wrong key, wrong length for its digest, and nothing at all. */
  assert_mp_ok(mp__auth_respond("k", 1, frame, 59, out, &olen));
  expect_eauth(mp__auth_verify("x", 1, frame + 11, 48, out, olen), "wrong");
  expect_eauth(mp__auth_verify("k", 1, frame + 11, 48, out, olen - 1), "wrong");
  expect_eauth(mp__auth_verify("k", 1, frame + 11, 48, out, 0), NULL);
}

/* The server's state machine against a client built from the same functions. */
static void server_state_machine_runs_a_whole_handshake(void **state) {
  (void)state;
  for (int wrong = 0; wrong <= 2; wrong++) {
    const char *client_key = wrong == 1 ? "other" : "secret";
    mp__auth_server s, theirs; /* theirs: the client's own challenge */
    unsigned char out[MP_AUTH_OUT_MAX], in[MP_AUTH_OUT_MAX];
    size_t olen, ilen;
    mp__auth_server_start(&s, "secret", 6, nonce, out, &olen);
    assert_mp_ok(mp__auth_respond(client_key, strlen(client_key), out, olen, in, &ilen));
    int rc = mp__auth_server_feed(&s, in, ilen, out, &olen);
    assert_int_equal(olen, 9);
    if (wrong == 1) {
      expect_eauth(rc, "wrong");
      assert_memory_equal(out, "#FAILURE#", 9);
      assert_int_equal(mp__auth_server_feed(&s, in, ilen, out, &olen), MP_ESTATE);
      continue;
    }
    assert_int_equal(rc, MP_AUTH_MORE);
    assert_memory_equal(out, "#WELCOME#", 9);
    /* The client delivers its challenge; the server answers it. */
    mp__auth_server_start(&theirs, client_key, strlen(client_key), nonce, in, &ilen);
    assert_int_equal(mp__auth_server_feed(&s, in, ilen, out, &olen), MP_AUTH_MORE);
    assert_int_equal(mp__auth_server_feed(&theirs, out, olen, in, &ilen), MP_AUTH_MORE);
    assert_memory_equal(in, "#WELCOME#", 9);
    if (wrong == 2) { /* the client says anything but #WELCOME# */
      expect_eauth(mp__auth_server_feed(&s, (const unsigned char *)"#FAILURE#", 9, out, &olen),
                   "rejected");
      continue;
    }
    assert_int_equal(mp__auth_server_feed(&s, in, ilen, out, &olen), MP_AUTH_DONE);
    assert_int_equal(olen, 0);
    assert_int_equal(mp__auth_server_feed(&s, in, ilen, out, &olen), MP_ESTATE);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(digest_form_is_decided_by_length_first),
      cmocka_unit_test(legacy_answer_that_looks_prefixed_is_accepted),
      cmocka_unit_test(legacy_challenge_that_looks_prefixed_gets_md5),
      cmocka_unit_test(answers_in_kind),
      cmocka_unit_test(refuses_bad_challenges_and_answers),
      cmocka_unit_test(server_state_machine_runs_a_whole_handshake),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
