/* Job output. By default a job writes into two temporary files of its slot (stdout and
 * stderr), which are copied to mprun's own streams whole when it ends, so nothing is
 * interleaved and nothing large sits in memory. With --keep-order a job that ends before
 * its turn is appended to one spill file and printed from there when every earlier job has
 * been. --line-buffer reads pipes instead and prints whole lines as they come (stdout on
 * the slot's thread, stderr on a helper thread); --ungroup lets jobs write to our streams.
 * --tag starts every line with the job's values and a tab. All printing happens under the
 * scheduler's lock, with the progress bar erased first and redrawn after. */
#include <stdlib.h>
#include <string.h>

#include "mprun.h"

#define CHUNK 65536

/* ---- the shared side ----------------------------------------------------------------- */

/* A job kept for its turn (--keep-order). */
typedef struct kept {
  uint64_t seq;
  int state;               /* KEPT_NONE, KEPT_OUTPUT, KEPT_SKIP */
  uint64_t off[2], len[2]; /* stdout and stderr in the spill file */
  char *tag;
} kept;

enum { KEPT_NONE = 0, KEPT_OUTPUT, KEPT_SKIP };

struct output {
  mp_lock *lock;
  bar *bar;
  const counts *n;
  int keep_order;
  int err; /* the first write error; later printing is pointless */
  char in[CHUNK], out[CHUNK];
  size_t outlen;
  sys_tmp *spill;
  uint64_t spill_len;
  uint64_t next; /* the seq whose output is printed next */
  kept *ring;    /* seqs next .. next + cap - 1, at seq % cap */
  size_t cap, count;
};

int output_create(output **out, const options *opt, mp_lock *lock, bar *b, const counts *n) {
  output *o = calloc(1, sizeof *o);
  if (o == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory");
  o->lock = lock;
  o->bar = b;
  o->n = n;
  o->keep_order = opt->keep_order;
  o->next = 1;
  *out = o;
  return 0;
}

void output_free(output *o) {
  if (o == NULL)
    return;
  for (size_t i = 0; i < o->cap; i++)
    free(o->ring[i].tag);
  free(o->ring);
  sys_tmp_free(o->spill);
  free(o);
}

/* ---- printing ------------------------------------------------------------------------ */

static int flush_stage(output *o, int stream) {
  if (o->outlen > 0 && o->err == 0) {
    o->err = sys_write_all(stream, o->out, o->outlen);
    bar_after_output_locked(o->bar, o->out[o->outlen - 1]);
  }
  o->outlen = 0;
  return o->err;
}

static int stage(output *o, int stream, const char *data, size_t len) {
  while (len > 0 && o->err == 0) {
    if (o->outlen == CHUNK)
      flush_stage(o, stream);
    size_t k = CHUNK - o->outlen < len ? CHUNK - o->outlen : len;
    memcpy(o->out + o->outlen, data, k);
    o->outlen += k;
    data += k;
    len -= k;
  }
  return o->err;
}

/* Stages bytes, putting "tag<TAB>" before every line when there is a tag; *bol says
 * whether the next byte begins a line. */
static int emit(output *o, int stream, const char *data, size_t len, const char *tag, int *bol) {
  if (tag == NULL)
    return stage(o, stream, data, len);
  while (len > 0 && o->err == 0) {
    if (*bol) {
      stage(o, stream, tag, strlen(tag));
      stage(o, stream, "\t", 1);
    }
    const char *nl = memchr(data, '\n', len);
    size_t k = nl ? (size_t)(nl - data) + 1 : len;
    stage(o, stream, data, k);
    *bol = nl != NULL;
    data += k;
    len -= k;
  }
  return o->err;
}

/* Prints len bytes of a temporary file from off to stream. */
static int emit_file(output *o, int stream, sys_tmp *f, uint64_t off, uint64_t len,
                     const char *tag) {
  int bol = 1;
  while (len > 0 && o->err == 0) {
    size_t got;
    int rc = sys_tmp_read_at(f, off, o->in, len < CHUNK ? (size_t)len : CHUNK, &got);
    if (rc != 0 || got == 0)
      return o->err = rc != 0 ? rc : mp_set_error(MP_EOS, "a temporary file got shorter");
    emit(o, stream, o->in, got, tag, &bol);
    off += got;
    len -= got;
  }
  return flush_stage(o, stream);
}

int output_write_locked(output *o, int stream, const void *buf, size_t len) {
  bar_hide_locked(o->bar);
  stage(o, stream, buf, len);
  flush_stage(o, stream);
  bar_draw_locked(o->bar, o->n, 1);
  return o->err;
}

/* ---- captures ------------------------------------------------------------------------ */

typedef struct linebuf {
  char buf[CHUNK];
  size_t len;
  int bol;
} linebuf;

struct capture {
  int mode;
  sys_tmp *file[2]; /* OUT_GROUP: stdout, stderr */
  /* OUT_LINE */
  output *o;
  mp_popen *p;
  const char *tag;
  linebuf *lines[2];
  mp_thread *err_reader;
  uint64_t received;
};

int capture_create(capture **out, out_mode mode) {
  capture *c = calloc(1, sizeof *c);
  if (c == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory");
  c->mode = (int)mode;
  if (mode == OUT_LINE && ((c->lines[0] = malloc(sizeof(linebuf))) == NULL ||
                           (c->lines[1] = malloc(sizeof(linebuf))) == NULL)) {
    capture_free(c);
    return mp_set_error(MP_ENOMEM, "out of memory");
  }
  *out = c;
  return 0;
}

void capture_free(capture *c) {
  if (c == NULL)
    return;
  sys_tmp_free(c->file[0]);
  sys_tmp_free(c->file[1]);
  free(c->lines[0]);
  free(c->lines[1]);
  free(c);
}

static int ensure_files(capture *c) {
  for (int i = 0; i < 2; i++) {
    int rc = c->file[i] ? 0 : sys_tmp_create(&c->file[i]);
    if (rc != 0)
      return rc;
  }
  return 0;
}

int capture_prepare(capture *c, mp_popen_opts *po) {
  mp_stdio *s[2] = {&po->std_out, &po->std_err};
  int rc = c->mode == OUT_GROUP ? ensure_files(c) : 0;
  for (int i = 0; rc == 0 && i < 2; i++) {
    memset(s[i], 0, sizeof *s[i]);
    if (c->mode == OUT_GROUP) {
      s[i]->mode = MP_STDIO_HANDLE;
      s[i]->handle = sys_tmp_handle(c->file[i]);
    } else {
      s[i]->mode = c->mode == OUT_LINE ? MP_STDIO_PIPE : MP_STDIO_INHERIT;
    }
  }
  return rc;
}

int capture_add(capture *c, output *o, int stream, const char *text) {
  if (c->mode == OUT_GROUP) {
    int rc = ensure_files(c);
    return rc != 0 ? rc : sys_tmp_append(c->file[stream - 1], text, strlen(text));
  }
  mp_lock_acquire(o->lock, MP_FOREVER);
  int rc = output_write_locked(o, stream, text, strlen(text));
  mp_lock_release(o->lock);
  return rc;
}

uint64_t capture_received(capture *c) {
  uint64_t size = 0;
  if (c->mode == OUT_GROUP && c->file[0] != NULL && sys_tmp_size(c->file[0], &size) != 0)
    size = 0;
  return c->mode == OUT_LINE ? c->received : size;
}

static int reset_files(capture *c) {
  for (int i = 0; i < 2; i++) {
    uint64_t size;
    if (c->file[i] == NULL)
      continue;
    int rc = sys_tmp_size(c->file[i], &size);
    if (rc == 0 && size > 0)
      rc = sys_tmp_reset(c->file[i]);
    if (rc != 0)
      return rc;
  }
  return 0;
}

int capture_recycle(capture *c, int linger) {
  if (c->mode != OUT_GROUP)
    return 0;
  if (!linger)
    return reset_files(c);
  /* Whatever the job left running may still write to these files: leave them to it. */
  for (int i = 0; i < 2; i++) {
    sys_tmp_free(c->file[i]);
    c->file[i] = NULL;
  }
  return 0;
}

/* ---- keeping jobs for their turn (--keep-order) -------------------------------------- */

static int ring_grow(output *o, uint64_t seq) {
  size_t cap = o->cap ? o->cap : 64;
  while (seq - o->next >= cap)
    cap *= 2;
  kept *nr = calloc(cap, sizeof *nr);
  if (nr == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory for output kept in order");
  for (size_t i = 0; i < o->cap; i++)
    if (o->ring[i].state != KEPT_NONE)
      nr[o->ring[i].seq % cap] = o->ring[i];
  free(o->ring);
  o->ring = nr;
  o->cap = cap;
  return 0;
}

static kept *slot_for(output *o, uint64_t seq) {
  if ((o->cap == 0 || seq - o->next >= o->cap) && ring_grow(o, seq) != 0)
    return NULL;
  return &o->ring[seq % o->cap];
}

static int spill_file(output *o, sys_tmp *src, uint64_t *off, uint64_t *len) {
  int rc = sys_tmp_size(src, len);
  *off = o->spill_len;
  if (rc == 0 && *len > 0 && o->spill == NULL)
    rc = sys_tmp_create(&o->spill);
  for (uint64_t done = 0; rc == 0 && done < *len;) {
    size_t got;
    rc = sys_tmp_read_at(src, done, o->in, CHUNK, &got);
    if (rc == 0 && got == 0)
      rc = mp_set_error(MP_EOS, "a temporary file got shorter");
    if (rc == 0)
      rc = sys_tmp_append(o->spill, o->in, got);
    done += got;
  }
  if (rc == 0)
    o->spill_len += *len;
  return rc;
}

/* Prints what is kept at the head of the order, as far as it goes; with all, past holes
 * too (at the end nothing else will come). */
static int drain(output *o, int all) {
  int printed = 0;
  while (o->count > 0 && o->err == 0) {
    kept *k = &o->ring[o->next % o->cap];
    if (k->state == KEPT_NONE && !all)
      break;
    if (k->state == KEPT_OUTPUT && k->len[0] + k->len[1] > 0) {
      printed = 1;
      bar_hide_locked(o->bar);
      emit_file(o, 1, o->spill, k->off[0], k->len[0], k->tag);
      emit_file(o, 2, o->spill, k->off[1], k->len[1], k->tag);
    }
    if (k->state != KEPT_NONE)
      o->count--;
    free(k->tag);
    memset(k, 0, sizeof *k);
    o->next++;
  }
  if (o->count == 0 && o->spill_len > 0 && o->err == 0) {
    o->err = sys_tmp_reset(o->spill); /* nothing waits: the spill file starts over */
    o->spill_len = 0;
  }
  if (printed)
    bar_draw_locked(o->bar, o->n, 1);
  return o->err;
}

static int keep(output *o, uint64_t seq, capture *c, const char *tag) {
  kept *k = slot_for(o, seq);
  if (k == NULL)
    return o->err = MP_ENOMEM;
  memset(k, 0, sizeof *k);
  k->seq = seq;
  k->state = c ? KEPT_OUTPUT : KEPT_SKIP;
  for (int i = 0; c && i < 2 && o->err == 0; i++)
    if ((o->err = spill_file(o, c->file[i], &k->off[i], &k->len[i])) != 0)
      return o->err;
  if (c && tag && (k->tag = malloc(strlen(tag) + 1)) != NULL)
    memcpy(k->tag, tag, strlen(tag) + 1);
  o->count++;
  return 0;
}

int output_job_locked(output *o, uint64_t seq, capture *c, const char *tag) {
  if (c->mode != OUT_GROUP || o->err != 0)
    return o->err;
  if (o->keep_order && seq != o->next)
    return keep(o, seq, c, tag);
  uint64_t size[2];
  for (int i = 0; i < 2; i++)
    if ((o->err = sys_tmp_size(c->file[i], &size[i])) != 0)
      return o->err;
  if (size[0] > 0 || size[1] > 0) {
    bar_hide_locked(o->bar);
    emit_file(o, 1, c->file[0], 0, size[0], tag);
    emit_file(o, 2, c->file[1], 0, size[1], tag);
    bar_draw_locked(o->bar, o->n, 1);
  }
  if (o->keep_order) {
    o->next++;
    return drain(o, 0);
  }
  return o->err;
}

int output_skip_locked(output *o, uint64_t seq) {
  if (!o->keep_order || o->err != 0)
    return o->err;
  if (seq != o->next)
    return keep(o, seq, NULL, NULL);
  o->next++;
  return drain(o, 0);
}

int output_flush_locked(output *o) { return o->keep_order ? drain(o, 1) : o->err; }

/* ---- --line-buffer ------------------------------------------------------------------- */

/* Prints the complete lines of b (all of it at the end, or when one line fills it). */
static void print_lines(capture *c, int which, int final) {
  linebuf *b = c->lines[which];
  size_t n = b->len;
  if (!final) {
    while (n > 0 && b->buf[n - 1] != '\n')
      n--;
    if (n == 0 && b->len == CHUNK)
      n = CHUNK; /* one line fills the buffer: print it in parts */
  }
  if (n == 0)
    return;
  output *o = c->o;
  mp_lock_acquire(o->lock, MP_FOREVER);
  bar_hide_locked(o->bar);
  emit(o, which + 1, b->buf, n, c->tag, &b->bol);
  flush_stage(o, which + 1);
  bar_draw_locked(o->bar, o->n, 1);
  mp_lock_release(o->lock);
  memmove(b->buf, b->buf + n, b->len - n);
  b->len -= n;
}

/* Reads one chunk of a stream into its line buffer: 0, MP_EEOF, MP_ETIMEDOUT or an error. */
static int read_lines(capture *c, int which, int timeout_ms) {
  linebuf *b = c->lines[which];
  size_t got;
  int rc = mp_popen_read(c->p, which == 0 ? MP_STDOUT : MP_STDERR, b->buf + b->len, CHUNK - b->len,
                         &got, timeout_ms);
  if (rc != 0)
    return rc;
  b->len += got;
  if (which == 0)
    c->received += got;
  print_lines(c, which, 0);
  return 0;
}

static void err_reader_main(void *arg) {
  capture *c = arg;
  while (read_lines(c, 1, MP_FOREVER) == 0) {
  }
  print_lines(c, 1, 1);
}

int capture_lines_start(capture *c, output *o, mp_popen *p, const char *tag) {
  c->o = o;
  c->p = p;
  c->tag = tag;
  c->received = 0;
  for (int i = 0; i < 2; i++) {
    c->lines[i]->len = 0;
    c->lines[i]->bol = 1;
  }
  /* mp_popen_read on stdout and on stderr from two threads at once: each stream has its
   * own pipe and state in the library. */
  return mp_thread_create(&c->err_reader, err_reader_main, c, "mprun-stderr");
}

int capture_lines_pump(capture *c, int timeout_ms) {
  uint64_t deadline = mp_monotonic_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000u;
  for (;;) {
    int left = MP_FOREVER;
    if (timeout_ms >= 0) {
      uint64_t now = mp_monotonic_ns();
      left = now >= deadline ? 0 : (int)((deadline - now + 999999u) / 1000000u);
    }
    int rc = read_lines(c, 0, left);
    if (rc == MP_ETIMEDOUT)
      return rc;
    if (rc != 0)
      break; /* end of the stream (or it broke): what was read is printed below */
  }
  print_lines(c, 0, 1);
  return 0;
}

void capture_lines_finish(capture *c) {
  if (c->err_reader != NULL) {
    mp_thread_join(c->err_reader, MP_FOREVER);
    mp_thread_free(c->err_reader);
    c->err_reader = NULL;
  }
}
