/* Commands from the template: replacement strings ({}, {.}, {/}, {//}, {/.}, {#}, {%} and
 * {N...} for source N) are parsed once, then filled in for every job. Without a shell the
 * values go into argv as they are (the library quotes for Windows, batch files included);
 * with --shell they are quoted for /bin/sh or cmd.exe, and the template's own words are
 * the user's shell syntax, left alone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mprun.h"

/* ---- growable strings ---------------------------------------------------------------- */

void sb_putn(strbuf *b, const char *s, size_t n) {
  if (b->oom)
    return;
  if (b->cap - b->len < n + 1) {
    size_t cap = b->cap ? b->cap : 64;
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

void sb_puts(strbuf *b, const char *s) { sb_putn(b, s, strlen(s)); }

static void sb_putc(strbuf *b, char c) { sb_putn(b, &c, 1); }

/* ---- quoting ------------------------------------------------------------------------- */

void quote_sh(strbuf *b, const char *s) {
  static const char safe[] = "_@%+=:,./-";
  int plain = s[0] != '\0';
  for (const char *p = s; *p && plain; p++) {
    unsigned char c = (unsigned char)*p;
    plain = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            strchr(safe, c) != NULL;
  }
  if (plain) {
    sb_puts(b, s);
    return;
  }
  sb_putc(b, '\'');
  for (const char *p = s; *p; p++) {
    if (*p == '\'')
      sb_puts(b, "'\\''"); /* close, an escaped quote, reopen */
    else
      sb_putc(b, *p);
  }
  sb_putc(b, '\'');
}

/* cmd.exe re-parses & | < > ^ % and quotes; the program then splits with the C runtime's
 * rules. So: quote anything but plain ASCII, double '"' inside the quotes, write '%' as
 * "%%cd:~,%" (an empty substring of %cd% follows it, so no %VAR% can form), double the
 * backslashes that precede a quote, refuse CR and LF. The rules of Rust's fixed standard
 * library and of multiproc's batch-file escaping. */
int quote_cmd(strbuf *b, const char *s) {
  static const char plain_chars[] = "#$*+-./:?@\\_";
  size_t n = strlen(s), backslashes = 0;
  int quote = n == 0 || s[n - 1] == '\\';
  for (const char *p = s; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '\r' || c == '\n')
      return mp_set_error(MP_EINVAL,
                          "value \"%s\" holds a line break, which cmd.exe cannot "
                          "receive safely",
                          s);
    int alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (c < 0x80 && !alnum && strchr(plain_chars, c) == NULL)
      quote = 1;
  }
  if (quote)
    sb_putc(b, '"');
  for (const char *p = s; *p; p++) {
    if (*p == '\\') {
      backslashes++;
      sb_putc(b, '\\');
      continue;
    }
    for (; *p == '"' && backslashes > 0; backslashes--)
      sb_putc(b, '\\');
    if (*p == '"')
      sb_putc(b, '"');
    else if (*p == '%')
      sb_puts(b, "%%cd:~,");
    backslashes = 0;
    sb_putc(b, *p);
  }
  for (; quote && backslashes > 0; backslashes--)
    sb_putc(b, '\\');
  if (quote)
    sb_putc(b, '"');
  return 0;
}

/* ---- the template -------------------------------------------------------------------- */

typedef enum { P_LIT, P_VALUE, P_SEQ, P_SLOT } part_kind;
typedef enum { F_NONE, F_NOEXT, F_BASE, F_DIR, F_BASE_NOEXT } path_fn;

typedef struct part {
  part_kind kind;
  const char *text; /* P_LIT: text[0..len) */
  size_t len;
  size_t src; /* P_VALUE: 0 for every source, else 1-based */
  path_fn fn;
} part;

typedef struct word {
  part *parts;
  size_t n;
} word;

struct tmpl {
  word *words;
  size_t nwords, nsources;
  int shell, windows, has_repl;
};

/* Matches a replacement string at s ("{...}"); returns its length, or 0 for plain text. */
static size_t match_repl(const char *s, part *p) {
  static const struct {
    const char *suffix;
    path_fn fn;
  } fns[] = {{"//}", F_DIR}, {"/.}", F_BASE_NOEXT}, {"/}", F_BASE}, {".}", F_NOEXT}, {"}", F_NONE}};
  memset(p, 0, sizeof *p);
  if (strncmp(s, "{#}", 3) == 0 || strncmp(s, "{%}", 3) == 0) {
    p->kind = s[1] == '#' ? P_SEQ : P_SLOT;
    return 3;
  }
  size_t i = 1;
  while (s[i] >= '0' && s[i] <= '9' && i < 8)
    p->src = p->src * 10 + (size_t)(s[i++] - '0');
  if (i > 1 && p->src == 0)
    return 0; /* {0} is not a source */
  for (size_t k = 0; k < sizeof fns / sizeof fns[0]; k++) {
    size_t n = strlen(fns[k].suffix);
    if (strncmp(s + i, fns[k].suffix, n) == 0) {
      p->kind = P_VALUE;
      p->fn = fns[k].fn;
      return i + n;
    }
  }
  return 0;
}

static int add_part(word *w, const part *p) {
  part *np = realloc(w->parts, (w->n + 1) * sizeof *np);
  if (np == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory");
  w->parts = np;
  w->parts[w->n++] = *p;
  return 0;
}

static int parse_word(tmpl *t, word *w, const char *s) {
  const char *lit = s;
  int rc = 0;
  for (const char *p = s; rc == 0 && *p;) {
    part r;
    size_t n = *p == '{' ? match_repl(p, &r) : 0;
    if (n == 0) {
      p++;
      continue;
    }
    if (r.kind == P_VALUE && r.src > t->nsources)
      return mp_set_error(MP_EINVAL, "'%.*s' names input source %zu, but there %s only %zu", (int)n,
                          p, r.src, t->nsources == 1 ? "is" : "are", t->nsources);
    if (p > lit)
      rc = add_part(w, &(part){P_LIT, lit, (size_t)(p - lit), 0, F_NONE});
    if (rc == 0)
      rc = add_part(w, &r);
    t->has_repl = 1;
    p += n;
    lit = p;
  }
  if (rc == 0 && *lit)
    rc = add_part(w, &(part){P_LIT, lit, strlen(lit), 0, F_NONE});
  return rc;
}

int tmpl_create(tmpl **out, char *const *words, size_t n, size_t nsources, int shell, int windows) {
  tmpl *t = calloc(1, sizeof *t);
  if (t == NULL || (n > 0 && (t->words = calloc(n, sizeof *t->words)) == NULL)) {
    free(t);
    return mp_set_error(MP_ENOMEM, "out of memory");
  }
  t->nwords = n;
  t->nsources = nsources;
  t->shell = shell;
  t->windows = windows;
  for (size_t i = 0; i < n; i++) {
    int rc = parse_word(t, &t->words[i], words[i]);
    if (rc != 0) {
      tmpl_free(t);
      return rc;
    }
  }
  *out = t;
  return 0;
}

void tmpl_free(tmpl *t) {
  if (t == NULL)
    return;
  for (size_t i = 0; i < t->nwords; i++)
    free(t->words[i].parts);
  free(t->words);
  free(t);
}

/* ---- filling it in ------------------------------------------------------------------- */

static int is_sep(const tmpl *t, char c) { return c == '/' || (t->windows && c == '\\'); }

/* The part of v after its last separator. */
static const char *base_of(const tmpl *t, const char *v) {
  const char *b = v;
  for (const char *p = v; *p; p++)
    if (is_sep(t, *p))
      b = p + 1;
  return b;
}

/* Length of s without its extension: a last '.' followed by at least one character, none
 * of them a separator (GNU parallel's s:\.[^/.]+$::). */
static size_t noext_len(const tmpl *t, const char *s) {
  const char *dot = strrchr(s, '.');
  size_t n = strlen(s);
  if (dot == NULL || dot[1] == '\0' || dot < base_of(t, s))
    return n;
  return (size_t)(dot - s);
}

static void put_value(const tmpl *t, strbuf *b, const char *v, path_fn fn) {
  const char *base = base_of(t, v);
  switch (fn) {
  case F_NONE: sb_puts(b, v); break;
  case F_NOEXT: sb_putn(b, v, noext_len(t, v)); break;
  case F_BASE: sb_puts(b, base); break;
  case F_BASE_NOEXT: sb_putn(b, base, noext_len(t, base)); break;
  case F_DIR:
    if (base == v)
      sb_putc(b, '.');
    else if (base - 1 == v)
      sb_putn(b, v, 1); /* "/x": the root */
    else
      sb_putn(b, v, (size_t)(base - 1 - v));
    break;
  }
}

/* Appends one value (transformed by fn), quoted for the shell when there is one. */
static int put_quoted(const tmpl *t, strbuf *b, const char *v, path_fn fn) {
  if (!t->shell) {
    put_value(t, b, v, fn);
    return 0;
  }
  strbuf raw = {0};
  put_value(t, &raw, v, fn);
  int rc = 0;
  if (raw.oom)
    rc = mp_set_error(MP_ENOMEM, "out of memory");
  else if (t->windows)
    rc = quote_cmd(b, raw.s ? raw.s : "");
  else
    quote_sh(b, raw.s ? raw.s : "");
  free(raw.s);
  return rc;
}

static int put_part(const tmpl *t, strbuf *b, const part *p, char *const *values, uint64_t seq,
                    int slot) {
  char num[32];
  int rc = 0;
  switch (p->kind) {
  case P_LIT: sb_putn(b, p->text, p->len); break;
  case P_SEQ:
  case P_SLOT:
    snprintf(num, sizeof num, "%llu",
             p->kind == P_SEQ ? (unsigned long long)seq : (unsigned long long)slot);
    sb_puts(b, num);
    break;
  case P_VALUE:
    if (p->src > 0)
      return put_quoted(t, b, values[p->src - 1], p->fn);
    for (size_t i = 0; rc == 0 && i < t->nsources; i++) {
      if (i > 0)
        sb_putc(b, ' ');
      rc = put_quoted(t, b, values[i], p->fn);
    }
    break;
  }
  return rc;
}

/* argv under construction. */
typedef struct args {
  char **v;
  size_t n, cap;
} args;

/* Moves the string in b to the end of argv (b is left empty). */
static int args_push(args *a, strbuf *b) {
  char *s = b->oom ? NULL : b->s ? b->s : calloc(1, 1);
  if (s == NULL) {
    free(b->s);
    memset(b, 0, sizeof *b);
    return mp_set_error(MP_ENOMEM, "out of memory");
  }
  memset(b, 0, sizeof *b);
  if (a->n + 2 > a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 16;
    char **nv = realloc(a->v, cap * sizeof *nv);
    if (nv == NULL) {
      free(s);
      return mp_set_error(MP_ENOMEM, "out of memory");
    }
    a->v = nv;
    a->cap = cap;
  }
  a->v[a->n++] = s;
  a->v[a->n] = NULL;
  return 0;
}

static int build_argv(const tmpl *t, char *const *values, uint64_t seq, int slot, args *a) {
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < t->nwords; i++) {
    const word *w = &t->words[i];
    strbuf b = {0};
    /* A word that is only {} (or {.}, {/}, ...) gives one argument per source. */
    if (w->n == 1 && w->parts[0].kind == P_VALUE && w->parts[0].src == 0 && t->nsources > 1) {
      for (size_t k = 0; rc == 0 && k < t->nsources; k++) {
        put_value(t, &b, values[k], w->parts[0].fn);
        rc = args_push(a, &b);
      }
      continue;
    }
    for (size_t k = 0; rc == 0 && k < w->n; k++)
      rc = put_part(t, &b, &w->parts[k], values, seq, slot);
    if (rc == 0)
      rc = args_push(a, &b);
    else
      free(b.s);
  }
  for (size_t k = 0; rc == 0 && !t->has_repl && k < t->nsources; k++) {
    strbuf b = {0};
    sb_puts(&b, values[k]);
    rc = args_push(a, &b);
  }
  return rc;
}

static int build_line(const tmpl *t, char *const *values, uint64_t seq, int slot, strbuf *b) {
  int rc = 0;
  if (t->nwords == 0) {
    /* No command: each value is a command line of its own, as the user wrote it. */
    for (size_t k = 0; k < t->nsources; k++) {
      if (k > 0)
        sb_putc(b, ' ');
      sb_puts(b, values[k]);
    }
    return 0;
  }
  for (size_t i = 0; rc == 0 && i < t->nwords; i++) {
    if (i > 0)
      sb_putc(b, ' ');
    for (size_t k = 0; rc == 0 && k < t->words[i].n; k++)
      rc = put_part(t, b, &t->words[i].parts[k], values, seq, slot);
  }
  for (size_t k = 0; rc == 0 && !t->has_repl && k < t->nsources; k++) {
    sb_putc(b, ' ');
    rc = put_quoted(t, b, values[k], F_NONE);
  }
  return rc;
}

int tmpl_expand(const tmpl *t, char *const *values, uint64_t seq, int slot, command *c) {
  memset(c, 0, sizeof *c);
  strbuf shown = {0};
  int rc;
  if (t->shell) {
    strbuf line = {0};
    rc = build_line(t, values, seq, slot, &line);
    c->line = line.s ? line.s : calloc(1, 1);
    if (rc == 0 && (line.oom || c->line == NULL))
      rc = mp_set_error(MP_ENOMEM, "out of memory");
    if (rc == 0)
      sb_puts(&shown, c->line);
  } else {
    args a = {0};
    rc = build_argv(t, values, seq, slot, &a);
    c->argv = a.v;
    for (size_t i = 0; rc == 0 && i < a.n; i++) {
      if (i > 0)
        sb_putc(&shown, ' ');
      quote_sh(&shown, a.v[i]);
    }
  }
  c->display = shown.s;
  if (rc == 0 && (shown.oom || c->display == NULL))
    rc = mp_set_error(MP_ENOMEM, "out of memory");
  if (rc != 0)
    command_free(c);
  return rc;
}

void command_free(command *c) {
  for (size_t i = 0; c->argv && c->argv[i]; i++)
    free(c->argv[i]);
  free(c->argv);
  free(c->line);
  free(c->display);
  memset(c, 0, sizeof *c);
}

char *values_joined(char *const *values, size_t n) {
  strbuf b = {0};
  for (size_t i = 0; i < n; i++) {
    if (i > 0)
      sb_putc(&b, ' ');
    sb_puts(&b, values[i]);
  }
  if (b.oom) {
    free(b.s);
    return NULL;
  }
  return b.s ? b.s : calloc(1, 1);
}
