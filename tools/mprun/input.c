/* Input sources and their combination. Every source but the first is read whole (it is
 * gone through once per value of the first); the first streams, so `find | mprun ...`
 * starts jobs before find ends. --link reads every source whole, as it needs their
 * lengths. Records end with '\n' (or NUL with -0); on Windows a '\r' before the '\n' goes
 * too. A record longer than MAX_RECORD is refused: no command line could carry it. */
#include <stdlib.h>
#include <string.h>

#include "mprun.h"

#define MAX_RECORD ((size_t)1 << 20)
#define READ_CHUNK 65536

/* ---- reading records ----------------------------------------------------------------- */

typedef struct reader {
  sys_in *in;
  char *buf;
  size_t len, pos, cap;
  int eof;
  char sep;
  int strip_cr;
  const char *name;
} reader;

static int reader_open(reader *r, const char *path, const options *o) {
  memset(r, 0, sizeof *r);
  r->sep = o->null_sep ? '\0' : '\n';
  r->strip_cr = !o->null_sep && sys_is_windows();
  r->name = path ? path : "standard input";
  return sys_in_open(&r->in, path);
}

static void reader_close(reader *r) {
  sys_in_close(r->in);
  free(r->buf);
  memset(r, 0, sizeof *r);
}

/* Reads more into the buffer after moving what is unread to its start. */
static int reader_fill(reader *r) {
  if (r->pos > 0) {
    memmove(r->buf, r->buf + r->pos, r->len - r->pos);
    r->len -= r->pos;
    r->pos = 0;
  }
  if (r->cap - r->len < READ_CHUNK) {
    if (r->len >= MAX_RECORD)
      return mp_set_error(MP_EINVAL, "%s: a value is longer than %zu bytes", r->name,
                          (size_t)MAX_RECORD);
    size_t cap = r->cap ? r->cap * 2 : READ_CHUNK * 2;
    char *nb = realloc(r->buf, cap + 1);
    if (nb == NULL)
      return mp_set_error(MP_ENOMEM, "out of memory reading %s", r->name);
    r->buf = nb;
    r->cap = cap;
  }
  size_t got;
  int rc = sys_in_read(r->in, r->buf + r->len, r->cap - r->len, &got);
  if (rc != 0)
    return error_context(r->name);
  r->len += got;
  r->eof = got == 0;
  return 0;
}

/* Gives the next record, NUL-terminated in place (valid until the next call): 1, 0 at the
 * end, or an error. */
static int reader_next(reader *r, char **rec) {
  for (;;) {
    char *start = NULL, *end = NULL;
    if (r->len > r->pos) {
      start = r->buf + r->pos;
      end = memchr(start, r->sep, r->len - r->pos);
      if (end == NULL && r->eof)
        end = r->buf + r->len; /* a last record without its separator */
    }
    if (end != NULL) {
      r->pos = (size_t)(end - r->buf) + (end < r->buf + r->len);
      if (r->strip_cr && end > start && end[-1] == '\r')
        end--;
      *end = '\0';
      *rec = start;
      return 1;
    }
    if (r->eof)
      return 0;
    int rc = reader_fill(r);
    if (rc != 0)
      return rc;
  }
}

/* ---- sources read whole -------------------------------------------------------------- */

typedef struct list {
  char **v;
  size_t n, cap;
  int owned; /* the strings are ours (read from a file), not argv's */
} list;

static int list_push(list *l, const char *s) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 64;
    char **nv = realloc(l->v, cap * sizeof *nv);
    if (nv == NULL)
      return mp_set_error(MP_ENOMEM, "out of memory for input values");
    l->v = nv;
    l->cap = cap;
  }
  size_t len = strlen(s);
  if ((l->v[l->n] = malloc(len + 1)) == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory for input values");
  memcpy(l->v[l->n++], s, len + 1);
  return 0;
}

static int list_load(list *l, const source *s, const options *o) {
  memset(l, 0, sizeof *l);
  if (!s->is_file) {
    l->v = s->values;
    l->n = s->nvalues;
    return 0;
  }
  l->owned = 1;
  reader r;
  char *rec;
  int rc = reader_open(&r, s->path, o);
  while (rc == 0 && (rc = reader_next(&r, &rec)) == 1)
    rc = list_push(l, rec);
  reader_close(&r);
  return rc < 0 ? rc : 0;
}

static void list_free(list *l) {
  if (l->owned) {
    for (size_t i = 0; i < l->n; i++)
      free(l->v[i]);
    free(l->v);
  }
}

/* ---- combining ----------------------------------------------------------------------- */

struct input {
  size_t width;
  int link, streaming, need_first, ended;
  reader first;     /* the first source, when it streams */
  list *lists;      /* every source read whole (lists[0] unused when streaming) */
  size_t *at;       /* the odometer: position in each list */
  size_t row, rows; /* --link: the current row and the longest source */
  char **cur;       /* the values handed out */
};

int input_open(input **out, const options *o) {
  input *in = calloc(1, sizeof *in);
  int rc = 0;
  if (in == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory");
  in->width = o->nsources;
  in->link = o->link;
  in->streaming = !o->link && o->sources[0].is_file;
  in->need_first = 1;
  in->lists = calloc(in->width, sizeof *in->lists);
  in->at = calloc(in->width, sizeof *in->at);
  in->cur = calloc(in->width, sizeof *in->cur);
  if (in->lists == NULL || in->at == NULL || in->cur == NULL)
    rc = mp_set_error(MP_ENOMEM, "out of memory");
  for (size_t i = in->streaming; rc == 0 && i < in->width; i++)
    rc = list_load(&in->lists[i], &o->sources[i], o);
  if (rc == 0 && in->streaming)
    rc = reader_open(&in->first, o->sources[0].path, o);
  for (size_t i = 0; rc == 0 && i < in->width; i++)
    if (in->lists[i].n > in->rows)
      in->rows = in->lists[i].n;
  if (rc != 0) {
    input_free(in);
    return rc;
  }
  *out = in;
  return 0;
}

size_t input_width(const input *in) { return in->width; }

static int next_linked(input *in, char ***values) {
  if (in->row >= in->rows)
    return 0;
  for (size_t i = 0; i < in->width; i++) {
    if (in->lists[i].n == 0)
      return 0; /* an empty source gives no rows at all */
    in->cur[i] = in->lists[i].v[in->row % in->lists[i].n];
  }
  in->row++;
  *values = in->cur;
  return 1;
}

/* Moves the first source on: the next record of a stream or the next listed value. */
static int advance_first(input *in) {
  if (in->streaming)
    return reader_next(&in->first, &in->cur[0]);
  if (in->at[0] >= in->lists[0].n)
    return 0;
  in->cur[0] = in->lists[0].v[in->at[0]++];
  return 1;
}

int input_next(input *in, char ***values) {
  if (in->link)
    return next_linked(in, values);
  for (size_t i = 1; i < in->width; i++)
    if (in->lists[i].n == 0)
      return 0; /* no combination has a value from an empty source */
  if (in->ended)
    return 0;
  if (in->need_first) {
    int rc = advance_first(in);
    if (rc <= 0) {
      in->ended = 1;
      return rc;
    }
    in->need_first = 0;
  }
  for (size_t i = 1; i < in->width; i++)
    in->cur[i] = in->lists[i].v[in->at[i]];
  /* Step the odometer, the last source fastest; a full turn needs the next first value. */
  size_t k = in->width;
  while (k-- > 1) {
    if (++in->at[k] < in->lists[k].n)
      break;
    in->at[k] = 0;
  }
  if (k == 0 || in->width == 1)
    in->need_first = 1;
  *values = in->cur;
  return 1;
}

void input_free(input *in) {
  if (in == NULL)
    return;
  if (in->streaming)
    reader_close(&in->first);
  for (size_t i = 0; in->lists && i < in->width; i++)
    list_free(&in->lists[i]);
  free(in->lists);
  free(in->at);
  free(in->cur);
  free(in);
}
