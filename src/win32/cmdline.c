/* Windows command-line quoting and batch-file escaping, in UTF-8. Pure code: no OS call,
 * so that it compiles, is unit-tested (tests/test_cmdline.c) and fuzzed (fuzz/fuzz_cmdline.c)
 * on Linux too. Every byte that matters here is ASCII, so UTF-8 passes through untouched. */
#include <stdlib.h>
#include <string.h>

#include "../platform.h"
#include "cmdline.h"

typedef struct str {
  char *s;
  size_t len, cap;
  int oom;
} str;

static void putn(str *b, const char *s, size_t n) {
  if (b->oom)
    return;
  if (b->cap - b->len < n + 1) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n + 1)
      cap *= 2;
    char *ns = realloc(b->s, cap);
    if (ns == NULL) {
      b->oom = 1;
      return;
    }
    b->s = ns;
    b->cap = cap;
  }
  memcpy(b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = '\0';
}

static void puts_(str *b, const char *s) { putn(b, s, strlen(s)); }
static void putc_(str *b, char c) { putn(b, &c, 1); }
static void repeat(str *b, char c, size_t n) {
  while (n-- > 0)
    putc_(b, c);
}

static int finish(str *b, char **out) {
  if (b->oom || b->s == NULL) {
    free(b->s);
    return mp_set_error(MP_ENOMEM, "out of memory for the command line");
  }
  *out = b->s;
  return 0;
}

int mp__cmdline_is_batch(const char *path) {
  size_t n = strlen(path);
  while (n > 0 && (path[n - 1] == '.' || path[n - 1] == ' '))
    n--; /* Windows drops trailing dots and spaces from a file name */
  if (n < 4 || path[n - 4] != '.')
    return 0;
  const char *e = path + n - 3;
  char lower[4];
  for (int i = 0; i < 3; i++)
    lower[i] = (char)(e[i] >= 'A' && e[i] <= 'Z' ? e[i] + 32 : e[i]);
  lower[3] = '\0';
  return strcmp(lower, "bat") == 0 || strcmp(lower, "cmd") == 0;
}

/* One argument by the MSVCRT / CommandLineToArgvW rules: quoted when empty or holding
 * whitespace or a quote; inside quotes, backslashes before a '"' (or the closing quote)
 * are doubled and the '"' itself is escaped. */
static void append_arg(str *b, const char *a) {
  if (a[0] != '\0' && strpbrk(a, " \t\n\v\"") == NULL) {
    puts_(b, a);
    return;
  }
  putc_(b, '"');
  size_t backslashes = 0;
  for (const char *p = a; *p; p++) {
    if (*p == '\\') {
      backslashes++;
      continue;
    }
    repeat(b, '\\', *p == '"' ? backslashes * 2 + 1 : backslashes);
    backslashes = 0;
    putc_(b, *p);
  }
  repeat(b, '\\', backslashes * 2);
  putc_(b, '"');
}

int mp__cmdline_build(const char *const *argv, char **out) {
  str b = {0};
  if (argv == NULL || argv[0] == NULL || strchr(argv[0], '"') != NULL)
    return mp_set_error(MP_EINVAL, "program name \"%s\" holds '\"' (no Windows file name does)",
                        argv && argv[0] ? argv[0] : "(null)");
  /* The program name is always quoted and never escaped: CreateProcess and the CRT read it
   * up to the next quote, backslashes and all. */
  putc_(&b, '"');
  puts_(&b, argv[0]);
  putc_(&b, '"');
  for (size_t i = 1; argv[i] != NULL; i++) {
    putc_(&b, ' ');
    append_arg(&b, argv[i]);
  }
  return finish(&b, out);
}

static int plain_for_cmd(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80 ||
         strchr("#$*+-./:?@\\_", c) != NULL;
}

/* An argument for a batch file, which cmd.exe re-parses: quote anything but plain
 * characters (and what ends in '\', which would escape the closing quote of "%~1"), double
 * '"', turn '%' into "%%cd:~,%" (an empty substring of %cd%, so that no %VAR% expands). */
static int append_bat_arg(str *b, const char *a) {
  size_t n = strlen(a);
  int quote = n == 0 || a[n - 1] == '\\';
  for (const char *p = a; *p; p++) {
    if (*p == '\r' || *p == '\n')
      return mp_set_error(MP_EINVAL,
                          "batch file argument \"%s\" holds a line break, which cmd.exe cannot "
                          "receive safely",
                          a);
    quote |= !plain_for_cmd((unsigned char)*p);
  }
  if (quote)
    putc_(b, '"');
  size_t backslashes = 0;
  for (const char *p = a; *p; p++) {
    if (*p == '\\') {
      backslashes++;
      putc_(b, '\\');
      continue;
    }
    if (*p == '"') {
      repeat(b, '\\', backslashes);
      putc_(b, '"');
    } else if (*p == '%') {
      puts_(b, "%%cd:~,");
    }
    backslashes = 0;
    putc_(b, *p);
  }
  if (quote) {
    repeat(b, '\\', backslashes);
    putc_(b, '"');
  }
  return 0;
}

int mp__cmdline_build_batch(const char *script, const char *const *argv, char **out) {
  size_t n = strlen(script);
  if (n == 0 || strchr(script, '"') != NULL || script[n - 1] == '\\')
    return mp_set_error(MP_EINVAL, "batch file name \"%s\" is empty, holds '\"' or ends in '\\'",
                        script);
  str b = {0};
  puts_(&b, "cmd.exe /e:ON /v:OFF /d /c \"\"");
  puts_(&b, script);
  putc_(&b, '"');
  for (size_t i = 1; argv[i] != NULL; i++) {
    putc_(&b, ' ');
    int rc = append_bat_arg(&b, argv[i]);
    if (rc != 0) {
      free(b.s);
      return rc;
    }
  }
  putc_(&b, '"');
  return finish(&b, out);
}
