/* Windows command-line quoting and batch-file escaping, in UTF-8. Pure code: no OS call,
 * so that it compiles, is unit-tested (tests/test_cmdline.c) and fuzzed (fuzz/fuzz_cmdline.c)
 * on Linux too. Every byte that matters here is ASCII, so UTF-8 passes through untouched. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../platform.h"
#include "cmdline.h"

int mp__cmdline_is_batch(const char *path) {
  size_t n = strlen(path);
  while (n > 0 && (path[n - 1] == '.' || path[n - 1] == ' '))
    n--; /* Windows drops trailing dots and spaces from a file name */
  if (n < 4 || path[n - 4] != '.')
    return 0;
  char ext[4] = {0};
  for (int i = 0; i < 3; i++)
    ext[i] = (char)(path[n - 3 + i] | 0x20); /* lower case; no other byte becomes a letter */
  return strcmp(ext, "bat") == 0 || strcmp(ext, "cmd") == 0;
}

/* What cmd.exe passes through unquoted, with every byte from 0x80 up. */
#define PLAIN_FOR_CMD "#$*+-./:?@\\_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

/* By the MSVCRT / CommandLineToArgvW rules an argument is quoted when empty or holding
 * whitespace or a quote. A batch file's (bat), which cmd.exe re-parses, also for anything
 * but plain characters, and when it ends in '\', which would escape the quote of "%~1". */
static int needs_quotes(const char *a, int bat) {
  size_t n = strlen(a);
  int quote = n == 0 || strpbrk(a, " \t\n\v\"") != NULL || (bat && a[n - 1] == '\\');
  for (const char *p = a; bat && *p; p++)
    quote |= (unsigned char)*p < 0x80 && strchr(PLAIN_FOR_CMD, *p) == NULL;
  return quote;
}

static char *put_n(char *p, char c, size_t n) {
  memset(p, c, n);
  return p + n;
}

/* Inside quotes, backslashes before a '"' (or the closing quote) are doubled and the '"'
 * itself is escaped: \" for the CRT, "" in a batch line. There '%' also becomes "%%cd:~,%"
 * (an empty substring of %cd%), so that no %VAR% expands. */
static char *put_arg(char *p, const char *a, int bat) {
  int quote = needs_quotes(a, bat);
  size_t backslashes = 0;
  if (quote)
    *p++ = '"';
  for (; *a; a++) {
    if (*a == '\\') {
      backslashes++;
      continue;
    }
    p = put_n(p, '\\', *a == '"' ? backslashes * 2 + !bat : backslashes);
    backslashes = 0;
    if (bat && *a == '"')
      *p++ = '"';
    if (bat && *a == '%')
      p += sprintf(p, "%s", "%%cd:~,");
    *p++ = *a;
  }
  p = put_n(p, '\\', quote ? backslashes * 2 : backslashes);
  if (quote)
    *p++ = '"';
  return p;
}

/* head, then name in quotes, never escaped (CreateProcess and the CRT read it up to the next
 * quote, backslashes and all), then argv[1..]. No byte of an argument takes more than 8. */
static int build(const char *head, const char *name, const char *const *argv, int bat, char **out) {
  size_t cap = strlen(head) + strlen(name) + 4;
  for (size_t i = 1; argv[i] != NULL; i++)
    cap += 8 * strlen(argv[i]) + 3;
  char *line = malloc(cap), *p = line;
  if (line == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory for the command line");
  p += sprintf(p, "%s\"%s\"", head, name);
  for (size_t i = 1; argv[i] != NULL; i++) {
    *p++ = ' ';
    p = put_arg(p, argv[i], bat);
  }
  if (bat)
    *p++ = '"';
  *p = '\0';
  *out = line;
  return 0;
}

int mp__cmdline_build(const char *const *argv, char **out) {
  if (argv == NULL || argv[0] == NULL || strchr(argv[0], '"') != NULL)
    return mp_set_error(MP_EINVAL, "program name \"%s\" holds '\"' (no Windows file name does)",
                        argv && argv[0] ? argv[0] : "(null)");
  return build("", argv[0], argv, 0, out);
}

int mp__cmdline_build_batch(const char *script, const char *const *argv, char **out) {
  size_t n = strlen(script);
  if (n == 0 || strchr(script, '"') != NULL || script[n - 1] == '\\')
    return mp_set_error(MP_EINVAL, "batch file name \"%s\" is empty, holds '\"' or ends in '\\'",
                        script);
  for (size_t i = 1; argv[i] != NULL; i++)
    if (strpbrk(argv[i], "\r\n") != NULL)
      return mp_set_error(MP_EINVAL,
                          "batch file argument \"%s\" holds a line break, which cmd.exe cannot "
                          "receive safely",
                          argv[i]);
  return build("cmd.exe /e:ON /v:OFF /d /c \"", script, argv, 1, out);
}
