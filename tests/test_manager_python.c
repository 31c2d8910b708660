/* Wire compatibility with CPython's multiprocessing.managers (Linux leg: Debian's python3,
 * and any newer python3.X on the machine). A Python client against a C manager: every
 * value type both ways, queue.Empty/Full/ValueError raised from the C server, a wrong key
 * refused, get_methods with a pickled Token (known, unknown, and through AutoProxy). A C client
 * against a Python manager: the same values, MP_EEMPTY/MP_EFULL, a wrong key giving MP_EAUTH while
 * the server goes on serving, and shutdown. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define KEY "secret key"

#ifndef _WIN32
/* The interpreters to test with, from CMake: "/usr/bin/python3|/path/python3.12|...". */
#  define MAX_PYTHONS 8
static char python_list[] = MP_INTEROP_PYTHONS;
static const char *pythons[MAX_PYTHONS];
static size_t n_pythons;

static void find_pythons(void) {
  for (char *p = strtok(python_list, "|"); p && n_pythons < MAX_PYTHONS; p = strtok(NULL, "|"))
    pythons[n_pythons++] = p;
}

/* The values py_client.py expects, in its order. */
static mp_value *expected(size_t i) {
  mp_value *v, *inner;
  char *big;
  switch (i) {
  case 0: return mp_value_nil();
  case 1: return mp_value_bool(1);
  case 2: return mp_value_bool(0);
  case 3: return mp_value_int(0);
  case 4: return mp_value_int(-1);
  case 5: return mp_value_int(INT64_MAX);
  case 6: return mp_value_int(INT64_MIN);
  case 7: return mp_value_double(1.5);
  case 8: return mp_value_double(1.0 / 0.0);
  case 9: return mp_value_str("h\xc3\xa9llo");
  case 10: return mp_value_str("");
  case 11: return mp_value_bytes("\x00\xff", 2);
  case 12: return mp_value_bytes("", 0);
  case 13:
    v = mp_value_list();
    inner = mp_value_list();
    mp_value_append(inner, mp_value_int(3));
    mp_value_append(v, mp_value_int(1));
    mp_value_append(v, mp_value_str("two"));
    mp_value_append(v, inner);
    return v;
  case 14:
    v = mp_value_dict();
    inner = mp_value_list();
    mp_value_append(inner, mp_value_int(1));
    mp_value_append(inner, mp_value_int(2));
    mp_value_dict_set(v, mp_value_str("k"), inner);
    mp_value_dict_set(v, mp_value_int(7), mp_value_nil());
    return v;
  case 15:
    v = mp_value_tuple();
    inner = mp_value_tuple();
    mp_value_append(inner, mp_value_int(2));
    mp_value_append(inner, mp_value_int(3));
    mp_value_append(v, mp_value_int(1));
    mp_value_append(v, inner);
    return v;
  case 16: return mp_value_tuple();
  case 17:
    big = malloc(1 << 20);
    memset(big, 'z', 1 << 20);
    v = mp_value_bytes(big, 1 << 20);
    free(big);
    return v;
  default: return NULL;
  }
}
#  define N_EXPECTED 18

static char *interop_path(const char *script) {
  static char path[1024];
  snprintf(path, sizeof path, "%s/%s", MP_INTEROP_DIR, script);
  return path;
}

/* Starts python with a script. */
static mp_popen *start_python(const char *python, const char *const *args, int pipe_stdin) {
  const char *argv[8] = {python};
  size_t n = 1;
  for (; args[n - 1]; n++)
    argv[n] = args[n - 1];
  argv[n] = NULL;
  mp_popen_opts o;
  memset(&o, 0, sizeof o);
  o.std_out.mode = MP_STDIO_PIPE;
  o.std_in.mode = pipe_stdin ? MP_STDIO_PIPE : MP_STDIO_DEVNULL;
  mp_popen *p = NULL;
  assert_mp_ok(mp_popen_create(&p, argv, &o));
  return p;
}

static void run_python_client(const char *python, const char *addr, const char *mode) {
  const char *args[] = {interop_path("py_client.py"), addr, KEY, mode, NULL};
  char *out = mp_test_run(python, args);
  printf("%s", out);
  mp_free(out);
}

static void python_client_c_manager(void **state) {
  (void)state;
  assert_true(n_pythons > 0);
  for (size_t k = 0; k < n_pythons; k++) {
    printf("[ %s ]\n", pythons[k]);
    mp_manager *m;
    mp_queue *task, *result;
    assert_mp_ok(mp_manager_create(&m, "127.0.0.1:0", KEY, NULL));
    assert_mp_ok(mp_manager_register_queue(m, "get_task_queue", 0));
    assert_mp_ok(mp_manager_register_queue(m, "get_result_queue", 0));
    assert_mp_ok(mp_manager_register_queue(m, "small", 1));
    assert_mp_ok(mp_manager_start(m));
    assert_mp_ok(mp_manager_local_queue(m, "get_task_queue", &task));
    assert_mp_ok(mp_manager_local_queue(m, "get_result_queue", &result));
    for (size_t i = 0; i < N_EXPECTED; i++) {
      mp_value *v = expected(i);
      assert_mp_ok(mp_queue_put_value(task, v, 0));
      mp_value_free(v);
    }
    run_python_client(pythons[k], mp_manager_address(m), "wrongkey");
    run_python_client(pythons[k], mp_manager_address(m), "values");
    run_python_client(pythons[k], mp_manager_address(m), "methods");
    mp_manager *nul = NULL; /* a key with a NUL byte, as Python's bytes allow */
    assert_mp_ok(mp_manager_create_bytes(&nul, "127.0.0.1:0", KEY "\0nul", sizeof KEY + 3, NULL));
    assert_mp_ok(mp_manager_register_queue(nul, "q", 0));
    assert_mp_ok(mp_manager_start(nul));
    run_python_client(pythons[k], mp_manager_address(nul), "nulkey");
    mp_manager_free(nul);
    for (size_t i = 0; i < N_EXPECTED; i++) { /* Python's own pickles of the values */
      mp_value *want = expected(i), *got = NULL;
      assert_mp_ok(mp_queue_get_value(result, &got, 0));
      assert_true(mp_value_equal(want, got));
      mp_value_free(want);
      mp_value_free(got);
    }
    mp_queue_free(task);
    mp_queue_free(result);
    mp_manager_free(m);
  }
}

/* Reads the first line ("Manager serving on host:port") and returns the address. */
static void read_address(mp_popen *p, char *addr, size_t size) {
  char line[256];
  size_t len = 0, n;
  while (memchr(line, '\n', len) == NULL && len < sizeof line - 1) {
    assert_mp_ok(mp_popen_read(p, MP_STDOUT, line + len, sizeof line - 1 - len, &n, 30000));
    len += n;
  }
  line[len] = '\0';
  const char *at = strstr(line, "serving on ");
  assert_non_null(at);
  snprintf(addr, size, "%s", at + strlen("serving on "));
  addr[strcspn(addr, "\r\n")] = '\0';
}

static void c_client_python_manager(void **state) {
  (void)state;
  assert_true(n_pythons > 0);
  for (size_t k = 0; k < n_pythons; k++) {
    printf("[ %s ]\n", pythons[k]);
    const char *args[] = {interop_path("py_server.py"), "127.0.0.1:0", KEY, NULL};
    mp_popen *p = start_python(pythons[k], args, 1);
    char addr[128];
    read_address(p, addr, sizeof addr);
    mp_manager_client *c = NULL, *bad = NULL;
    assert_mp(MP_EAUTH, mp_manager_connect(&bad, addr, "wrong"));
    assert_mp_ok(mp_manager_connect(&c, addr, KEY));
    mp_queue *task, *small;
    assert_mp(MP_ENOENT, mp_manager_queue(c, "no_such_queue", &task));
    assert_mp_ok(mp_manager_queue(c, "get_task_queue", &task));
    assert_mp_ok(mp_manager_queue(c, "small", &small));
    mp_value *got = NULL;
    assert_mp(MP_EEMPTY, mp_queue_get_value(task, &got, 200));
    assert_mp(MP_EEMPTY, mp_queue_get_value(task, &got, 0));
    for (size_t i = 0; i < N_EXPECTED; i++) {
      mp_value *want = expected(i);
      assert_mp_ok(mp_queue_put_value(task, want, 5000));
      assert_mp_ok(mp_queue_get_value(task, &got, 5000));
      assert_true(mp_value_equal(want, got));
      mp_value_free(want);
      mp_value_free(got);
    }
    mp_value *one = mp_value_int(1);
    assert_mp_ok(mp_queue_put_value(small, one, 0));
    assert_mp(MP_EFULL, mp_queue_put_value(small, one, 0));
    assert_mp(MP_EFULL, mp_queue_put_value(small, one, 100));
    assert_int_equal(mp_queue_full(small), 1);
    size_t n = 0;
    assert_mp_ok(mp_queue_qsize(small, &n));
    assert_int_equal(n, 1);
    mp_value_free(one);
    mp_queue_free(task);
    mp_queue_free(small);
    assert_mp_ok(mp_manager_remote_shutdown(c)); /* Python's server lets anyone do this */
    mp_manager_disconnect(c);
    assert_mp_ok(mp_popen_wait(p, 30000));
    int code = -1;
    assert_mp_ok(mp_popen_returncode(p, &code));
    assert_int_equal(code, 0);
    mp_popen_free(p);
  }
}
#else
static void python_client_c_manager(void **state) {
  (void)state;
  skip(); /* no Python under Wine: the Windows leg runs the C-to-C tests */
}
static void c_client_python_manager(void **state) {
  (void)state;
  skip();
}
#endif

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
#ifndef _WIN32
  find_pythons();
#endif
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(python_client_c_manager),
      cmocka_unit_test(c_client_python_manager),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
