/* mprun end to end: the tool runs as a subprocess (through the library) with real jobs,
 * tests/helpers/mp_testchild (see its header for its commands), and the checks read what it
 * printed, the job log it wrote and the process table. The same tests run natively and as
 * Windows programs under Wine; what only one system has is marked. Ctrl-C in a terminal
 * and the progress bar as a person sees it are in tests/mprun_pty.sh. */
#if !defined(_WIN32) && !defined(_GNU_SOURCE)
#  define _GNU_SOURCE
#endif
#ifdef _WIN32
#  include <windows.h>
#else
#  include <signal.h>
#  include <sys/stat.h>
#  include <sys/types.h>
#endif
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mprun.h"
#include "testutil.h"

static char mprun_path[4096], child_path[4096];
static char workdir[1024]; /* every test's files, removed at the end */

/* ---- running mprun ------------------------------------------------------------------- */

typedef struct res {
  int code;
  char *out, *err;
  size_t out_len, err_len;
} res;

#define MAXARGS 96

/* Runs mprun with the arguments (NULL-terminated) and input on its stdin (NULL: none). */
static res run_v(const char *input, const char *first, va_list ap) {
  const char *argv[MAXARGS];
  int n = 0;
  argv[n++] = mprun_path;
  for (const char *a = first; a != NULL && n < MAXARGS - 1; a = va_arg(ap, const char *))
    argv[n++] = a;
  argv[n] = NULL;
  mp_popen_opts o;
  memset(&o, 0, sizeof o);
  o.search_path = 1;
  o.std_out.mode = o.std_err.mode = MP_STDIO_PIPE;
  if (input != NULL) {
    o.input = input;
    o.input_len = strlen(input);
  } else {
    o.std_in.mode = MP_STDIO_DEVNULL;
  }
  o.timeout_ms = 120000;
  mp_run_result r;
  assert_mp_ok(mp_run(argv, &o, &r));
  res out = {r.returncode, r.out, r.err, r.out_len, r.err_len};
  return out;
}

static res run_in(const char *input, const char *first, ...) {
  va_list ap;
  va_start(ap, first);
  res r = run_v(input, first, ap);
  va_end(ap);
  return r;
}

#define MPRUN(...) run_in(NULL, __VA_ARGS__, (const char *)NULL)
#define MPRUN_IN(input, ...) run_in(input, __VA_ARGS__, (const char *)NULL)

static void res_free(res *r) {
  mp_free(r->out);
  mp_free(r->err);
  memset(r, 0, sizeof *r);
}

/* Prints what mprun said when a check is about to fail. */
static void show(const res *r) {
  print_message("mprun exit %d\n--- stdout ---\n%s\n--- stderr ---\n%s\n", r->code, r->out, r->err);
}

static void expect_code(const res *r, int code) {
  if (r->code != code)
    show(r);
  assert_int_equal(r->code, code);
}

static size_t count_of(const char *hay, const char *needle) {
  size_t n = 0, k = strlen(needle);
  for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += k)
    n++;
  return n;
}

/* ---- files --------------------------------------------------------------------------- */

#ifdef _WIN32
#  define PATH_SEP '\\'
#else
#  define PATH_SEP '/'
#endif

static void path_in(char *out, size_t size, const char *dir, const char *name) {
  int n = snprintf(out, size, "%s%c%s", dir, PATH_SEP, name);
  assert_true(n > 0 && (size_t)n < size);
}

/* A fresh directory for one test, inside workdir. */
static void test_dir(char *out, size_t size, const char *tag) {
  path_in(out, size, workdir, tag);
#ifdef _WIN32
  assert_true(CreateDirectoryA(out, NULL));
#else
  assert_int_equal(mkdir(out, 0700), 0);
#endif
}

static void write_text(const char *path, const char *text, size_t len) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(text, 1, len, f), len);
  fclose(f);
}

/* Writes one value per line. */
static void write_lines(const char *path, const char *const *values, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  for (size_t i = 0; i < n; i++)
    fprintf(f, "%s\n", values[i]);
  fclose(f);
}

/* The whole file (malloc'd, NUL-terminated), or NULL if it does not exist. */
static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return NULL;
  size_t cap = 4096, len = 0, n;
  char *buf = malloc(cap);
  while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
    len += n;
    if (cap - len < 2048)
      buf = realloc(buf, cap *= 2);
  }
  fclose(f);
  assert_non_null(buf);
  buf[len] = '\0';
  return buf;
}

static int exists(const char *path) {
  char *s = slurp(path);
  free(s);
  return s != NULL;
}

#ifdef _WIN32
static int is_wine(void) {
  HMODULE ntdll = GetModuleHandleA("ntdll.dll");
  return ntdll != NULL && GetProcAddress(ntdll, "wine_get_version") != NULL;
}
#endif

/* ---- options and their errors -------------------------------------------------------- */

static void help_and_version(void **state) {
  (void)state;
  res r = MPRUN("--help");
  expect_code(&r, 0);
  assert_non_null(strstr(r.out, "Usage: mprun"));
  assert_non_null(strstr(r.out, "--joblog"));
  res_free(&r);
  r = MPRUN("--version");
  expect_code(&r, 0);
  assert_non_null(strstr(r.out, "mprun "));
  assert_non_null(strstr(r.out, mp_version()));
  res_free(&r);
}

/* mprun's own errors: a clear message and exit status 255, nothing run. */
static void bad_options_exit_255(void **state) {
  (void)state;
  static const struct {
    const char *args[6];
    const char *says;
    int usage; /* an option error, which points at --help */
  } cases[] = {
      {{"--no-such-option", "x"}, "unknown option", 1},
      {{"-j", "many", "x"}, "--jobs", 1},
      {{"-j"}, "needs a value", 1},
      {{"--timeout", "0", "x"}, "--timeout", 1},
      {{"--timeout", "5q", "x"}, "--timeout", 1},
      {{"--halt", "later", "x"}, "--halt", 1},
      {{"--halt", "now,fail=0", "x"}, "--halt", 1},
      {{"--halt", "now,fail=200%", "x"}, "--halt", 1},
      {{"--retries", "-1", "x"}, "--retries", 1},
      {{"--resume", "x"}, "--joblog", 1},
      {{"-k", "--line-buffer", "x"}, "--keep-order", 1},
      {{"--tag", "-u", "x"}, "--tag", 1},
      {{"x", ":::"}, "at least one value", 1},
      {{"-a", "-", "x", "::::", "-"}, "standard input", 1},
      {{"x", "{3}", ":::", "a", ":::", "b"}, "input source 3", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *const *a = cases[i].args;
    res r = MPRUN(a[0], a[1], a[2], a[3], a[4], a[5]);
    if (r.code != MPRUN_EXIT_ERROR || strstr(r.err, cases[i].says) == NULL)
      print_message("case %d (%s)\n", (int)i, a[0]);
    expect_code(&r, MPRUN_EXIT_ERROR);
    assert_non_null(strstr(r.err, cases[i].says));
    assert_int_equal(strncmp(r.err, "mprun: ", 7), 0);
    assert_int_equal(strstr(r.err, "mprun --help") != NULL, cases[i].usage);
    assert_int_equal(r.out_len, 0);
    res_free(&r);
  }
}

static void unreadable_input_exits_255(void **state) {
  (void)state;
  char dir[1024], missing[1200], big[1200], log[1200];
  test_dir(dir, sizeof dir, "mprun-input");
  path_in(missing, sizeof missing, dir, "missing.txt");
  res r = MPRUN("-a", missing, child_path, "print", "{}");
  expect_code(&r, MPRUN_EXIT_ERROR);
  assert_non_null(strstr(r.err, "missing.txt"));
  res_free(&r);
  /* A value longer than any command line could carry is refused, not held. */
  size_t n = ((size_t)1 << 20) + 10;
  char *text = malloc(n);
  assert_non_null(text);
  memset(text, 'v', n);
  path_in(big, sizeof big, dir, "big.txt");
  write_text(big, text, n);
  free(text);
  r = MPRUN("::::", big, ":::", "x");
  expect_code(&r, MPRUN_EXIT_ERROR);
  assert_non_null(strstr(r.err, "longer than"));
  res_free(&r);
  /* A job log that cannot be written. */
  path_in(log, sizeof log, missing, "log.txt");
  r = MPRUN("--joblog", log, child_path, "exit", "0", ":::", "x");
  expect_code(&r, MPRUN_EXIT_ERROR);
  assert_non_null(strstr(r.err, "job log"));
  res_free(&r);
}

/* ---- input and replacement strings --------------------------------------------------- */

/* mp_testchild "args" writes each argument followed by NUL. */
static void expect_args(const res *r, const char *const *want, size_t n) {
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    if (off >= r->out_len || strcmp(r->out + off, want[i]) != 0) {
      print_message("argument %d: want [%s] got [%s]\n", (int)i, want[i],
                    off < r->out_len ? r->out + off : "(end)");
      show(r);
    }
    assert_true(off < r->out_len);
    assert_string_equal(r->out + off, want[i]);
    off += strlen(want[i]) + 1;
  }
  assert_int_equal(off, r->out_len);
}

/* Checks that a run succeeded and gave the child exactly want's arguments; frees it. */
static void args_were(const char *const *want, size_t n, res r) {
  expect_code(&r, 0);
  expect_args(&r, want, n);
  res_free(&r);
}
#define EXPECT_ARGS(want, run) args_were(want, sizeof want / sizeof want[0], run)

static void replacement_strings(void **state) {
  (void)state;
  res r =
      MPRUN("-k", "-j", "1", child_path, "args", "{}", "{.}", "{/}", "{//}", "{/.}", "{#}", "{%}",
            "x{}y", "{nope}", "{1.}", ":::", "dir.x/file.tar.gz", "plain", "/top", ".rc");
  expect_code(&r, 0);
  /* One row of ten arguments per job. */
  // clang-format off
  static const char *const want[] = {
      "dir.x/file.tar.gz", "dir.x/file.tar", "file.tar.gz", "dir.x", "file.tar",
          "1", "1", "xdir.x/file.tar.gzy", "{nope}", "dir.x/file.tar",
      "plain", "plain", "plain", ".", "plain", "2", "1", "xplainy", "{nope}", "plain",
      "/top", "/top", "top", "/", "top", "3", "1", "x/topy", "{nope}", "/top",
      ".rc", "", ".rc", ".", "", "4", "1", "x.rcy", "{nope}", ""};
  // clang-format on
  expect_args(&r, want, sizeof want / sizeof want[0]);
  res_free(&r);
  /* {%} numbers the slots from 1 to -j. */
  r = MPRUN("-j", "3", child_path, "args", "{%}", ":::", "a", "b", "c");
  expect_code(&r, 0);
  assert_int_equal(r.out_len, 6);
  for (size_t i = 0; i < r.out_len; i += 2)
    assert_true(r.out[i] >= '1' && r.out[i] <= '3' && r.out[i + 1] == '\0');
  res_free(&r);
#ifdef _WIN32
  /* Windows paths split on both separators. */
  const char *win[] = {"name.ext", "c:\\dir.d", "c:\\dir.d\\name"};
  EXPECT_ARGS(win, MPRUN(child_path, "args", "{/}", "{//}", "{.}", ":::", "c:\\dir.d\\name.ext"));
#endif
}

static void sources_combine(void **state) {
  (void)state;
  /* Every combination, the last source fastest; {N} picks a source. */
  const char *all[] = {"1", "a", "2", "a", "1", "b", "2", "b"};
  EXPECT_ARGS(all, MPRUN("-k", child_path, "args", "{2}", "{1}", ":::", "a", "b", ":::", "1", "2"));
  /* Without a replacement string the values are appended, one argument each; a word that
   * is only {} also gives one argument per source. */
  const char *appended[] = {"a b", "c"};
  EXPECT_ARGS(appended, MPRUN("-k", child_path, "args", ":::", "a b", ":::", "c"));
  const char *whole[] = {"a", "c", "[a c]"};
  EXPECT_ARGS(whole, MPRUN("-k", child_path, "args", "{}", "[{}]", ":::", "a", ":::", "c"));
  /* --link: side by side, the shorter source starting over. */
  const char *linked[] = {"a1", "b2", "c1"};
  EXPECT_ARGS(linked, MPRUN("-k", "--link", child_path, "args", "{1}{2}", ":::", "a", "b", "c",
                            ":::", "1", "2"));
  /* An empty source gives no jobs at all. */
  char dir[1024], empty[1200];
  test_dir(dir, sizeof dir, "mprun-empty");
  path_in(empty, sizeof empty, dir, "empty.txt");
  write_text(empty, "", 0);
  res r = MPRUN(child_path, "exit", "3", ":::", "a", "::::", empty);
  expect_code(&r, 0);
  assert_int_equal(r.out_len, 0);
  res_free(&r);
}

static void stdin_files_and_nul_separated_input(void **state) {
  (void)state;
  /* Standard input, one value per line; an empty line is an empty value; the last line
   * needs no newline. */
  const char *lines[] = {"<one>", "<>", "<three>"};
  EXPECT_ARGS(lines, MPRUN_IN("one\n\nthree", "-k", child_path, "args", "<{}>"));
  /* -0: NUL-separated values may hold newlines. */
  char dir[1024], file[1200];
  test_dir(dir, sizeof dir, "mprun-files");
  path_in(file, sizeof file, dir, "values.bin");
  write_text(file, "a\nb\0c d\0", 8);
  const char *nul[] = {"a\nb", "c d"};
  EXPECT_ARGS(nul, MPRUN("-k", "-0", "-a", file, child_path, "args"));
  /* :::: FILE and -a FILE read a file; it combines with ::: like any source. */
  path_in(file, sizeof file, dir, "values.txt");
  write_text(file, "x\ny\n", 4);
  const char *combined[] = {"x1", "x2", "y1", "y2"};
  EXPECT_ARGS(combined, MPRUN("-k", child_path, "args", "{1}{2}", "::::", file, ":::", "1", "2"));
}

/* ---- output -------------------------------------------------------------------------- */

/* Each job writes its lines with pauses in between, on both streams; no other job's bytes
 * may come between them. */
static void output_is_grouped_per_job(void **state) {
  (void)state;
  res r =
      MPRUN("-j", "4", child_path, "print", "{}-1\n", "sleep", "30", "eprint", "{}-e\n", "print",
            "{}-2\n", "sleep", "30", "print", "{}-3\n", ":::", "a", "b", "c", "d", "e", "f");
  expect_code(&r, 0);
  const char *jobs = "abcdef";
  for (const char *j = jobs; *j; j++) {
    char block[32], err[16];
    snprintf(block, sizeof block, "%c-1\n%c-2\n%c-3\n", *j, *j, *j);
    snprintf(err, sizeof err, "%c-e\n", *j);
    if (strstr(r.out, block) == NULL)
      show(&r);
    assert_non_null(strstr(r.out, block));
    assert_non_null(strstr(r.err, err));
  }
  assert_int_equal(r.out_len, 6 * 12);
  assert_int_equal(r.err_len, 6 * 4);
  res_free(&r);
}

static void keep_order_and_large_outputs(void **state) {
  (void)state;
  /* The first job ends last, and the second writes 3 MiB that must wait (spilled to a
   * temporary file) until the first has been printed. */
  res r =
      MPRUN("-k", "-j", "3", "--link", child_path, "sleep", "{1}", "print", "<{2}>", "out", "{3}",
            ":::", "600", "0", "0", ":::", "first", "second", "third", ":::", "5", "3145728", "7");
  expect_code(&r, 0);
  size_t big = 3145728;
  assert_int_equal(r.out_len,
                   strlen("<first>") + 5 + strlen("<second>") + big + strlen("<third>") + 7);
  assert_memory_equal(r.out, "<first>abcde<second>abcdefg", 20);
  const char *third = r.out + 7 + 5 + 8 + big;
  assert_memory_equal(third, "<third>abcdefg", 14);
  /* The big block arrived whole: the pattern runs a..z without a break. */
  for (size_t i = 0; i < big; i++) {
    if (r.out[20 + i] != (char)('a' + i % 4096 % 26)) {
      print_message("byte %lu of the large output is wrong\n", (unsigned long)i);
      fail();
    }
  }
  res_free(&r);
}

static void line_buffer_and_tag(void **state) {
  (void)state;
  res r = MPRUN("--line-buffer", "--tag", child_path, "print", "one\ntwo\n", "eprint", "err\n",
                "print", "{}three", ":::", "A", "B");
  expect_code(&r, 0);
  assert_non_null(strstr(r.out, "A\tone\n"));
  assert_non_null(strstr(r.out, "A\ttwo\n"));
  assert_non_null(strstr(r.out, "B\tone\n"));
  assert_non_null(strstr(r.err, "A\terr\n"));
  assert_non_null(strstr(r.err, "B\terr\n"));
  /* A last line without its newline is printed as it is, at the job's end. */
  assert_non_null(strstr(r.out, "A\tAthree"));
  assert_int_equal(count_of(r.out, "\t"), 6);
  res_free(&r);
  /* --tag on grouped output tags every line, of both streams. */
  r = MPRUN("-k", "--tag", child_path, "print", "l1\nl2\n", "eprint", "e{#}\n", ":::", "x y");
  expect_code(&r, 0);
  assert_string_equal(r.out, "x y\tl1\nx y\tl2\n");
  assert_string_equal(r.err, "x y\te1\n");
  res_free(&r);
}

static void ungroup_writes_straight_through(void **state) {
  (void)state;
  res r = MPRUN("-u", "-j", "1", child_path, "print", "[{}]", ":::", "a", "b");
  expect_code(&r, 0);
  assert_string_equal(r.out, "[a][b]");
  res_free(&r);
}

static void dry_run_prints_and_runs_nothing(void **state) {
  (void)state;
  char dir[1024], marker[1200];
  test_dir(dir, sizeof dir, "mprun-dry");
  path_in(marker, sizeof marker, dir, "ran.txt");
  res r = MPRUN("-k", "--dry-run", child_path, "append", marker, "{}", ":::", "a b", "it's");
  expect_code(&r, 0);
  assert_false(exists(marker));
  assert_int_equal(count_of(r.out, "\n"), 2);
  assert_non_null(strstr(r.out, "'a b'\n"));
  assert_non_null(strstr(r.out, "'it'\\''s'\n"));
  res_free(&r);
}

/* ---- quoting: hostile values arrive unchanged ---------------------------------------- */

static const char *const hostile[] = {"two words",
                                      "",
                                      "\"",
                                      "say \"hi\"",
                                      "back\\slash",
                                      "trailing\\",
                                      "\\\"",
                                      "a&echo INJECTED",
                                      "pipe|x",
                                      "<redir>",
                                      "caret^",
                                      "percent %PATH% 50%",
                                      "!bang!",
                                      "$HOME `x` $(y)",
                                      "*?[g]",
                                      "'single'",
                                      "semi;colon",
                                      "-dash",
                                      "unicode: \xc3\xa9\xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80"};
#define NHOSTILE (sizeof hostile / sizeof hostile[0])

/* Runs `mprun -k [--shell] ... args {}` over the hostile values given on the command line,
 * and checks what the child received. */
static void round_trip(const char *const *cmd, size_t ncmd) {
  const char *argv[MAXARGS];
  size_t n = 0;
  argv[n++] = "-k";
  for (size_t i = 0; i < ncmd; i++)
    argv[n++] = cmd[i];
  argv[n++] = ":::";
  for (size_t i = 0; i < NHOSTILE; i++)
    argv[n++] = hostile[i];
  while (n < 40)
    argv[n++] = NULL;
  res r = MPRUN(argv[0], argv[1], argv[2], argv[3], argv[4], argv[5], argv[6], argv[7], argv[8],
                argv[9], argv[10], argv[11], argv[12], argv[13], argv[14], argv[15], argv[16],
                argv[17], argv[18], argv[19], argv[20], argv[21], argv[22], argv[23], argv[24],
                argv[25], argv[26], argv[27], argv[28], argv[29], argv[30], argv[31]);
  expect_code(&r, 0);
  expect_args(&r, hostile, NHOSTILE);
  assert_null(strstr(r.err, "INJECTED"));
  res_free(&r);
}

static void hostile_values_round_trip(void **state) {
  (void)state;
  /* No shell: the values are argv entries (quoted by the library on Windows). */
  const char *direct[] = {child_path, "args", "{}"};
  round_trip(direct, 3);
  /* --shell: mprun quotes each value for /bin/sh or cmd.exe. */
  char line[4200];
  snprintf(line, sizeof line, "\"%s\" args {}", child_path);
  const char *shell[] = {"--shell", line};
  round_trip(shell, 2);
  /* From a file too (the bytes of each line, whatever they are). */
  char dir[1024], file[1200];
  test_dir(dir, sizeof dir, "mprun-hostile");
  path_in(file, sizeof file, dir, "values.txt");
  write_lines(file, hostile, NHOSTILE);
  res r = MPRUN("-k", "-a", file, child_path, "args", "{}");
  expect_code(&r, 0);
  expect_args(&r, hostile, NHOSTILE);
  res_free(&r);
}

#ifdef _WIN32
/* A batch file: cmd.exe parses its line again; the library's escaping keeps every value
 * a value (CVE-2024-24576). Under Wine, whose cmd.exe expands '%' a second time inside
 * %*, values with '%' are checked only for not expanding (see test_popen.c). */
static void hostile_values_reach_a_batch_file(void **state) {
  (void)state;
  char dir[1024], bat[1200], values[1200], text[4500];
  test_dir(dir, sizeof dir, "mprun-bat");
  path_in(bat, sizeof bat, dir, "echo args.bat");
  snprintf(text, sizeof text, "@set MP_BAT_SECRET=\r\n@\"%s\" args %%*\r\n", child_path);
  write_text(bat, text, strlen(text));
  SetEnvironmentVariableA("MP_BAT_SECRET", "leaked");
  const char *want[NHOSTILE];
  size_t n = 0;
  for (size_t i = 0; i < NHOSTILE; i++)
    if (!(is_wine() && strchr(hostile[i], '%') != NULL))
      want[n++] = hostile[i];
  path_in(values, sizeof values, dir, "values.txt");
  write_lines(values, want, n);
  res r = MPRUN("-k", "-a", values, bat, "{}");
  expect_code(&r, 0);
  expect_args(&r, want, n);
  res_free(&r);
  r = MPRUN(bat, "{}", ":::", "%MP_BAT_SECRET%");
  expect_code(&r, 0);
  assert_null(strstr(r.out, "leaked"));
  res_free(&r);
  /* A line break cannot reach a batch file safely: that job fails to start, with the
   * reason, and the others run. */
  r = MPRUN("-k", bat, "{}", ":::", "ok", "line\nbreak");
  expect_code(&r, 1);
  assert_string_equal(r.out, "ok");
  assert_non_null(strstr(r.err, "line break"));
  res_free(&r);
}
#endif

/* ---- --shell and commands from the input --------------------------------------------- */

static void shell_mode_and_input_commands(void **state) {
  (void)state;
  char dir[1024], out[1200], line[5400];
  test_dir(dir, sizeof dir, "mprun-shell");
  /* The template is the user's shell syntax: a redirection works. */
  path_in(out, sizeof out, dir, "out-{#}.txt");
  snprintf(line, sizeof line, "\"%s\" print {} > \"%s\"", child_path, out);
  res r = MPRUN("--shell", line, ":::", "first", "second value");
  expect_code(&r, 0);
  res_free(&r);
  char f1[1200], f2[1200];
  path_in(f1, sizeof f1, dir, "out-1.txt");
  path_in(f2, sizeof f2, dir, "out-2.txt");
  char *a = slurp(f1), *b = slurp(f2);
  assert_non_null(a);
  assert_non_null(b);
  assert_string_equal(a, "first");
  assert_string_equal(b, "second value");
  free(a);
  free(b);
  /* Without a command each input line is a command line of its own. */
  char input[9000];
  snprintf(input, sizeof input, "\"%s\" print one\n\"%s\" exit 3\n", child_path, child_path);
  r = MPRUN_IN(input, "-k");
  expect_code(&r, 1);
  assert_string_equal(r.out, "one");
  res_free(&r);
}

/* ---- failures, exit codes, retries, halting ------------------------------------------ */

static void exit_status_counts_failures(void **state) {
  (void)state;
  res r = MPRUN(child_path, "exit", "{}", ":::", "0", "1", "0", "7", "2");
  expect_code(&r, 3);
  res_free(&r);
  r = MPRUN(child_path, "exit", "0", ":::", "a", "b");
  expect_code(&r, 0);
  res_free(&r);
  /* A program that does not exist fails each job with 127 and says why; more than 100
   * failed jobs give 101 (the values come on stdin). */
  char dir[1024], log[1200], values[2048] = "";
  test_dir(dir, sizeof dir, "mprun-exit");
  path_in(log, sizeof log, dir, "log.txt");
  for (int i = 0; i < 102; i++)
    snprintf(values + strlen(values), sizeof values - strlen(values), "%d\n", i);
  r = MPRUN_IN(values, "--joblog", log, "mprun-no-such-program");
  expect_code(&r, MPRUN_EXIT_MAX_FAILED);
  assert_int_equal(count_of(r.err, "mprun-no-such-program"), 102);
  assert_non_null(strstr(r.err, "not found"));
  res_free(&r);
  char *text = slurp(log);
  assert_non_null(text);
  assert_int_equal(count_of(text, "\t127\t0\t"), 102);
  free(text);
}

static void retries_run_a_failing_job_again(void **state) {
  (void)state;
  char dir[1024], counter[1200];
  test_dir(dir, sizeof dir, "mprun-retry");
  path_in(counter, sizeof counter, dir, "{}.count");
  /* Works at the 2nd run (within 3), works at the 3rd, never works within 3. */
  res r = MPRUN("--retries", "3", child_path, "fail-until", counter, "{}", "print", "ok{}",
                ":::", "2", "3", "5");
  expect_code(&r, 1);
  assert_non_null(strstr(r.out, "ok2"));
  assert_non_null(strstr(r.out, "ok3"));
  assert_null(strstr(r.out, "ok5"));
  res_free(&r);
  const char *names[] = {"2.count", "3.count", "5.count"};
  const size_t runs[] = {2, 3, 3};
  for (int i = 0; i < 3; i++) {
    char path[1200];
    path_in(path, sizeof path, dir, names[i]);
    char *text = slurp(path);
    assert_non_null(text);
    assert_int_equal(count_of(text, "\n"), runs[i]);
    free(text);
  }
}

/* --halt soon: the job that runs when another fails finishes and is printed; the job
 * still queued never starts. The running job waits for a file that the test creates only
 * once the job log shows the failure, so it cannot end first, whatever the load. */
static void halt_soon_lets_running_jobs_finish(void) {
  char dir[1024], log[1200], go[1200];
  test_dir(dir, sizeof dir, "mprun-soon");
  path_in(log, sizeof log, dir, "log.txt");
  path_in(go, sizeof go, dir, "go");
  /* Job 1 waits for the file, job 2 fails at once, job 3 would print. */
  const char *argv[] = {mprun_path,
                        "-j",
                        "2",
                        "--halt",
                        "soon,fail=1",
                        "--joblog",
                        log,
                        "--link",
                        child_path,
                        "{1}",
                        "{2}",
                        "print",
                        "finished-{#}",
                        ":::",
                        "wait-file",
                        "exit",
                        "print",
                        ":::",
                        go,
                        "1",
                        "x",
                        NULL};
  mp_popen_opts o;
  memset(&o, 0, sizeof o);
  o.search_path = 1;
  o.std_in.mode = MP_STDIO_DEVNULL;
  o.std_out.mode = o.std_err.mode = MP_STDIO_PIPE;
  mp_popen *p;
  assert_mp_ok(mp_popen_create(&p, argv, &o));
  char *text = NULL;
  for (int i = 0; i < 6000; i++) {
    free(text);
    text = slurp(log);
    if (text != NULL && strstr(text, "\n2\t") != NULL)
      break;
    mp_sleep_ms(10);
  }
  assert_non_null(strstr(text, "\n2\t"));
  free(text);
  write_text(go, "", 0);
  char *out, *err;
  assert_mp_ok(mp_popen_communicate(p, NULL, 0, &out, NULL, &err, NULL, 60000));
  int code;
  assert_mp_ok(mp_popen_returncode(p, &code));
  assert_int_equal(code, 1);
  assert_string_equal(out, "finished-1");
  assert_non_null(strstr(err, "--halt soon,fail=1"));
  text = slurp(log);
  assert_int_equal(count_of(text, "\n"), 3); /* the header, jobs 1 and 2 */
  free(text);
  mp_free(out);
  mp_free(err);
  mp_popen_free(p);
}

static void halt_policies(void **state) {
  (void)state;
  char dir[1024], log[1200];
  test_dir(dir, sizeof dir, "mprun-halt");
  path_in(log, sizeof log, dir, "log.txt");
  /* now,fail=1: stop at the first failure; exit with its status. */
  res r = MPRUN("-j", "1", "--halt", "now,fail=1", "--joblog", log, child_path, "exit", "{}",
                ":::", "0", "3", "0", "5");
  expect_code(&r, 3);
  assert_non_null(strstr(r.err, "--halt now,fail=1"));
  res_free(&r);
  char *text = slurp(log);
  assert_int_equal(count_of(text, "\n"), 3); /* the header and two jobs */
  free(text);
  /* now: the running job is killed (and not logged) when another fails. */
  uint64_t t0 = mp_monotonic_ns();
  r = MPRUN("-j", "2", "--halt", "2", "--joblog", log, child_path, "sleep", "{}", "print", "late{}",
            "exit", "4", ":::", "60000", "0");
  expect_code(&r, 4);
  assert_string_equal(r.out, "late0");
  assert_true(mp_monotonic_ns() - t0 < 30000000000ULL);
  res_free(&r);
  text = slurp(log);
  assert_int_equal(count_of(text, "\n"), 2);
  free(text);
  halt_soon_lets_running_jobs_finish();
  /* success=1 ends with 0; fail=N% ends with the failed share of all jobs. */
  r = MPRUN("-j", "1", "--halt", "now,success=1", child_path, "exit", "{}", ":::", "4", "0", "3");
  expect_code(&r, 0);
  res_free(&r);
  r = MPRUN("-j", "1", "--halt", "now,fail=50%", child_path, "exit", "{}", ":::", "0", "0", "3",
            "0", "4", "4", "4", "4", "4", "4");
  expect_code(&r, 50);
  res_free(&r);
}

static void timeout_kills_the_whole_tree(void **state) {
  (void)state;
  char dir[1024], log[1200];
  test_dir(dir, sizeof dir, "mprun-timeout");
  path_in(log, sizeof log, dir, "log.txt");
  uint64_t t0 = mp_monotonic_ns();
  res r = MPRUN("--timeout", "1.5", "--joblog", log, child_path, "{}", "30000", "print", "ready",
                "sleep", "30000", ":::", "spawn-sleep", "sleep");
  expect_code(&r, 2);
  assert_true(mp_monotonic_ns() - t0 < 20000000000ULL);
  const char *g = strstr(r.out, "grandchild ");
  assert_non_null(g);
  long long pid = atoll(g + strlen("grandchild "));
  assert_true(pid > 0);
  /* The kill is sent before mprun returns; the grandchild's end may lag a moment. */
  for (int i = 0; i < 500 && mp_test_process_alive(pid); i++)
    mp_sleep_ms(10);
  assert_false(mp_test_process_alive(pid));
  res_free(&r);
  char *text = slurp(log);
  assert_int_equal(count_of(text, "\t-1\t9\t"), 2); /* killed by the timeout */
  free(text);
}

/* ---- the job log and resuming -------------------------------------------------------- */

/* The columns of one job log line. */
typedef struct logline {
  char field[9][256];
} logline;

static size_t parse_log(const char *text, logline *lines, size_t max) {
  size_t n = 0;
  for (const char *p = text; *p && n < max; n++) {
    const char *end = strchr(p, '\n');
    assert_non_null(end);
    int k = 0;
    size_t len = 0;
    memset(&lines[n], 0, sizeof lines[n]);
    for (const char *q = p; q < end; q++) {
      if (*q == '\t' && k < 8) {
        k++;
        len = 0;
      } else if (len < 255) {
        lines[n].field[k][len++] = *q;
      }
    }
    assert_int_equal(k, 8);
    p = end + 1;
  }
  return n;
}

static int is_number(const char *s, int decimals, int width) {
  size_t n = strlen(s);
  if (width && n != (size_t)width)
    return 0;
  while (*s == ' ')
    s++;
  const char *dot = strchr(s, '.');
  if (decimals && (dot == NULL || strlen(dot + 1) != (size_t)decimals))
    return 0;
  for (; *s; s++)
    if (!(*s >= '0' && *s <= '9') && s != dot && !(*s == '-' && s == dot - 1))
      return 0;
  return 1;
}

static void joblog_format_and_resume(void **state) {
  (void)state;
  char dir[1024], log[1200];
  test_dir(dir, sizeof dir, "mprun-joblog");
  path_in(log, sizeof log, dir, "jobs.log");
  res r =
      MPRUN("--joblog", log, child_path, "print", "xyz", "exit", "{}", ":::", "0", "1", "0", "2");
  expect_code(&r, 2);
  res_free(&r);
  char *text = slurp(log);
  logline lines[16];
  assert_int_equal(parse_log(text, lines, 16), 5);
  const char *header[] = {"Seq",     "Host",    "Starttime", "JobRuntime", "Send",
                          "Receive", "Exitval", "Signal",    "Command"};
  for (int k = 0; k < 9; k++)
    assert_string_equal(lines[0].field[k], header[k]);
  int seen = 0;
  for (int i = 1; i <= 4; i++) {
    const logline *l = &lines[i];
    int seq = atoi(l->field[0]);
    assert_true(seq >= 1 && seq <= 4);
    seen |= 1 << seq;
    assert_string_equal(l->field[1], ":");
    assert_true(is_number(l->field[2], 3, 0));
    assert_true(atof(l->field[2]) > 1.6e9);
    assert_true(is_number(l->field[3], 3, 10)); /* "%10.3f", as GNU parallel writes it */
    assert_string_equal(l->field[4], "0");
    assert_string_equal(l->field[5], "3");
    const char *want_exit = seq == 2 ? "1" : seq == 4 ? "2" : "0";
    assert_string_equal(l->field[6], want_exit);
    assert_string_equal(l->field[7], "0");
    assert_non_null(strstr(l->field[8], "mp_testchild"));
    char tail[32];
    snprintf(tail, sizeof tail, " print xyz exit %s", want_exit);
    assert_non_null(strstr(l->field[8], tail));
  }
  assert_int_equal(seen, 0x1e);
  free(text);
  /* --resume: every listed job is done. */
  r = MPRUN("--resume", "--joblog", log, child_path, "print", "again{#}", ":::", "0", "1", "0",
            "2");
  expect_code(&r, 0);
  assert_int_equal(r.out_len, 0);
  res_free(&r);
  /* --resume-failed: only the failed ones run again (by their number), and are logged. */
  r = MPRUN("-k", "--resume-failed", "--joblog", log, child_path, "print", "again{#} ", ":::", "0",
            "1", "0", "2");
  expect_code(&r, 0);
  assert_string_equal(r.out, "again2 again4 ");
  res_free(&r);
  text = slurp(log);
  assert_int_equal(parse_log(text, lines, 16), 7);
  free(text);
  /* Now every job has succeeded once: --resume-failed has nothing left; a new job runs. */
  r = MPRUN("--resume-failed", "--joblog", log, child_path, "print", "again{#}", ":::", "0", "1",
            "0", "2", "new");
  expect_code(&r, 0);
  assert_string_equal(r.out, "again5");
  res_free(&r);
  /* An empty log (as a crashed run might leave) resumes as a new one, header first. */
  char empty[1200];
  path_in(empty, sizeof empty, dir, "empty.log");
  write_text(empty, "", 0);
  r = MPRUN("--resume", "--joblog", empty, child_path, "exit", "0", ":::", "a", "b");
  expect_code(&r, 0);
  res_free(&r);
  text = slurp(empty);
  assert_int_equal(parse_log(text, lines, 16), 3);
  assert_string_equal(lines[0].field[0], "Seq");
  free(text);
  /* Without --resume the log starts afresh. */
  r = MPRUN("--joblog", log, child_path, "exit", "0", ":::", "a");
  expect_code(&r, 0);
  res_free(&r);
  text = slurp(log);
  assert_int_equal(parse_log(text, lines, 16), 2);
  free(text);
}

/* ---- the progress bar, forced onto a pipe -------------------------------------------- */

static void forced_bar_draws_and_erases(void **state) {
  (void)state;
  res r = MPRUN("--bar", "-j", "1", child_path, "print", "{}\n", ":::", "a", "b");
  expect_code(&r, 0);
  assert_string_equal(r.out, "a\nb\n");
  assert_non_null(strstr(r.err, " 2/2 done, 0 failed, 0 running"));
  assert_non_null(strstr(r.err, "100%"));
  /* It ends erased: a carriage return and "erase to the end of the line". */
  assert_true(r.err_len >= 4);
  assert_memory_equal(r.err + r.err_len - 4, "\r\033[K", 4);
  res_free(&r);
  /* --no-progress and a pipe: nothing on stderr. */
  r = MPRUN("--no-progress", child_path, "print", "{}", ":::", "a");
  expect_code(&r, 0);
  assert_int_equal(r.err_len, 0);
  res_free(&r);
}

/* ---- stopping on a signal (POSIX; Windows' Ctrl-C is in tests/mprun_pty.sh) ---------- */

#ifndef _WIN32
/* Reads mprun's live output until `lines` lines containing "ready" arrived. */
static char *read_until_ready(mp_popen *p, int lines) {
  size_t cap = 65536, len = 0, got;
  char *buf = malloc(cap);
  assert_non_null(buf);
  buf[0] = '\0';
  while (count_of(buf, "ready\n") < (size_t)lines) {
    assert_mp_ok(mp_popen_read(p, MP_STDOUT, buf + len, cap - 1 - len, &got, 30000));
    len += got;
    buf[len] = '\0';
  }
  return buf;
}

static void stop_signal_kills_everything(int sig) {
  char dir[1024], log[1200], tag[32];
  snprintf(tag, sizeof tag, "mprun-signal-%d", sig);
  test_dir(dir, sizeof dir, tag);
  path_in(log, sizeof log, dir, "log.txt");
  const char *argv[] = {
      mprun_path,    "-j",    "2",     "--line-buffer", "--joblog", log,     child_path, "ids",
      "spawn-sleep", "30000", "print", "ready\n",       "sleep",    "30000", ":::",      "1",
      "2",           "3",     NULL};
  mp_popen_opts o;
  memset(&o, 0, sizeof o);
  o.search_path = 1;
  o.std_in.mode = MP_STDIO_DEVNULL;
  o.std_out.mode = MP_STDIO_PIPE;
  mp_popen *p;
  assert_mp_ok(mp_popen_create(&p, argv, &o));
  char *text = read_until_ready(p, 2), rest[4096];
  /* Every job and grandchild that exists now, from what they printed. */
  long long pids[8];
  int n = 0;
  for (const char *q = text; (q = strstr(q, "pid ")) != NULL && n < 8; q += 4)
    if (q == text || q[-1] == '\n')
      pids[n++] = atoll(q + 4);
  for (const char *q = text; (q = strstr(q, "grandchild ")) != NULL && n < 8; q += 11)
    pids[n++] = atoll(q + 11);
  assert_int_equal(n, 4);
  for (int i = 0; i < n; i++)
    assert_true(mp_test_process_alive(pids[i]));
  assert_int_equal(kill((pid_t)mp_popen_pid(p), sig), 0);
  assert_mp_ok(mp_popen_wait(p, 30000));
  int code;
  assert_mp_ok(mp_popen_returncode(p, &code));
  assert_int_equal(code, -sig); /* mprun ends as the signal would have ended it */
  for (int i = 0; i < n; i++) {
    for (int k = 0; k < 500 && mp_test_process_alive(pids[i]); k++)
      mp_sleep_ms(10);
    assert_false(mp_test_process_alive(pids[i]));
  }
  /* The third job never started; the killed ones are not logged (--resume reruns them). */
  size_t got;
  while (mp_popen_read(p, MP_STDOUT, rest, sizeof rest - 1, &got, 5000) == 0) {
    rest[got] = '\0';
    assert_null(strstr(rest, "pid "));
  }
  char *logged = slurp(log);
  assert_int_equal(count_of(logged, "\n"), 1);
  free(logged);
  free(text);
  mp_popen_free(p);
}

static void sigint_and_sigterm_kill_every_job_tree(void **state) {
  (void)state;
  stop_signal_kills_everything(SIGINT);
  stop_signal_kills_everything(SIGTERM);
}

static void closed_stdout_ends_mprun_quietly(void **state) {
  (void)state;
  char line[9000];
  snprintf(line, sizeof line,
           "set -o pipefail; \"%s\" -j 2 \"%s\" out 200000 ::: 1 2 3 4 5 6 | head -c 10 >/dev/null",
           mprun_path, child_path);
  const char *argv[] = {"bash", "-c", line, NULL};
  mp_popen_opts o;
  memset(&o, 0, sizeof o);
  o.search_path = 1;
  o.std_err.mode = MP_STDIO_PIPE;
  mp_run_result r;
  assert_mp_ok(mp_run(argv, &o, &r));
  assert_int_equal(r.returncode, 128 + SIGPIPE);
  assert_int_equal(r.err_len, 0);
  mp_run_result_free(&r);
}
#endif

/* ---- the pure parts, called directly ------------------------------------------------- */

static void quoting_for_both_shells(void **state) {
  (void)state;
  static const struct {
    const char *in, *sh, *cmd;
  } cases[] = {
      {"plain", "plain", "plain"},
      {"", "''", "\"\""},
      {"a b", "'a b'", "\"a b\""},
      {"it's", "'it'\\''s'", "\"it's\""},
      {"say \"hi\"", "'say \"hi\"'", "\"say \"\"hi\"\"\""},
      {"50%", "50%", "\"50%%cd:~,%\""},
      {"a&b", "'a&b'", "\"a&b\""},
      {"x^y", "'x^y'", "\"x^y\""},
      {"dir\\", "'dir\\'", "\"dir\\\\\""},
      {"a\\\"b", "'a\\\"b'", "\"a\\\\\"\"b\""},
      {"c:/x-y_z.txt", "c:/x-y_z.txt", "c:/x-y_z.txt"},
      {"\xc3\xa9t\xc3\xa9", "'\xc3\xa9t\xc3\xa9'", "\xc3\xa9t\xc3\xa9"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    strbuf sh = {0}, cmd = {0};
    quote_sh(&sh, cases[i].in);
    assert_mp_ok(quote_cmd(&cmd, cases[i].in));
    assert_string_equal(sh.s, cases[i].sh);
    assert_string_equal(cmd.s, cases[i].cmd);
    free(sh.s);
    free(cmd.s);
  }
  strbuf b = {0};
  assert_mp(MP_EINVAL, quote_cmd(&b, "line\nbreak"));
  assert_mp(MP_EINVAL, quote_cmd(&b, "cr\r"));
  free(b.s);
}

int main(void) {
  mp_test_native_path(mprun_path, sizeof mprun_path, MP_MPRUN);
  snprintf(child_path, sizeof child_path, "%s", mp_test_child_program());
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(quoting_for_both_shells),
      cmocka_unit_test(help_and_version),
      cmocka_unit_test(bad_options_exit_255),
      cmocka_unit_test(unreadable_input_exits_255),
      cmocka_unit_test(replacement_strings),
      cmocka_unit_test(sources_combine),
      cmocka_unit_test(stdin_files_and_nul_separated_input),
      cmocka_unit_test(output_is_grouped_per_job),
      cmocka_unit_test(keep_order_and_large_outputs),
      cmocka_unit_test(line_buffer_and_tag),
      cmocka_unit_test(ungroup_writes_straight_through),
      cmocka_unit_test(dry_run_prints_and_runs_nothing),
      cmocka_unit_test(hostile_values_round_trip),
#ifdef _WIN32
      cmocka_unit_test(hostile_values_reach_a_batch_file),
#endif
      cmocka_unit_test(shell_mode_and_input_commands),
      cmocka_unit_test(exit_status_counts_failures),
      cmocka_unit_test(retries_run_a_failing_job_again),
      cmocka_unit_test(halt_policies),
      cmocka_unit_test(timeout_kills_the_whole_tree),
      cmocka_unit_test(joblog_format_and_resume),
      cmocka_unit_test(forced_bar_draws_and_erases),
#ifndef _WIN32
      cmocka_unit_test(sigint_and_sigterm_kill_every_job_tree),
      cmocka_unit_test(closed_stdout_ends_mprun_quietly),
#endif
  };
  mp_test_temp_dir(workdir, sizeof workdir, "mprun");
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  mp_test_remove_tree(workdir);
  return failed;
}
