/* Typed values: construction, access, equality and the MessagePack round trip, plus
 * malformed and too deeply nested input. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* Encodes v, decodes the bytes, checks the copy equals v and returns the copy. */
static mp_value *round_trip(const mp_value *v) {
  void *buf;
  size_t len;
  mp_value *copy = NULL;
  assert_mp_ok(mp_value_encode(v, &buf, &len));
  assert_non_null(buf);
  assert_mp_ok(mp_value_decode(buf, len, &copy));
  mp_free(buf);
  assert_true(mp_value_equal(v, copy));
  return copy;
}

static void check_round_trip(mp_value *v) {
  assert_non_null(v);
  mp_value_free(round_trip(v));
  mp_value_free(v);
}

static void expect_bytes(const mp_value *v, const unsigned char *want, size_t want_len) {
  void *buf;
  size_t len;
  assert_mp_ok(mp_value_encode(v, &buf, &len));
  assert_int_equal(len, want_len);
  assert_memory_equal(buf, want, len);
  mp_free(buf);
}

static void scalars_round_trip(void **state) {
  (void)state;
  check_round_trip(mp_value_nil());
  check_round_trip(mp_value_bool(1));
  check_round_trip(mp_value_bool(0));
  const int64_t ints[] = {0,   1,   -1,    127,           128,       -32,
                          -33, 255, 65536, -2147483649LL, INT64_MAX, INT64_MIN};
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
    mp_value *v = mp_value_int(ints[i]);
    mp_value *c = round_trip(v);
    int64_t got;
    assert_mp_ok(mp_value_get_int(c, &got));
    assert_true(got == ints[i]);
    mp_value_free(c);
    mp_value_free(v);
  }
  const double dbls[] = {0.0, -0.5, 1e300, -1e-300, INFINITY, 3.141592653589793};
  for (size_t i = 0; i < sizeof dbls / sizeof dbls[0]; i++) {
    mp_value *v = mp_value_double(dbls[i]);
    mp_value *c = round_trip(v);
    double got;
    assert_mp_ok(mp_value_get_double(c, &got));
    assert_memory_equal(&got, &dbls[i], sizeof got);
    mp_value_free(c);
    mp_value_free(v);
  }
}

static void strings_and_bytes_round_trip(void **state) {
  (void)state;
  check_round_trip(mp_value_str(""));
  check_round_trip(mp_value_str("hello"));
  /* Non-ASCII text: "子进程" and an emoji outside the BMP. */
  mp_value *v = mp_value_str("\xe5\xad\x90\xe8\xbf\x9b\xe7\xa8\x8b \xf0\x9f\x98\x80");
  mp_value *c = round_trip(v);
  const char *s;
  size_t len;
  assert_mp_ok(mp_value_get_str(c, &s, &len));
  assert_int_equal(len, 14);
  assert_string_equal(s, "\xe5\xad\x90\xe8\xbf\x9b\xe7\xa8\x8b \xf0\x9f\x98\x80");
  mp_value_free(c);
  mp_value_free(v);
  /* A NUL inside text survives and the length counts past it. */
  v = mp_value_strn("a\0b", 3);
  c = round_trip(v);
  assert_mp_ok(mp_value_get_str(c, &s, &len));
  assert_int_equal(len, 3);
  assert_memory_equal(s, "a\0b", 4);
  mp_value_free(c);
  mp_value_free(v);
  unsigned char all[256];
  for (int i = 0; i < 256; i++)
    all[i] = (unsigned char)i;
  v = mp_value_bytes(all, sizeof all);
  c = round_trip(v);
  const void *data;
  assert_mp_ok(mp_value_get_bytes(c, &data, &len));
  assert_int_equal(len, 256);
  assert_memory_equal(data, all, 256);
  mp_value_free(c);
  mp_value_free(v);
  check_round_trip(mp_value_bytes(NULL, 0));
  /* str and bytes with the same content are different values. */
  mp_value *a = mp_value_str("x"), *b = mp_value_bytes("x", 1);
  assert_false(mp_value_equal(a, b));
  mp_value_free(a);
  mp_value_free(b);
}

static mp_value *sample_nested(void) {
  mp_value *root = mp_value_dict();
  mp_value *lst = mp_value_list();
  assert_mp_ok(mp_value_append(lst, mp_value_int(1)));
  assert_mp_ok(mp_value_append(lst, mp_value_str("two")));
  assert_mp_ok(mp_value_append(lst, mp_value_list()));
  mp_value *tup = mp_value_tuple();
  assert_mp_ok(mp_value_append(tup, mp_value_double(2.5)));
  assert_mp_ok(mp_value_append(tup, mp_value_nil()));
  assert_mp_ok(mp_value_append(lst, tup));
  assert_mp_ok(mp_value_dict_set(root, mp_value_str("list"), lst));
  /* Keys of any type, in insertion order: an int, a tuple, bytes. */
  assert_mp_ok(mp_value_dict_set(root, mp_value_int(-7), mp_value_bool(1)));
  mp_value *key = mp_value_tuple();
  assert_mp_ok(mp_value_append(key, mp_value_int(1)));
  assert_mp_ok(mp_value_dict_set(root, key, mp_value_dict()));
  assert_mp_ok(mp_value_dict_set(root, mp_value_bytes("\0\1", 2), mp_value_tuple()));
  return root;
}

static void containers_round_trip_with_order_and_tuples(void **state) {
  (void)state;
  check_round_trip(mp_value_list());
  check_round_trip(mp_value_tuple());
  check_round_trip(mp_value_dict());
  mp_value *root = sample_nested();
  mp_value *c = round_trip(root);
  size_t n;
  assert_mp_ok(mp_value_len(c, &n));
  assert_int_equal(n, 4);
  mp_value *k, *val, *lst, *tup;
  assert_mp_ok(mp_value_dict_at(c, 1, &k, &val));
  int64_t i;
  assert_mp_ok(mp_value_get_int(k, &i));
  assert_int_equal(i, -7);
  assert_mp_ok(mp_value_dict_at(c, 2, &k, NULL));
  assert_int_equal(mp_value_type_of(k), MP_VALUE_TUPLE);
  mp_value *lookup = mp_value_str("list");
  assert_mp_ok(mp_value_dict_get(c, lookup, &lst));
  mp_value_free(lookup);
  assert_mp_ok(mp_value_at(lst, 3, &tup));
  assert_int_equal(mp_value_type_of(tup), MP_VALUE_TUPLE);
  assert_mp_ok(mp_value_at(lst, 2, &val));
  assert_int_equal(mp_value_type_of(val), MP_VALUE_LIST);
  mp_value_free(c);
  mp_value_free(root);
  /* A list and a tuple with the same items differ. */
  mp_value *l = mp_value_list(), *t = mp_value_tuple();
  assert_mp_ok(mp_value_append(l, mp_value_int(1)));
  assert_mp_ok(mp_value_append(t, mp_value_int(1)));
  assert_false(mp_value_equal(l, t));
  mp_value_free(l);
  mp_value_free(t);
}

static void encoding_is_standard_messagepack(void **state) {
  (void)state;
  mp_value *l = mp_value_list();
  assert_mp_ok(mp_value_append(l, mp_value_int(1)));
  assert_mp_ok(mp_value_append(l, mp_value_str("a")));
  assert_mp_ok(mp_value_append(l, mp_value_bytes("b", 1)));
  assert_mp_ok(mp_value_append(l, mp_value_nil()));
  const unsigned char want_l[] = {0x94, 0x01, 0xa1, 'a', 0xc4, 0x01, 'b', 0xc0};
  expect_bytes(l, want_l, sizeof want_l);
  mp_value_free(l);
  /* (1,) is extension 16 holding the array [1]: fixext 2. */
  mp_value *t = mp_value_tuple();
  assert_mp_ok(mp_value_append(t, mp_value_int(1)));
  const unsigned char want_t[] = {0xd5, 0x10, 0x91, 0x01};
  expect_bytes(t, want_t, sizeof want_t);
  mp_value_free(t);
  mp_value *d = mp_value_dict();
  assert_mp_ok(mp_value_dict_set(d, mp_value_int(-1), mp_value_double(0.5)));
  const unsigned char want_d[] = {0x81, 0xff, 0xcb, 0x3f, 0xe0, 0, 0, 0, 0, 0, 0};
  expect_bytes(d, want_d, sizeof want_d);
  mp_value_free(d);
}

static void dict_set_replaces_in_place(void **state) {
  (void)state;
  mp_value *d = mp_value_dict();
  assert_mp_ok(mp_value_dict_set(d, mp_value_str("a"), mp_value_int(1)));
  assert_mp_ok(mp_value_dict_set(d, mp_value_str("b"), mp_value_int(2)));
  assert_mp_ok(mp_value_dict_set(d, mp_value_str("a"), mp_value_int(3)));
  size_t n;
  assert_mp_ok(mp_value_len(d, &n));
  assert_int_equal(n, 2);
  mp_value *k, *v;
  assert_mp_ok(mp_value_dict_at(d, 0, &k, &v));
  const char *s;
  assert_mp_ok(mp_value_get_str(k, &s, NULL));
  assert_string_equal(s, "a");
  int64_t i;
  assert_mp_ok(mp_value_get_int(v, &i));
  assert_int_equal(i, 3);
  mp_value *missing = mp_value_str("zz");
  assert_mp(MP_ENOENT, mp_value_dict_get(d, missing, &v));
  mp_value_free(missing);
  assert_mp(MP_EINVAL, mp_value_dict_at(d, 2, &k, &v));
  mp_value_free(d);
}

static void accessors_reject_wrong_types_and_bad_arguments(void **state) {
  (void)state;
  mp_value *v = mp_value_int(5);
  int b;
  double d;
  const char *s;
  const void *data;
  size_t len;
  mp_value *item;
  assert_mp(MP_EINVAL, mp_value_get_bool(v, &b));
  assert_non_null(strstr(mp_last_error(), "is a int, not a bool"));
  assert_mp(MP_EINVAL, mp_value_get_double(v, &d));
  assert_mp(MP_EINVAL, mp_value_get_str(v, &s, &len));
  assert_mp(MP_EINVAL, mp_value_get_bytes(v, &data, &len));
  assert_mp(MP_EINVAL, mp_value_len(v, &len));
  assert_mp(MP_EINVAL, mp_value_at(v, 0, &item));
  assert_mp(MP_EINVAL, mp_value_get_int(NULL, NULL));
  assert_mp(MP_EINVAL, mp_value_type_of(NULL));
  void *enc;
  assert_mp(MP_EINVAL, mp_value_encode(NULL, &enc, &len));
  /* Appending to a non-container still takes ownership of the item (ASan checks). */
  assert_mp(MP_EINVAL, mp_value_append(v, mp_value_nil()));
  assert_mp(MP_EINVAL, mp_value_dict_set(v, mp_value_nil(), mp_value_nil()));
  mp_value *l = mp_value_list();
  assert_mp(MP_EINVAL, mp_value_at(l, 0, &item));
  assert_non_null(strstr(mp_last_error(), "out of range"));
  assert_mp(MP_EINVAL, mp_value_append(l, l));
  mp_value_free(l);
  mp_value_free(v);
  assert_true(mp_value_equal(NULL, NULL));
  mp_value_free(NULL);
}

static void invalid_utf8_is_refused(void **state) {
  (void)state;
  const char *bad[] = {"\xff",         "\xc0\x80",         "\xe0\x80\x80",
                       "\xed\xa0\x80", "\xf4\x90\x80\x80", "abc\xe5\xad"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_null(mp_value_str(bad[i]));
    assert_int_equal(mp_last_error_code(), MP_EINVAL);
  }
  assert_null(mp_value_str(NULL));
  /* A failed constructor's code reaches the container call that receives its NULL. */
  mp_value *l = mp_value_list();
  assert_mp(MP_EINVAL, mp_value_append(l, mp_value_str("\xff")));
  assert_non_null(strstr(mp_last_error(), "UTF-8"));
  mp_value_free(l);
}

static void decode_expect_proto(const void *buf, size_t len, const char *needle) {
  mp_value *v = NULL;
  assert_mp(MP_EPROTO, mp_value_decode(buf, len, &v));
  assert_null(v);
  if (needle && strstr(mp_last_error(), needle) == NULL)
    fail_msg("error \"%s\" lacks \"%s\"", mp_last_error(), needle);
}

static void malformed_input_is_a_protocol_error(void **state) {
  (void)state;
  const unsigned char never_used[] = {0xc1};
  decode_expect_proto(never_used, 1, "type byte");
  decode_expect_proto("", 0, "empty");
  const unsigned char short_str[] = {0xa5, 'a', 'b'};
  decode_expect_proto(short_str, sizeof short_str, "past the end");
  /* An array that claims 4 billion items must be refused before anything is allocated. */
  const unsigned char huge_array[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
  decode_expect_proto(huge_array, sizeof huge_array, "count");
  const unsigned char huge_map[] = {0xdf, 0x7f, 0xff, 0xff, 0xff};
  decode_expect_proto(huge_map, sizeof huge_map, "count");
  const unsigned char trailing[] = {0x01, 0x02};
  decode_expect_proto(trailing, sizeof trailing, "trailing");
  const unsigned char unknown_ext[] = {0xd4, 0x05, 0x00};
  decode_expect_proto(unknown_ext, sizeof unknown_ext, "extension");
  const unsigned char tuple_not_array[] = {0xd4, 0x10, 0x01};
  decode_expect_proto(tuple_not_array, sizeof tuple_not_array, "not an array");
  const unsigned char tuple_bad_inside[] = {0xd5, 0x10, 0x91, 0xc1};
  decode_expect_proto(tuple_bad_inside, sizeof tuple_bad_inside, NULL);
  const unsigned char big_uint[] = {0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0};
  decode_expect_proto(big_uint, sizeof big_uint, "64 signed bits");
  const unsigned char bad_text[] = {0xa2, 0xc3, 0x28};
  decode_expect_proto(bad_text, sizeof bad_text, "UTF-8");
  const unsigned char missing_item[] = {0x92, 0x91, 0x01};
  decode_expect_proto(missing_item, sizeof missing_item, "truncated");
  mp_value *v;
  assert_mp(MP_EINVAL, mp_value_decode(NULL, 3, &v));
  assert_mp(MP_EINVAL, mp_value_decode(trailing, 1, NULL));
}

/* depth levels of [[...[]...]] or of tuples, as MessagePack bytes. */
static size_t nested_bytes(unsigned char *out, int depth, int tuples) {
  if (!tuples) {
    memset(out, 0x91, (size_t)depth - 1);
    out[depth - 1] = 0x90;
    return (size_t)depth;
  }
  /* From the inside out: each tuple is ext8 type 16 around a one-item array. */
  out[0] = 0xc7, out[1] = 1, out[2] = 16, out[3] = 0x90;
  size_t len = 4;
  for (int d = 1; d < depth; d++) {
    memmove(out + 4, out, len);
    out[0] = 0xc7, out[1] = (unsigned char)(len + 1), out[2] = 16, out[3] = 0x91;
    len += 4;
  }
  return len;
}

static void nesting_is_bounded(void **state) {
  (void)state;
  unsigned char buf[512];
  for (int tuples = 0; tuples <= 1; tuples++) {
    size_t len = nested_bytes(buf, MP_VALUE_MAX_DEPTH, tuples);
    mp_value *v = NULL;
    assert_mp_ok(mp_value_decode(buf, len, &v));
    mp_value_free(round_trip(v));
    /* One level more is refused by decode and encode alike. */
    mp_value *outer = tuples ? mp_value_tuple() : mp_value_list();
    assert_mp_ok(mp_value_append(outer, v));
    void *enc;
    size_t enc_len;
    assert_mp(MP_EINVAL, mp_value_encode(outer, &enc, &enc_len));
    assert_non_null(strstr(mp_last_error(), "deeper"));
    mp_value_free(outer);
    len = nested_bytes(buf, MP_VALUE_MAX_DEPTH + 1, tuples);
    decode_expect_proto(buf, len, "deeper");
  }
  /* Far deeper input is refused without recursing into it. */
  static unsigned char deep[100000];
  memset(deep, 0x91, sizeof deep);
  decode_expect_proto(deep, sizeof deep, "deeper");
}

/* Every scalar format other encoders use decodes to the value it stands for. */
static void every_scalar_format_decodes(void **state) {
  (void)state;
  static const struct {
    unsigned char bytes[10];
    size_t len;
    int64_t want;
  } ints[] = {
      {{0x7f}, 1, 127},
      {{0xe0}, 1, -32},
      {{0xcc, 0xff}, 2, 255},
      {{0xcd, 0xff, 0xff}, 3, 65535},
      {{0xce, 0xff, 0xff, 0xff, 0xff}, 5, 4294967295LL},
      {{0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9, INT64_MAX},
      {{0xd0, 0x80}, 2, -128},
      {{0xd0, 0x05}, 2, 5},
      {{0xd1, 0xff, 0xfe}, 3, -2},
      {{0xd2, 0x80, 0, 0, 0}, 5, INT32_MIN},
      {{0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}, 9, INT64_MIN},
  };
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
    mp_value *v = NULL;
    int64_t got = 0;
    assert_mp_ok(mp_value_decode(ints[i].bytes, ints[i].len, &v));
    assert_mp_ok(mp_value_get_int(v, &got));
    assert_true(got == ints[i].want);
    mp_value_free(v);
  }
  const unsigned char f32[] = {0xca, 0x3f, 0xc0, 0x00, 0x00}; /* 1.5f */
  mp_value *v = NULL;
  double d = 0;
  assert_mp_ok(mp_value_decode(f32, sizeof f32, &v));
  assert_mp_ok(mp_value_get_double(v, &d));
  assert_true(d == 1.5);
  mp_value_free(v);
  const unsigned char str8[] = {0xd9, 0x03, 'a', 'b', 'c'}, bin8[] = {0xc4, 0x00};
  const char *s = NULL;
  size_t n = 9;
  assert_mp_ok(mp_value_decode(str8, sizeof str8, &v));
  assert_mp_ok(mp_value_get_str(v, &s, &n));
  assert_int_equal(n, 3);
  assert_string_equal(s, "abc");
  mp_value_free(v);
  const void *b = NULL;
  assert_mp_ok(mp_value_decode(bin8, sizeof bin8, &v));
  assert_mp_ok(mp_value_get_bytes(v, &b, &n));
  assert_int_equal(n, 0);
  mp_value_free(v);
}

/* A lone integer is written by value.c itself, one inside a container by msgpack-c: both
 * give the same bytes, at every width's edges. */
static void integers_encode_as_msgpack_c_does(void **state) {
  (void)state;
  const int64_t edges[] = {0,
                           1,
                           -1,
                           31,
                           -32,
                           -33,
                           127,
                           128,
                           -128,
                           -129,
                           255,
                           256,
                           32767,
                           32768,
                           -32768,
                           -32769,
                           65535,
                           65536,
                           INT32_MAX,
                           -2147483648LL,
                           -2147483649LL,
                           4294967295LL,
                           4294967296LL,
                           INT64_MAX,
                           INT64_MIN};
  for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
    mp_value *alone = mp_value_int(edges[i]), *list = mp_value_list();
    assert_mp_ok(mp_value_append(list, mp_value_int(edges[i])));
    void *a, *l;
    size_t alen, llen;
    assert_mp_ok(mp_value_encode(alone, &a, &alen));
    assert_mp_ok(mp_value_encode(list, &l, &llen));
    assert_int_equal(llen, alen + 1);
    assert_memory_equal((unsigned char *)l + 1, a, alen);
    mp_free(a);
    mp_free(l);
    mp_value_free(alone);
    mp_value_free(list);
  }
}

/* A copy is equal, deep (changing the original leaves it alone) and owned by the caller. */
static void copy_is_deep_and_equal(void **state) {
  (void)state;
  mp_value *inner = mp_value_list();
  assert_mp_ok(mp_value_append(inner, mp_value_str("x")));
  mp_value *t = mp_value_tuple();
  assert_mp_ok(mp_value_append(t, mp_value_bytes("\0\1", 2)));
  assert_mp_ok(mp_value_append(t, mp_value_double(2.5)));
  mp_value *d = mp_value_dict();
  assert_mp_ok(mp_value_dict_set(d, mp_value_int(1), inner));
  assert_mp_ok(mp_value_dict_set(d, t, mp_value_nil()));
  assert_mp_ok(mp_value_dict_set(d, mp_value_str("b"), mp_value_bool(1)));
  mp_value *c = mp_value_copy(d);
  assert_non_null(c);
  assert_true(mp_value_equal(c, d));
  assert_mp_ok(mp_value_append(inner, mp_value_int(9))); /* the copy keeps its own list */
  assert_false(mp_value_equal(c, d));
  mp_value *ci = NULL;
  size_t n = 0;
  assert_mp_ok(mp_value_dict_at(c, 0, NULL, &ci));
  assert_mp_ok(mp_value_len(ci, &n));
  assert_int_equal(n, 1);
  mp_value_free(d);
  mp_value *cc = mp_value_copy(c); /* a copy of a copy outlives its source */
  mp_value_free(c);
  assert_mp_ok(mp_value_len(cc, &n));
  assert_int_equal(n, 3);
  mp_value_free(cc);
  assert_null(mp_value_copy(NULL));
  assert_int_equal(mp_last_error_code(), MP_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(every_scalar_format_decodes),
      cmocka_unit_test(integers_encode_as_msgpack_c_does),
      cmocka_unit_test(copy_is_deep_and_equal),
      cmocka_unit_test(scalars_round_trip),
      cmocka_unit_test(strings_and_bytes_round_trip),
      cmocka_unit_test(containers_round_trip_with_order_and_tuples),
      cmocka_unit_test(encoding_is_standard_messagepack),
      cmocka_unit_test(dict_set_replaces_in_place),
      cmocka_unit_test(accessors_reject_wrong_types_and_bad_arguments),
      cmocka_unit_test(invalid_utf8_is_refused),
      cmocka_unit_test(malformed_input_is_a_protocol_error),
      cmocka_unit_test(nesting_is_bounded),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
