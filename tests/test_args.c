/* Arguments: values of every kind (lists, tuples, dicts too) and objects reach a child's
 * target; the encoding round-trips in-process; the decoder refuses malformed and oversized
 * input before allocating. ctest runs this file under fork and spawn on Linux, and under
 * Wine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "args.h"
#include "connection.h"

/* ---- targets (run in children) --------------------------------------------------------- */

/* Sends every argument after the first back as a value over the connection in argument 0. */
static int echo_values(mp_args *a) {
  mp_conn *c = NULL;
  if (mp_args_get_conn(a, 0, &c) != 0)
    return 98;
  for (size_t i = 1; i < mp_args_count(a); i++) {
    const mp_value *v = NULL;
    if (mp_args_get_value(a, i, &v) != 0 || mp_conn_send_value(c, v) != 0)
      return 97;
  }
  return 0;
}

/* Puts its dict argument (1) into its queue (0), with the dict's size. */
static int dict_into_queue(mp_args *a) {
  mp_queue *q = NULL;
  const mp_value *d = NULL;
  size_t n = 0;
  if (mp_args_get_queue(a, 0, &q) != 0 || mp_args_get_value(a, 1, &d) != 0 ||
      mp_args_type(a, 1) != MP_ARG_DICT || mp_value_len(d, &n) != 0)
    return 98;
  mp_value *pair = mp_value_tuple();
  mp_value_append(pair, mp_value_copy(d));
  mp_value_append(pair, mp_value_int((int64_t)n));
  int rc = mp_queue_put_value(q, pair, 60000);
  mp_value_free(pair);
  return rc == 0 ? 0 : 97;
}

/* ---- helpers ---------------------------------------------------------------------------- */

/* A list [1, "two", (3.5, b"\0x"), {"k": [nil, true]}] nested a few levels. */
static mp_value *sample_list(void) {
  mp_value *t = mp_value_tuple();
  mp_value_append(t, mp_value_double(3.5));
  mp_value_append(t, mp_value_bytes("\0x", 2));
  mp_value *inner = mp_value_list();
  mp_value_append(inner, mp_value_nil());
  mp_value_append(inner, mp_value_bool(1));
  mp_value *d = mp_value_dict();
  mp_value_dict_set(d, mp_value_str("k"), inner);
  mp_value *l = mp_value_list();
  mp_value_append(l, mp_value_int(1));
  mp_value_append(l, mp_value_str("two"));
  mp_value_append(l, t);
  mp_value_append(l, d);
  return l;
}

static int run(mp_target_fn fn, mp_args *args) {
  mp_process *p = NULL;
  assert_mp_ok(mp_process_create(&p, fn, args, NULL));
  assert_mp_ok(mp_process_start(p));
  assert_mp_ok(mp_process_join(p, 60000));
  int code = -1000;
  assert_mp_ok(mp_process_exitcode(p, &code));
  mp_process_free(p);
  return code;
}

/* ---- values and objects in children ------------------------------------------------------ */

static void lists_tuples_and_dicts_reach_the_target(void **state) {
  (void)state;
  mp_conn *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  mp_value *want[4] = {sample_list(), mp_value_dict(), mp_value_tuple(), mp_value_int(-7)};
  mp_value_dict_set(want[1], mp_value_int(1), mp_value_str("one"));
  mp_value_dict_set(want[1], mp_value_tuple(), sample_list()); /* any key type, as in Python */
  mp_args *args = NULL;
  assert_mp_ok(mp_args_create(&args));
  assert_mp_ok(mp_args_add_conn(args, b));
  for (int i = 0; i < 4; i++)
    assert_mp_ok(mp_args_add_value(args, want[i]));
  assert_int_equal(mp_args_type(args, 1), MP_ARG_LIST);
  assert_int_equal(mp_args_type(args, 2), MP_ARG_DICT);
  assert_int_equal(mp_args_type(args, 3), MP_ARG_TUPLE);
  assert_int_equal(mp_args_type(args, 4), MP_ARG_INT);
  mp_value_dict_set(want[1], mp_value_str("late"), mp_value_nil()); /* args holds a copy */
  mp_process *p = NULL;
  assert_mp_ok(mp_process_create(&p, echo_values, args, NULL));
  mp_args_free(args); /* the process holds its own copy */
  assert_mp_ok(mp_process_start(p));
  for (int i = 0; i < 4; i++) {
    mp_value *got = NULL;
    assert_mp_ok(mp_conn_recv_value(a, &got, 60000));
    if (i == 1) {
      size_t n = 0;
      assert_mp_ok(mp_value_len(got, &n));
      assert_int_equal(n, 2); /* without the key added after mp_args_add_value */
    } else {
      assert_true(mp_value_equal(got, want[i]));
    }
    mp_value_free(got);
  }
  assert_mp_ok(mp_process_join(p, 60000));
  int code = -1;
  assert_mp_ok(mp_process_exitcode(p, &code));
  assert_int_equal(code, 0);
  mp_process_free(p);
  for (int i = 0; i < 4; i++)
    mp_value_free(want[i]);
  mp_conn_free(a);
  mp_conn_free(b);
}

static void a_queue_and_a_dict_travel_together(void **state) {
  (void)state;
  mp_queue *q = NULL;
  assert_mp_ok(mp_queue_create(&q, 0));
  mp_value *d = mp_value_dict();
  mp_value_dict_set(d, mp_value_str("a"), sample_list());
  mp_value_dict_set(d, mp_value_str("b"), mp_value_int(2));
  mp_args *args = NULL;
  assert_mp_ok(mp_args_create(&args));
  assert_mp_ok(mp_args_add_queue(args, q));
  assert_mp_ok(mp_args_add_value(args, d));
  assert_int_equal(run(dict_into_queue, args), 0);
  mp_value *got = NULL, *item = NULL;
  assert_mp_ok(mp_queue_get_value(q, &got, 60000));
  assert_mp_ok(mp_value_at(got, 0, &item));
  assert_true(mp_value_equal(item, d));
  int64_t n = 0;
  assert_mp_ok(mp_value_at(got, 1, &item));
  assert_mp_ok(mp_value_get_int(item, &n));
  assert_int_equal(n, 2);
  mp_value_free(got);
  mp_value_free(d);
  mp_args_free(args);
  mp_queue_free(q);
}

/* ---- the encoding, in this process ------------------------------------------------------- */

static void the_encoding_round_trips_with_objects(void **state) {
  (void)state;
  mp_conn *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  mp_value *l = sample_list();
  mp_args *args = NULL;
  assert_mp_ok(mp_args_create(&args));
  assert_mp_ok(mp_args_add_str(args, "first"));
  assert_mp_ok(mp_args_add_conn(args, b));
  assert_mp_ok(mp_args_add_value(args, l));
  char *buf = NULL;
  size_t len = 0, nh = 0;
  mp_plat_handle h[8];
  assert_mp_ok(mp__args_encode(args, &buf, &len, h, &nh, 8));
  assert_int_equal(nh, 1);
  /* The receiver takes its own handles: a copy of b's, as a child would get. */
  mp_plat_handle mine;
  assert_mp_ok(mp_plat_handle_dup(h[0], &mine));
  mp_args *got = NULL;
  assert_mp_ok(mp__args_decode(buf, len, &mine, 1, &got));
  assert_int_equal(mp_args_count(got), 3);
  const char *s = NULL;
  assert_mp_ok(mp_args_get_str(got, 0, &s, NULL));
  assert_string_equal(s, "first");
  const mp_value *v = NULL;
  assert_mp_ok(mp_args_get_value(got, 2, &v));
  assert_true(mp_value_equal(v, l));
  mp_conn *c = NULL;
  assert_mp_ok(mp_args_get_conn(got, 1, &c));
  assert_true(c != b); /* a connection of its own on the same pipe end */
  assert_mp_ok(mp_conn_send(c, "hi", 2));
  void *msg = NULL;
  size_t n = 0;
  assert_mp_ok(mp_conn_recv(a, &msg, &n, 60000));
  assert_int_equal(n, 2);
  mp_free(msg);
  assert_mp(MP_EINVAL, mp_args_get_value(got, 1, &v));
  assert_non_null(strstr(mp_last_error(), "is a connection, not a value"));
  mp_args_free(got); /* releases the imported connection */
  free(buf);
  mp_args_free(args);
  mp_value_free(l);
  mp_conn_free(a);
  mp_conn_free(b);
}

static void decode_expect(const void *bytes, size_t len, const mp_plat_handle *h, size_t nh,
                          const char *needle) {
  mp_args *out = (mp_args *)1;
  assert_mp(MP_EPROTO, mp__args_decode(bytes, len, h, nh, &out));
  assert_null(out);
  if (needle && strstr(mp_last_error(), needle) == NULL)
    fail_msg("error \"%s\" lacks \"%s\"", mp_last_error(), needle);
}

/* Before the fix, the spawn bootstrap handed these bytes to msgpack-c, which allocated for
 * the counts they claim (64 to 256 GiB) before looking at the rest (fuzz/regressions/args). */
static void claimed_counts_are_checked_before_allocating(void **state) {
  (void)state;
  const unsigned char top_map[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xff, 0x07, 0x02};
  decode_expect(top_map, sizeof top_map, NULL, 0, "not an array");
  const unsigned char top_array[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
  decode_expect(top_array, sizeof top_array, NULL, 0, "count larger than the input");
  const unsigned char inner_map[] = {0x97, 0xdf, 0xff, 0x01, 0xff, 0x5d, 0xff, 0x02};
  decode_expect(inner_map, sizeof inner_map, NULL, 0, "count larger than the input");
  const unsigned char inner_str[] = {0x91, 0xdb, 0xff, 0xff, 0xff, 0xff, 'x'};
  decode_expect(inner_str, sizeof inner_str, NULL, 0, "past the end");
  /* More arguments than MP_ARGS_MAX, all present: refused by the count alone. */
  size_t many = MP_ARGS_MAX + 1;
  unsigned char *big = malloc(5 + many);
  big[0] = 0xdd, big[1] = 0, big[2] = 0, big[3] = (unsigned char)(many >> 8);
  big[4] = (unsigned char)many;
  memset(big + 5, 0xc0, many);
  decode_expect(big, 5 + many, NULL, 0, "MP_ARGS_MAX");
  free(big);
  mp_args *a = NULL;
  assert_mp_ok(mp_args_create(&a));
  for (int i = 0; i < MP_ARGS_MAX; i++)
    assert_mp_ok(mp_args_add_nil(a));
  assert_mp(MP_EINVAL, mp_args_add_nil(a));
  mp_args_free(a);
}

static void objects_must_name_exactly_the_handles_sent(void **state) {
  (void)state;
  /* [connection record naming handle 0 with a 10-byte blob] */
  unsigned char one_conn[] = {0x91, 0xc7, 13, 1, 1, 0, 0, 1, 3, 0, 0, 0, 0, 0, 1, 0, 0};
  decode_expect(one_conn, sizeof one_conn, NULL, 0, "not sent");
  /* Two real handles sent, one named: refused, and both are closed (the decoder takes the
   * handles whatever happens). */
  mp_conn *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  int before = mp_test_open_handles();
  mp_plat_handle two[2];
  assert_mp_ok(mp_plat_handle_dup(mp_plat_chan_handle(mp__conn_chan(b)), &two[0]));
  assert_mp_ok(mp_plat_handle_dup(mp_plat_chan_handle(mp__conn_chan(b)), &two[1]));
  decode_expect(one_conn, sizeof one_conn, two, 2, "2 handles were sent but only 1 named");
  assert_int_equal(mp_test_open_handles(), before);
  mp_conn_free(a);
  mp_conn_free(b);
  mp_plat_handle invalid[2] = {MP_PLAT_INVALID, MP_PLAT_INVALID};
  unsigned char skips[sizeof one_conn];
  memcpy(skips, one_conn, sizeof one_conn);
  skips[6] = 1; /* names handle 1 while handle 0 was never taken */
  decode_expect(skips, sizeof skips, invalid, 2, "not sent");
  unsigned char unknown[sizeof one_conn];
  memcpy(unknown, one_conn, sizeof one_conn);
  unknown[3] = 99;
  decode_expect(unknown, sizeof unknown, invalid, 1, "unknown object type 99");
  const unsigned char short_record[] = {0x91, 0xd5, 1, 1, 0};
  decode_expect(short_record, sizeof short_record, invalid, 1, "malformed");
  const unsigned char trailing[] = {0x91, 0x01, 0x02};
  decode_expect(trailing, sizeof trailing, NULL, 0, "after the last argument");
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(lists_tuples_and_dicts_reach_the_target),
      cmocka_unit_test(a_queue_and_a_dict_travel_together),
      cmocka_unit_test(the_encoding_round_trips_with_objects),
      cmocka_unit_test(claimed_counts_are_checked_before_allocating),
      cmocka_unit_test(objects_must_name_exactly_the_handles_sent),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
