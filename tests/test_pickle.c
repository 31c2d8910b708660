/* The pickle subset: CPython's own pickles (protocols 2-5) read back exactly, our pickles
 * read back exactly, exceptions in replies, a manager's Token read as its state tuple, and
 * hostile input refused with MP_EPROTO: unknown globals, NEWOBJ/BUILD on anything but a
 * new Token, integers past 64 bits, truncation, deep nesting and memo bombs. */
#include <stdlib.h>
#include <string.h>

#include "pickle.h"
#include "pickle_vectors.h"
#include "testutil.h"

static mp_value *list_of(int n, ...) {
  va_list ap;
  mp_value *l = mp_value_list();
  va_start(ap, n);
  for (int i = 0; i < n; i++)
    mp_value_append(l, va_arg(ap, mp_value *));
  va_end(ap);
  return l;
}

static mp_value *tuple_of(int n, ...) {
  va_list ap;
  mp_value *t = mp_value_tuple();
  va_start(ap, n);
  for (int i = 0; i < n; i++)
    mp_value_append(t, va_arg(ap, mp_value *));
  va_end(ap);
  return t;
}

static mp_value *repeat(char c, size_t n, int bytes) {
  char *s = malloc(n);
  memset(s, c, n);
  mp_value *v = bytes ? mp_value_bytes(s, n) : mp_value_strn(s, n);
  free(s);
  return v;
}

/* The VALUE tuple of gen_pickle_vectors.py. */
static mp_value *expected_value(void) {
  mp_value *d = mp_value_dict();
  mp_value_dict_set(d, mp_value_str("a"), mp_value_int(1));
  mp_value_dict_set(d, mp_value_int(2), mp_value_nil());
  mp_value *t = tuple_of(13, mp_value_int(1), mp_value_int(-1), mp_value_int(255),
                         mp_value_int(256), mp_value_int(65535), mp_value_int(65536),
                         mp_value_int(INT32_MIN), mp_value_int((int64_t)1 << 31),
                         mp_value_int((int64_t)1 << 40), mp_value_int(INT64_MIN),
                         mp_value_int(INT64_MAX), mp_value_double(1.5), mp_value_double(-0.0));
  mp_value_append(t, mp_value_str("h\xc3\xa9llo"));
  mp_value_append(t, mp_value_str(""));
  mp_value_append(t, mp_value_bytes("\x00\xff", 2));
  mp_value_append(t, mp_value_bytes("", 0));
  mp_value_append(t, mp_value_nil());
  mp_value_append(t, mp_value_bool(1));
  mp_value_append(t, mp_value_bool(0));
  mp_value_append(t, list_of(2, mp_value_int(1), list_of(1, mp_value_int(2))));
  mp_value_append(t, d);
  mp_value_append(t, mp_value_tuple());
  mp_value_append(t, tuple_of(1, mp_value_int(1)));
  mp_value_append(t, tuple_of(2, mp_value_int(1), mp_value_int(2)));
  mp_value_append(t, tuple_of(3, mp_value_int(1), mp_value_int(2), mp_value_int(3)));
  mp_value_append(t,
                  tuple_of(4, mp_value_int(1), mp_value_int(2), mp_value_int(3), mp_value_int(4)));
  mp_value_append(t, list_of(2, list_of(2, mp_value_int(1), mp_value_int(2)),
                             list_of(2, mp_value_int(1), mp_value_int(2))));
  mp_value_append(t, repeat('x', 300, 0));
  mp_value_append(t, repeat('y', 300, 1));
  return t;
}

static void check_python_pickle(const char *buf, size_t len) {
  mp_value *want = expected_value(), *got = NULL;
  assert_mp_ok(mp__pickle_loads(buf, len, &got, NULL));
  assert_true(mp_value_equal(want, got));
  mp_value_free(want);
  mp_value_free(got);
}

static void reads_cpython_protocols_2_to_5(void **state) {
  (void)state;
  check_python_pickle(py_value_p2, PY_VALUE_P2_LEN);
  check_python_pickle(py_value_p3, PY_VALUE_P3_LEN);
  check_python_pickle(py_value_p4, PY_VALUE_P4_LEN);
  check_python_pickle(py_value_p5, PY_VALUE_P5_LEN);
}

static void own_pickles_round_trip(void **state) {
  (void)state;
  mp_value *want = expected_value(), *got = NULL;
  void *buf;
  size_t len;
  assert_mp_ok(mp__pickle_dumps(want, &buf, &len));
  assert_mp_ok(mp__pickle_loads(buf, len, &got, NULL));
  assert_true(mp_value_equal(want, got));
  free(buf);
  mp_value_free(got);
  /* A reply pair and an error reply. */
  mp__pk_exc exc;
  assert_mp_ok(mp__pickle_dumps_pair("#RETURN", want, &buf, &len));
  assert_mp_ok(mp__pickle_loads(buf, len, &got, &exc));
  assert_int_equal(exc.kind, MP_PK_EXC_NONE);
  mp_value *second;
  assert_mp_ok(mp_value_at(got, 1, &second));
  assert_true(mp_value_equal(want, second));
  free(buf);
  mp_value_free(got);
  mp_value_free(want);
  assert_mp_ok(mp__pickle_dumps_error(MP_PK_EXC_FULL, "no room", &buf, &len));
  assert_mp_ok(mp__pickle_loads(buf, len, &got, &exc));
  assert_int_equal(exc.kind, MP_PK_EXC_FULL);
  assert_string_equal(exc.msg, "no room");
  free(buf);
  mp_value_free(got);
  assert_mp(MP_EINVAL, mp__pickle_dumps_error(999, NULL, &buf, &len));
}

static void reads_exceptions_in_replies(void **state) {
  (void)state;
  mp__pk_exc exc;
  mp_value *v;
  assert_mp_ok(mp__pickle_loads(py_error_empty, PY_ERROR_EMPTY_LEN, &v, &exc));
  assert_int_equal(exc.kind, MP_PK_EXC_EMPTY);
  mp_value_free(v);
  assert_mp_ok(mp__pickle_loads(py_error_full, PY_ERROR_FULL_LEN, &v, &exc));
  assert_int_equal(exc.kind, MP_PK_EXC_FULL);
  mp_value_free(v);
  assert_mp_ok(mp__pickle_loads(py_error_value, PY_ERROR_VALUE_LEN, &v, &exc));
  assert_int_equal(exc.kind, MP_PK_EXC_VALUE);
  assert_string_equal(exc.msg, "'timeout' must be a non-negative number");
  mp_value_free(v);
}

/* Token('get_task_queue', ('127.0.0.1', 5000), '7f00') read as its state tuple. */
static mp_value *expected_token(void) {
  return tuple_of(3, mp_value_str("get_task_queue"),
                  tuple_of(2, mp_value_str("127.0.0.1"), mp_value_int(5000)), mp_value_str("7f00"));
}

static void check_token_pickle(const char *buf, size_t len, int times, int list) {
  mp_value *want = expected_token(), *got = NULL;
  if (times == 2) {
    mp_value *one = want;
    want = list ? list_of(2, one, expected_token()) : tuple_of(2, one, expected_token());
  }
  assert_mp_ok(mp__pickle_loads(buf, len, &got, NULL));
  assert_true(mp_value_equal(want, got));
  mp_value_free(want);
  mp_value_free(got);
}

static void reads_cpython_manager_tokens(void **state) {
  (void)state;
  check_token_pickle(py_token_p2, PY_TOKEN_P2_LEN, 1, 0);
  check_token_pickle(py_token_p4, PY_TOKEN_P4_LEN, 1, 0);
  /* The second is a memo reference to the NEWOBJ result, which BUILD filled in. */
  check_token_pickle(py_token_twice_p2, PY_TOKEN_TWICE_P2_LEN, 2, 0);
  check_token_pickle(py_token_twice_p5, PY_TOKEN_TWICE_P5_LEN, 2, 1);
}

static void expect_proto(const void *buf, size_t len, const char *needle) {
  mp_value *v = NULL;
  assert_mp(MP_EPROTO, mp__pickle_loads(buf, len, &v, NULL));
  assert_null(v);
  if (needle && strstr(mp_last_error(), needle) == NULL)
    fail_msg("message '%s' lacks '%s'", mp_last_error(), needle);
}

static void refuses_unknown_globals_and_big_ints(void **state) {
  (void)state;
  expect_proto(py_os_system, PY_OS_SYSTEM_LEN, "posix.system");
  expect_proto(py_os_system_p4, PY_OS_SYSTEM_P4_LEN, "posix.system");
  expect_proto(py_big_int, PY_BIG_INT_LEN, "64 bits");
  /* An allowed class called with a non-tuple, and a class used as a value. */
  expect_proto("\x80\x04"
               "cqueue\nEmpty\nK\x01R.",
               19, "REDUCE");
  expect_proto("\x80\x04"
               "cqueue\nEmpty\n\x85.",
               17, "class");
}

#define EXPECT_PROTO(lit, needle) expect_proto(lit, sizeof lit - 1, needle)
#define TOKEN_NEW "cmultiprocessing.managers\nToken\n)\x81"
#define TOKEN_STATE "\x8c\x01tN\x8c\x01i\x87"

static void refuses_objects_but_tokens(void **state) {
  (void)state;
  /* NEWOBJ of other globals, allowed or not, and of a Token with arguments. */
  EXPECT_PROTO("\x80\x02"
               "cbuiltins\nValueError\n)\x81.",
               "NEWOBJ");
  EXPECT_PROTO("\x80\x02"
               "c__builtin__\nbytes\n)\x81.",
               "NEWOBJ");
  EXPECT_PROTO("\x80\x02"
               "cqueue\nEmpty\n)\x81" TOKEN_STATE "b.",
               "NEWOBJ");
  EXPECT_PROTO("\x80\x02"
               "cmultiprocessing.managers\nBaseProxy\n)\x81.",
               "multiprocessing.managers.BaseProxy");
  EXPECT_PROTO("\x80\x02"
               "cmultiprocessing.managers\nToken\nK\x01\x85\x81.",
               "NEWOBJ");
  EXPECT_PROTO("\x80\x02"
               "cmultiprocessing.managers\nToken\n\x8c\x01tN\x8c\x01i\x87R.",
               "REDUCE");
  /* BUILD on anything but a new Token, or with a state that is not a Token's. */
  EXPECT_PROTO("\x80\x02]}b.", "BUILD");
  EXPECT_PROTO("\x80\x02" TOKEN_NEW TOKEN_STATE "b}b.", "BUILD");
  EXPECT_PROTO("\x80\x02" TOKEN_NEW "}b.", "state");
  EXPECT_PROTO("\x80\x02" TOKEN_NEW "\x8c\x01tN\x86"
               "b.",
               "state");
  EXPECT_PROTO("\x80\x02" TOKEN_NEW "\x8c\x01tNK\x01\x87"
               "b.",
               "state");
  EXPECT_PROTO("\x80\x02" TOKEN_NEW "b.", "underflow");
  /* A Token never built, or referred to before its BUILD (itself in its own state). */
  EXPECT_PROTO("\x80\x02" TOKEN_NEW ".", "without its state");
  EXPECT_PROTO("\x80\x02]" TOKEN_NEW "a.", "without its state");
  EXPECT_PROTO("\x80\x04" TOKEN_NEW "\x94h\x00.", "before its BUILD");
  EXPECT_PROTO("\x80\x04" TOKEN_NEW "\x94\x8c\x01th\x00\x8c\x01i\x87"
               "b.",
               "before its BUILD");
  /* The class alone is no value. */
  EXPECT_PROTO("\x80\x02"
               "cmultiprocessing.managers\nToken\n\x85.",
               "class");
}

static void refuses_malformed_input(void **state) {
  (void)state;
  expect_proto("", 0, "truncated");
  expect_proto("\x80\x04K", 3, "truncated");
  expect_proto("\x80\x04X\xff\xff\xff\x7f"
               "abc.",
               10, "past the end");
  expect_proto("\x80\x09N.", 4, "protocol 9");
  expect_proto("\x80\x04NN.", 5, "exactly one");
  expect_proto("\x80\x04N.N", 5, "after STOP");
  expect_proto("\x80\x04"
               "a.",
               4, "underflow");
  expect_proto("\x80\x04"
               "e.",
               4, "MARK");
  expect_proto("\x80\x04h\x05.", 5, "memo");
  expect_proto("\x80\x04"
               "K\x01r\x09\x00\x00\x00.",
               10, "memo index");
  expect_proto("\x80\x04"
               "KK\x01\x88"
               "(K\x01e.",
               11, NULL);
  expect_proto("\x80\x04"
               "\xc8.",
               4, "opcode 0xc8");
  expect_proto("\x80\x04\x8c\x02\xff\xfe.", 7, "UTF-8");
  mp_value *v;
  assert_mp(MP_EINVAL, mp__pickle_loads(NULL, 0, &v, NULL));
}

static void bounds_nesting_depth(void **state) {
  (void)state;
  /* 100000 empty lists, each appended into the previous: a stack overflow elsewhere. */
  size_t n = 100000;
  char *buf = malloc(2 * n + 4);
  size_t k = 0;
  buf[k++] = '\x80';
  buf[k++] = 4;
  for (size_t i = 0; i < n; i++)
    buf[k++] = ']';
  for (size_t i = 1; i < n; i++)
    buf[k++] = 'a';
  buf[k++] = '.';
  expect_proto(buf, k, "nested deeper");
  free(buf);
}

static void bounds_memo_expansion(void **state) {
  (void)state;
  /* Level i is [level i-1, level i-1] through the memo: 2^24 values from 200 bytes. */
  char buf[512];
  size_t k = 0;
  buf[k++] = '\x80';
  buf[k++] = 4;
  buf[k++] = ']';
  buf[k++] = '\x94'; /* memo 0 */
  for (int i = 1; i <= 24; i++) {
    buf[k++] = '(';
    buf[k++] = 'h';
    buf[k++] = (char)(i - 1);
    buf[k++] = 'h';
    buf[k++] = (char)(i - 1);
    buf[k++] = 'l';
    buf[k++] = '\x94'; /* memo i */
  }
  buf[k++] = '.';
  expect_proto(buf, k, "size limit");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(reads_cpython_protocols_2_to_5),
      cmocka_unit_test(own_pickles_round_trip),
      cmocka_unit_test(reads_exceptions_in_replies),
      cmocka_unit_test(refuses_unknown_globals_and_big_ints),
      cmocka_unit_test(reads_cpython_manager_tokens),
      cmocka_unit_test(refuses_objects_but_tokens),
      cmocka_unit_test(refuses_malformed_input),
      cmocka_unit_test(bounds_nesting_depth),
      cmocka_unit_test(bounds_memo_expansion),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
