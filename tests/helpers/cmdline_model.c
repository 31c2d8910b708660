/* See cmdline_model.h. Written from Microsoft's documented rules ("Parsing C command-line
 * arguments", cmd /? and "set /?"), independently of win32/cmdline.c. */
#include <stdlib.h>
#include <string.h>

#include "cmdline_model.h"

static int push(char ***v, size_t *n, size_t *cap, char *s) {
  if (*n + 2 > *cap) {
    size_t c = *cap ? *cap * 2 : 8;
    char **nv = realloc(*v, c * sizeof *nv);
    if (nv == NULL)
      return -1;
    *v = nv, *cap = c;
  }
  (*v)[(*n)++] = s;
  (*v)[*n] = NULL;
  return 0;
}

char **mp_model_msvcrt_split(const char *p) {
  char **v = NULL;
  size_t n = 0, cap = 0, len = strlen(p);
  char *buf;
  /* argv[0]: up to the closing quote if it starts with one, else up to a blank. */
  if ((buf = malloc(len + 1)) == NULL)
    return NULL;
  size_t k = 0;
  if (*p == '"') {
    for (p++; *p && *p != '"'; p++)
      buf[k++] = *p;
    if (*p == '"')
      p++;
  } else {
    for (; *p && *p != ' ' && *p != '\t'; p++)
      buf[k++] = *p;
  }
  buf[k] = '\0';
  push(&v, &n, &cap, buf);
  for (;;) {
    while (*p == ' ' || *p == '\t')
      p++;
    if (*p == '\0')
      break;
    if ((buf = malloc(len + 1)) == NULL)
      break;
    k = 0;
    int inq = 0;
    for (; *p;) {
      size_t bs = 0;
      while (*p == '\\')
        bs++, p++;
      if (*p == '"') {
        for (size_t i = 0; i < bs / 2; i++)
          buf[k++] = '\\';
        if (bs % 2) {
          buf[k++] = '"';
          p++;
        } else if (inq && p[1] == '"') { /* "" inside quotes: a literal quote (MSVCRT 2008+) */
          buf[k++] = '"';
          p += 2;
        } else {
          inq = !inq;
          p++;
        }
        continue;
      }
      for (size_t i = 0; i < bs; i++)
        buf[k++] = '\\';
      if (*p == '\0' || (!inq && (*p == ' ' || *p == '\t')))
        break;
      buf[k++] = *p++;
    }
    buf[k] = '\0';
    push(&v, &n, &cap, buf);
  }
  return v;
}

void mp_model_free(char **argv) {
  for (size_t i = 0; argv && argv[i]; i++)
    free(argv[i]);
  free(argv);
}

size_t mp_model_cmd_breakout(const char *line) {
  const char *body = strstr(line, " /c \"");
  if (body == NULL)
    return 1;
  body += 5; /* cmd.exe strips this outer quote and the last one on the line */
  size_t n = strlen(body);
  if (n == 0 || body[n - 1] != '"')
    return (size_t)(body - line) + 1;
  int inq = 0;
  for (size_t i = 0; i + 1 < n; i++) {
    char c = body[i];
    if (c == '"') {
      inq = !inq;
      continue;
    }
    /* With /v:OFF '!' is literal; '%' is escaped as "%%cd:~,%": an empty slice of %cd%. */
    if (c == '%') {
      if (strncmp(body + i, "%%cd:~,%", 8) != 0)
        return (size_t)(body - line) + i + 1;
      i += 7;
      continue;
    }
    if (!inq && strchr("&|<>^()\r\n", c) != NULL)
      return (size_t)(body - line) + i + 1;
  }
  return inq ? (size_t)(body - line) + n : 0;
}
