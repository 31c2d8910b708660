/* Windows command lines (src/win32/cmdline.c): pure code, tested on every leg. The quoting
 * vectors follow Rust's standard library tests for Windows arguments and batch files
 * (CVE-2024-24576). Each built line is read back by an independent model of the MSVCRT split
 * and of cmd.exe (helpers/cmdline_model.c); the Windows leg also runs real batch files. */
#include <stdlib.h>
#include <string.h>

#include "cmdline_model.h"
#include "testutil.h"
#include "win32/cmdline.h"

static char *build(const char *const *argv) {
  char *line = NULL;
  assert_mp_ok(mp__cmdline_build(argv, &line));
  return line;
}

/* argv survives the trip through a command line, byte for byte. */
static void round_trip(const char *const *argv) {
  char *line = build(argv);
  char **back = mp_model_msvcrt_split(line);
  size_t n = 0;
  for (; argv[n]; n++) {
    assert_non_null(back[n]);
    assert_string_equal(back[n], argv[n]);
  }
  assert_null(back[n]);
  mp_model_free(back);
  free(line);
}

#define ARGV(...) ((const char *const[]){__VA_ARGS__, NULL})

static void arguments_are_quoted_as_the_crt_reads_them(void **state) {
  (void)state;
  char *line = build(ARGV("prog", "aaa", "bbb", "ccc"));
  assert_string_equal(line, "\"prog\" aaa bbb ccc");
  free(line);
  line = build(ARGV("C:\\Program Files\\blah\\blah.exe", "aaa"));
  assert_string_equal(line, "\"C:\\Program Files\\blah\\blah.exe\" aaa");
  free(line);
  line = build(ARGV("C:\\Program Files\\test", "aa\"bb"));
  assert_string_equal(line, "\"C:\\Program Files\\test\" \"aa\\\"bb\"");
  free(line);
  line = build(ARGV("echo", "a b c", "", "\\", "\\\"", "a\\\\"));
  assert_string_equal(line, "\"echo\" \"a b c\" \"\" \\ \"\\\\\\\"\" a\\\\");
  free(line);
  /* Multi-argument runs, breakouts and non-ASCII text read back exactly. */
  round_trip(ARGV("prog", "a b", "", "c\"d", "e\\", "\\\\server\\share\\", "tab\there"));
  round_trip(ARGV("prog", "abc\"&echo hello", "\">file.txt", "hello^\"world", "%PATH%PATH%",
                  "!TMP!", "key=value"));
  round_trip(
      ARGV("prog", "\xcf\x80\xd0\xaf\xe9\x9f\xb3\xc3\xa6\xe2\x88\x9e", "x\"\"y", "\"\"", "\\\"\\"));
  /* A program name cannot hold a quote: no Windows file name does. */
  char *none = NULL;
  assert_mp(MP_EINVAL, mp__cmdline_build(ARGV("pro\"g", "a"), &none));
  assert_null(none);
}

static const char *const script = "C:\\dir with space\\t.bat";

static char *batch(const char *arg) {
  const char *argv[] = {"t.bat", arg, NULL};
  char *line = NULL;
  assert_mp_ok(mp__cmdline_build_batch(script, argv, &line));
  assert_int_equal(mp_model_cmd_breakout(line), 0);
  return line;
}

/* The argument as it sits in the line after the script name. */
static void batch_arg_is(const char *arg, const char *want) {
  char *line = batch(arg);
  const char *prefix = "cmd.exe /e:ON /v:OFF /d /c \"\"C:\\dir with space\\t.bat\" ";
  assert_memory_equal(line, prefix, strlen(prefix));
  size_t n = strlen(line);
  assert_int_equal(n, strlen(prefix) + strlen(want) + 1);
  assert_memory_equal(line + strlen(prefix), want, strlen(want));
  assert_int_equal(line[n - 1], '"');
  free(line);
}

static void batch_arguments_cannot_break_out(void **state) {
  (void)state;
  batch_arg_is("abc\"&echo hello", "\"abc\"\"&echo hello\"");
  batch_arg_is("\">file.txt", "\"\"\">file.txt\"");
  batch_arg_is("hello^\"world", "\"hello^\"\"world\"");
  batch_arg_is("%PATH%PATH%", "\"%%cd:~,%PATH%%cd:~,%PATH%%cd:~,%\"");
  batch_arg_is("!TMP!", "\"!TMP!\"");
  batch_arg_is("key=value", "\"key=value\"");
  batch_arg_is("plain-arg_1.txt", "plain-arg_1.txt");
  batch_arg_is("", "\"\"");
  batch_arg_is("ends\\", "\"ends\\\\\""); /* "%~1" must not see \" */
  batch_arg_is("a \\\"b", "\"a \\\\\"\"b\"");
  batch_arg_is("(x)|y<z", "\"(x)|y<z\"");
  /* Several arguments in one line, each contained. */
  const char *argv[] = {"t.bat", "a&b", "%x%", "\"", "c d", NULL};
  char *line = NULL;
  assert_mp_ok(mp__cmdline_build_batch(script, argv, &line));
  assert_int_equal(mp_model_cmd_breakout(line), 0);
  free(line);
  /* The model sees a breakout where there is one: it can fail. */
  assert_int_not_equal(mp_model_cmd_breakout("cmd.exe /d /c \"\"t.bat\" abc\"&echo hello\""), 0);
  assert_int_not_equal(mp_model_cmd_breakout("cmd.exe /d /c \"\"t.bat\" \"%PATH%\"\""), 0);
}

static void unsafe_batch_input_is_refused(void **state) {
  (void)state;
  char *line = NULL;
  assert_mp(MP_EINVAL, mp__cmdline_build_batch(script, ARGV("t.bat", "line\nbreak"), &line));
  assert_non_null(strstr(mp_last_error(), "line break"));
  assert_mp(MP_EINVAL, mp__cmdline_build_batch(script, ARGV("t.bat", "cr\r"), &line));
  assert_mp(MP_EINVAL, mp__cmdline_build_batch("C:\\a\"b.bat", ARGV("t.bat"), &line));
  assert_mp(MP_EINVAL, mp__cmdline_build_batch("C:\\dir\\", ARGV("t.bat"), &line));
  assert_null(line);
}

static void batch_files_are_recognised_however_spelt(void **state) {
  (void)state;
  assert_true(mp__cmdline_is_batch("C:\\x.bat"));
  assert_true(mp__cmdline_is_batch("x.BAT"));
  assert_true(mp__cmdline_is_batch("x.Cmd"));
  assert_true(mp__cmdline_is_batch("x.bat.")); /* CVE-2024-43402 */
  assert_true(mp__cmdline_is_batch("x.bat  "));
  assert_true(mp__cmdline_is_batch("x.cmd. ."));
  assert_false(mp__cmdline_is_batch("x.exe"));
  assert_false(mp__cmdline_is_batch("bat"));
  assert_false(mp__cmdline_is_batch("x.batx"));
  assert_false(mp__cmdline_is_batch("xbat"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(arguments_are_quoted_as_the_crt_reads_them),
      cmocka_unit_test(batch_arguments_cannot_break_out),
      cmocka_unit_test(unsafe_batch_input_is_refused),
      cmocka_unit_test(batch_files_are_recognised_however_spelt),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
