/* The pickle subset: CPython's own pickles (protocols 2-5) read back exactly, our pickles
 * read back exactly, exceptions in replies, a manager's Token read as its state tuple, and
 * hostile input refused with MP_EPROTO: unknown globals, NEWOBJ/BUILD on anything but a
 * new Token, integers past 64 bits, truncation, deep nesting and memo bombs. */
#include <stdio.h>
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
  /* Level i is [level i-1, level i-1] through the memo: 2^25 values from 200 bytes, in a
   * list of all the levels. */
  char buf[512];
  size_t k = 0;
  buf[k++] = '\x80';
  buf[k++] = 4;
  buf[k++] = '(';
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
  buf[k++] = 'l';
  buf[k++] = '.';
  expect_proto(buf, k, "size limit");
}

/* Reads buf expecting a refusal of the given kind (MP_PK_EXC_NONE: malformed). */
static void expect_refusal(const void *buf, size_t len, int kind, const char *needle) {
  mp__pk_read io = {0};
  mp_value *v = NULL;
  assert_mp(MP_EPROTO, mp__pickle_read(buf, len, &io, &v));
  assert_null(v);
  if (io.refusal != kind)
    fail_msg("refusal kind %d, expected %d (%s)", io.refusal, kind, mp_last_error());
  if (needle && strstr(mp_last_error(), needle) == NULL)
    fail_msg("message '%s' lacks '%s'", mp_last_error(), needle);
}
#define EXPECT_REFUSAL(lit, kind, needle) expect_refusal(lit, sizeof lit - 1, kind, needle)

/* Issue 11, class 1: no opcode may pop below the topmost MARK (CPython's fence). The first
 * input crashed the server (REDUCE took the ValueError class and an empty tuple from below
 * the MARK, then LIST and TUPLE2 reused the freed slots). */
static void pops_never_cross_a_mark(void **state) {
  (void)state;
  EXPECT_PROTO("\x80\x02"
               "cbuiltins\nValueError\n)(Rl\x86\x86.",
               "underflow");
  EXPECT_PROTO("\x80\x04N(\x85.", "underflow");   /* TUPLE1 */
  EXPECT_PROTO("\x80\x04NN(\x86.", "underflow");  /* TUPLE2 */
  EXPECT_PROTO("\x80\x04NNN(\x87.", "underflow"); /* TUPLE3 */
  EXPECT_PROTO("\x80\x04]N(a.", "underflow");     /* APPEND */
  EXPECT_PROTO("\x80\x04}NN(s.", "underflow");    /* SETITEM */
  EXPECT_PROTO("\x80\x04]((Ne.", "underflow");    /* APPENDS */
  EXPECT_PROTO("\x80\x04}((NNu.", "underflow");   /* SETITEMS */
  EXPECT_PROTO("\x80\x04\x8c\x01"
               "a\x8c\x01"
               "b(\x93.",
               "underflow"); /* STACK_GLOBAL */
  EXPECT_PROTO("\x80\x04\x8c\x01"
               "a)(R.",
               "underflow");                                            /* REDUCE */
  EXPECT_PROTO("\x80\x02" TOKEN_NEW "(" TOKEN_STATE "b.", "underflow"); /* BUILD */
  EXPECT_PROTO("\x80\x02"
               "cmultiprocessing.managers\nToken\n)(\x81.",
               "underflow");                    /* NEWOBJ */
  EXPECT_PROTO("\x80\x04N(\x94.", "underflow"); /* MEMOIZE */
  EXPECT_PROTO("\x80\x04(N.", "exactly one");   /* STOP with a MARK left */
  /* The same opcodes with their items above the MARK are fine. */
  mp_value *v = NULL;
  static const char ok[] = "\x80\x04(N\x85](NNeNN\x86l.";
  assert_mp_ok(mp__pickle_loads(ok, sizeof ok - 1, &v, NULL));
  mp_value *want =
      list_of(3, tuple_of(1, mp_value_nil()), list_of(2, mp_value_nil(), mp_value_nil()),
              tuple_of(2, mp_value_nil(), mp_value_nil()));
  assert_true(mp_value_equal(want, v));
  mp_value_free(want);
  mp_value_free(v);
}

/* Issue 11, class 2: a value the memo can still reach is never freed. The first input
 * read freed memory (a dict with a repeated key freed the first value while the memo still
 * named it); now it is refused, and a memo reference is the same object, as in Python. */
static void memo_references_share_not_free(void **state) {
  (void)state;
  EXPECT_REFUSAL("\x80\x02}(K\x01]q\x00K\x01Nuh\x00\x86.", MP_PK_EXC_VALUE, "equal");
  /* L = []; outer = [L, L]; L.append(1) through the second reference: [[1], [1]]. */
  mp_value *v = NULL, *want = list_of(2, list_of(1, mp_value_int(1)), list_of(1, mp_value_int(1)));
  static const char shared[] = "\x80\x04(]q\x00h\x00K\x01"
                               "al.";
  assert_mp_ok(mp__pickle_loads(shared, sizeof shared - 1, &v, NULL));
  assert_true(mp_value_equal(want, v));
  mp_value_free(want);
  mp_value_free(v);
  /* A value consumed by REDUCE or STACK_GLOBAL stays readable through the memo. */
  static const char after_reduce[] = "\x80\x04\x8c\x08"
                                     "builtins\x94\x8c\nValueError\x94\x93"
                                     "\x8c\x03msg\x94\x85\x94R(h\x00h\x02h\x03t\x86.";
  mp__pk_exc exc;
  assert_mp_ok(mp__pickle_loads(after_reduce, sizeof after_reduce - 1, &v, &exc));
  assert_int_equal(exc.kind, MP_PK_EXC_VALUE);
  assert_string_equal(exc.msg, "msg");
  want = tuple_of(
      2, mp_value_nil(),
      tuple_of(3, mp_value_str("builtins"), mp_value_str("msg"), tuple_of(1, mp_value_str("msg"))));
  assert_true(mp_value_equal(want, v));
  mp_value_free(want);
  mp_value_free(v);
}

/* Issue 11, class 9: a value is kept exactly or refused by name, never altered. */
static void refuses_what_it_cannot_keep(void **state) {
  (void)state;
  expect_refusal(py_put_set, PY_PUT_SET_LEN, MP_PK_EXC_TYPE, "set values");
  expect_refusal(py_put_frozenset, PY_PUT_FROZENSET_LEN, MP_PK_EXC_TYPE, "frozenset");
  expect_refusal(py_put_bytearray, PY_PUT_BYTEARRAY_LEN, MP_PK_EXC_TYPE, "bytearray");
  expect_refusal(py_put_complex, PY_PUT_COMPLEX_LEN, MP_PK_EXC_TYPE, "complex");
  expect_refusal(py_put_big_int, PY_PUT_BIG_INT_LEN, MP_PK_EXC_VALUE, "64 bits");
  EXPECT_REFUSAL("\x80\x04\x96\x02\x00\x00\x00\x00\x00\x00\x00"
                 "ab.",
                 MP_PK_EXC_TYPE, "bytearray");
  /* Lists and dicts that contain themselves: refused (they used to come back as [[]] and
   * {'self': {}}). */
  EXPECT_REFUSAL("\x80\x04]q\x00h\x00"
                 "a.",
                 MP_PK_EXC_VALUE, "contains itself");
  EXPECT_REFUSAL("\x80\x04}q\x00\x8c\x04selfh\x00s.", MP_PK_EXC_VALUE, "contains itself");
  EXPECT_REFUSAL("\x80\x04]q\x00h\x00\x85"
                 "a.",
                 MP_PK_EXC_VALUE, "contains itself");
  /* Unhashable keys, as Python's unpickler would raise TypeError. */
  EXPECT_REFUSAL("\x80\x04}]K\x01s.", MP_PK_EXC_TYPE, "'list'");
  EXPECT_REFUSAL("\x80\x04}}K\x01s.", MP_PK_EXC_TYPE, "'dict'");
  EXPECT_REFUSAL("\x80\x04}]\x85K\x01s.", MP_PK_EXC_TYPE, "'list'");
  /* Keys Python calls equal: 1 and True, 1 and 1.0, 0.0 and -0.0, ('a', 1) twice. */
  EXPECT_REFUSAL("\x80\x04}(K\x01N\x88Nu.", MP_PK_EXC_VALUE, "equal");
  EXPECT_REFUSAL("\x80\x04}(K\x01NG?\xf0\x00\x00\x00\x00\x00\x00Nu.", MP_PK_EXC_VALUE, "equal");
  EXPECT_REFUSAL("\x80\x04}(G\x00\x00\x00\x00\x00\x00\x00\x00NG\x80\x00\x00\x00\x00\x00\x00\x00Nu.",
                 MP_PK_EXC_VALUE, "equal");
  EXPECT_REFUSAL("\x80\x04}(\x8c\x01"
                 "aK\x01\x86N\x8c\x01"
                 "aK\x01\x86Nu.",
                 MP_PK_EXC_VALUE, "equal");
  /* Two NaN objects are two keys in Python; one NaN object twice is one key. */
  mp_value *v = NULL;
  static const char nans[] = "\x80\x04}(G\x7f\xf8\x00\x00\x00\x00\x00\x00K\x01"
                             "G\x7f\xf8\x00\x00\x00\x00\x00\x00K\x02u.";
  assert_mp_ok(mp__pickle_loads(nans, sizeof nans - 1, &v, NULL));
  size_t n = 0;
  assert_mp_ok(mp_value_len(v, &n));
  assert_int_equal(n, 2);
  mp_value_free(v);
  EXPECT_REFUSAL("\x80\x04}(G\x7f\xf8\x00\x00\x00\x00\x00\x00\x94K\x01h\x00K\x02u.",
                 MP_PK_EXC_VALUE, "equal");
  /* 2^63 - 1 in a non-minimal nine-byte LONG1 fits; 2^63 does not. */
  static const char long9[] = "\x80\x04\x8a\x09\xff\xff\xff\xff\xff\xff\xff\x7f\x00.";
  assert_mp_ok(mp__pickle_loads(long9, sizeof long9 - 1, &v, NULL));
  mp_value *want = mp_value_int(INT64_MAX);
  assert_true(mp_value_equal(want, v));
  mp_value_free(want);
  mp_value_free(v);
  EXPECT_REFUSAL("\x80\x04\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00.", MP_PK_EXC_VALUE,
                 "64 bits");
  EXPECT_REFUSAL("\x80\x04\x8a\x09\xff\xff\xff\xff\xff\xff\xff\x7f\xff.", MP_PK_EXC_VALUE,
                 "64 bits");
}

/* Appends "K<i>" or "M<i>" (a small non-negative int) to buf. */
static size_t put_small_int(unsigned char *buf, size_t k, unsigned i) {
  if (i < 256) {
    buf[k++] = 'K';
    buf[k++] = (unsigned char)i;
  } else {
    buf[k++] = 'M';
    buf[k++] = (unsigned char)(i & 0xff);
    buf[k++] = (unsigned char)(i >> 8);
  }
  return k;
}

/* Issue 11, class 4: dict keys cost O(n log n) comparisons, not O(n^2) (32,000 int keys
 * took seconds; 60,000 now take about a million comparisons). */
static void dict_keys_cost_n_log_n(void **state) {
  (void)state;
  const unsigned n = 60000;
  unsigned char *buf = malloc(8 * (size_t)n + 16);
  size_t k = 0;
  buf[k++] = 0x80;
  buf[k++] = 4;
  buf[k++] = '}';
  buf[k++] = '(';
  for (unsigned i = 0; i < n; i++) {
    k = put_small_int(buf, k, (i * 40503u) % 65536u); /* distinct: 40503 is odd */
    buf[k++] = 'N';
  }
  buf[k++] = 'u';
  buf[k++] = '.';
  mp__pk_read io = {0};
  mp_value *v = NULL;
  assert_mp_ok(mp__pickle_read(buf, k, &io, &v));
  size_t len = 0;
  assert_mp_ok(mp_value_len(v, &len));
  assert_int_equal(len, n);
  printf("%u keys: %zu comparisons\n", n, io.work);
  assert_true(io.work <= (size_t)n * 17); /* n log2 n is 950,000; n^2 / 2 is 1.8e9 */
  mp_value_free(v);
  free(buf);
}

/* Issue 11, class 4: the values a request may make are relative to its size. */
static void budget_is_relative_to_size(void **state) {
  (void)state;
  /* [None] * n where each None is one byte: fine. */
  size_t n = 300000;
  unsigned char *buf = malloc(n + 16);
  size_t k = 0;
  buf[k++] = 0x80;
  buf[k++] = 4;
  buf[k++] = '(';
  memset(buf + k, 'N', n);
  k += n;
  buf[k++] = 'l';
  buf[k++] = '.';
  mp_value *v = NULL;
  assert_mp_ok(mp__pickle_loads(buf, k, &v, NULL));
  mp_value_free(v);
  /* The same with a lower max_values: over budget, refused as a ValueError. */
  mp__pk_read io = {0};
  io.max_values = 1000;
  assert_mp(MP_EPROTO, mp__pickle_read(buf, k, &io, &v));
  assert_int_equal(io.refusal, MP_PK_EXC_VALUE);
  assert_non_null(strstr(mp_last_error(), "size limit"));
  free(buf);
  /* A short pickle may repeat a memo reference MP_PICKLE_REPEAT_VALUES times, no more:
   * [x, x, ..., x] with x a list of 64 Nones, 8192 times = 532,480 values from 16 KiB. */
  buf = malloc(3 * 8192 + 256);
  k = 0;
  buf[k++] = 0x80;
  buf[k++] = 4;
  buf[k++] = '(';
  buf[k++] = '(';
  memset(buf + k, 'N', 64);
  k += 64;
  buf[k++] = 'l';
  buf[k++] = 0x94;
  for (int i = 1; i < 8192; i++) {
    buf[k++] = 'h';
    buf[k++] = 0;
  }
  buf[k++] = 'l';
  buf[k++] = '.';
  expect_refusal(buf, k, MP_PK_EXC_VALUE, "size limit");
  free(buf);
  /* A server shutting down stops a long read. */
  int64_t cancel = 1;
  io.max_values = 0;
  io.cancel = &cancel;
  static const char big[] =
      "\x80\x04(NNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNN"
      "NNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNN"
      "l.";
  assert_mp_ok(mp__pickle_read(big, sizeof big - 1, &io, &v)); /* short: never looks */
  mp_value_free(v);
  buf = malloc(100000);
  memset(buf, 'N', 100000);
  buf[0] = 0x80;
  buf[1] = 4;
  buf[2] = '(';
  buf[99998] = 'l';
  buf[99999] = '.';
  assert_mp(MP_ECANCELED, mp__pickle_read(buf, 100000, &io, &v));
  free(buf);
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
      cmocka_unit_test(pops_never_cross_a_mark),
      cmocka_unit_test(memo_references_share_not_free),
      cmocka_unit_test(refuses_what_it_cannot_keep),
      cmocka_unit_test(dict_keys_cost_n_log_n),
      cmocka_unit_test(budget_is_relative_to_size),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
