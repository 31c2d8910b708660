/* mp_popen_create_shell: a command line handed to the system shell (/bin/sh -c, cmd.exe /d
 * /s /c) with the pipes, waits and tree kills of any popen. The child is
 * tests/helpers/mp_testchild (see its header for its commands). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static char child_path[4096];

static mp_popen_opts capture_opts(void) {
  mp_popen_opts o;
  memset(&o, 0, sizeof o);
  o.std_out.mode = MP_STDIO_PIPE;
  o.std_err.mode = MP_STDIO_PIPE;
  return o;
}

static void shell_popen_pipes_and_exit_code(void **state) {
  (void)state;
  mp_popen_opts o = capture_opts();
  mp_popen *p;
  char *out, *err;
  int code;
  assert_mp_ok(mp_popen_create_shell(&p, "echo shell-popen&& exit 5", &o));
  assert_mp_ok(mp_popen_communicate(p, NULL, 0, &out, NULL, &err, NULL, 20000));
  assert_non_null(strstr(out, "shell-popen"));
  assert_mp_ok(mp_popen_returncode(p, &code));
  assert_int_equal(code, 5);
  mp_free(out);
  mp_free(err);
  mp_popen_free(p);
}

/* The line reaches the shell as written: its own quotes group words on both shells (an
 * argv-built cmd.exe line would have turned them into \" and broken them). */
static void shell_line_keeps_its_quotes(void **state) {
  (void)state;
  char line[5000];
  snprintf(line, sizeof line, "\"%s\" args \"two words\" plain", child_path);
  mp_popen_opts o = capture_opts();
  mp_popen *p;
  char *out;
  size_t len;
  assert_mp_ok(mp_popen_create_shell(&p, line, &o));
  assert_mp_ok(mp_popen_communicate(p, NULL, 0, &out, &len, NULL, NULL, 20000));
  assert_int_equal(len, sizeof "two words" + sizeof "plain");
  assert_string_equal(out, "two words");
  assert_string_equal(out + sizeof "two words", "plain");
  mp_free(out);
  mp_popen_free(p);
}

static void shell_popen_kill_tree_ends_the_shell_and_its_children(void **state) {
  (void)state;
  char line[5000], buf[256];
  snprintf(line, sizeof line, "\"%s\" spawn-sleep 30000 print ready sleep 30000", child_path);
  mp_popen_opts o = capture_opts();
  o.new_process_group = 1;
  mp_popen *p;
  size_t n = 0, got;
  assert_mp_ok(mp_popen_create_shell(&p, line, &o));
  while (n < 5 || strstr(buf, "ready") == NULL) {
    assert_mp_ok(mp_popen_read(p, MP_STDOUT, buf + n, sizeof buf - 1 - n, &got, 20000));
    n += got;
    buf[n] = '\0';
  }
  assert_mp_ok(mp_popen_kill_tree(p));
  /* End of file means every holder of the pipe (shell, child, grandchild) is gone. */
  int rc;
  while ((rc = mp_popen_read(p, MP_STDOUT, buf, sizeof buf, &got, 10000)) == 0) {
  }
  assert_mp(MP_EEOF, rc);
  assert_mp_ok(mp_popen_wait(p, 10000));
  int code;
  assert_mp_ok(mp_popen_returncode(p, &code));
  assert_int_equal(code, -9);
  mp_popen_free(p);
}

static void shell_popen_refuses_null(void **state) {
  (void)state;
  mp_popen *p = (mp_popen *)&p;
  assert_mp(MP_EINVAL, mp_popen_create_shell(&p, NULL, NULL));
  assert_null(p);
  assert_non_null(strstr(mp_last_error(), "cmdline"));
  assert_mp(MP_EINVAL, mp_popen_create_shell(NULL, "exit 0", NULL));
}

int main(void) {
  snprintf(child_path, sizeof child_path, "%s", mp_test_child_program());
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(shell_popen_pipes_and_exit_code),
      cmocka_unit_test(shell_line_keeps_its_quotes),
      cmocka_unit_test(shell_popen_kill_tree_ends_the_shell_and_its_children),
      cmocka_unit_test(shell_popen_refuses_null),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
