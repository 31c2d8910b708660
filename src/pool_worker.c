/* A pool worker: the target of each worker process. It reads frames from its own
 * connection, runs tasks in the order they came and answers each one before starting the
 * next, so that the master always knows which task a dead worker was running. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connection.h"
#include "pool_wire.h"

typedef struct wfn {
  void (*fn)(void);
  char error[256]; /* why the reference could not be resolved; fn is then NULL */
} wfn;

typedef struct wstate {
  mp_plat_chan *ch;
  pw_rx rx;
  pw_buf out;
  wfn *fns;
  size_t nfns;
  uint64_t maxtasks, done;
} wstate;

static int send_out(wstate *s) {
  mp_plat_buf b = {s->out.data, s->out.len};
  int rc = mp_plat_chan_write(s->ch, &b, 1);
  s->out.len = 0;
  return rc;
}

/* 1 and the next frame, 0 when the master closed the connection, or an error. */
static int next_frame(wstate *s, pw_reader *body) {
  for (;;) {
    int rc = pw_rx_frame(&s->rx, body);
    if (rc != 0)
      return rc;
    rc = pw_rx_fill(&s->rx, s->ch, MP_FOREVER);
    if (rc == MP_EEOF)
      return 0;
    if (rc < 0)
      return rc;
  }
}

static void clear_error(void) { mp_set_error(MP_OK, "%s", ""); }

/* Appends a failed item: the task's code and the message it set, or a default one. */
static int put_failure(pw_buf *b, int code, const char *fallback) {
  const char *msg = mp_last_error_code() != 0 && mp_last_error()[0] ? mp_last_error() : fallback;
  size_t n = strlen(msg);
  int rc = pw_put_u8(b, PW_FAIL);
  rc = rc ? rc : pw_put_u32(b, (uint32_t)(4 + n));
  rc = rc ? rc : pw_put_u32(b, (uint32_t)code);
  return rc ? rc : pw_put(b, msg, n);
}

static int call_fn(void (*fn)(void), unsigned flags, const mp_value *in, mp_value **out) {
  if (!(flags & PW_STAR))
    return ((mp_task_fn)fn)(in, out);
  size_t n = 0;
  mp_value_len(in, &n);
  mp_value **argv = calloc(n ? n : 1, sizeof *argv);
  if (argv == NULL)
    return mp_set_error(MP_ENOMEM, "pool worker: out of memory for %llu arguments",
                        (unsigned long long)n);
  for (size_t i = 0; i < n; i++)
    mp_value_at(in, i, &argv[i]);
  int rc = ((mp_star_fn)fn)(argv, n, out);
  free(argv);
  return rc;
}

/* Runs one input and appends its result item. */
static int run_item(wstate *s, const wfn *f, unsigned flags, const unsigned char *p, size_t len) {
  char fallback[96];
  mp_value *in = NULL, *out = NULL;
  int rc = f->fn ? pw_decode_value(p, len, &in) : mp_set_error(MP_ECHILD, "%s", f->error);
  if (rc < 0)
    return put_failure(&s->out, rc, "pool worker: undecodable input");
  if (mp_last_error_code() != 0)
    clear_error(); /* only when dirty: formatting a message per task costs */
  rc = call_fn(f->fn, flags, in, &out);
  mp_value_free(in);
  if (rc != 0) {
    snprintf(fallback, sizeof fallback, "the task returned %d", rc);
    mp_value_free(out);
    return put_failure(&s->out, MP_ETASK, fallback);
  }
  rc = pw_put_u8(&s->out, PW_OK);
  rc = rc ? rc : pw_put_value(&s->out, out);
  mp_value_free(out);
  return rc;
}

static int on_task(wstate *s, pw_reader *r) {
  uint32_t fnid = pw_get_u32(r);
  unsigned flags = pw_get_u8(r);
  uint32_t n = pw_get_u32(r);
  if (r->bad || fnid >= s->nfns)
    return mp_set_error(MP_EPROTO, "pool worker: malformed task");
  size_t at;
  int rc = pw_frame_begin(&s->out, &at);
  rc = rc ? rc : pw_put_u8(&s->out, PW_RESULT);
  rc = rc ? rc : pw_put_u32(&s->out, n);
  for (uint32_t i = 0; rc == 0 && i < n; i++) {
    size_t len = pw_get_u32(r);
    const unsigned char *p = pw_get_bytes(r, len);
    if (r->bad)
      return mp_set_error(MP_EPROTO, "pool worker: truncated task");
    rc = run_item(s, &s->fns[fnid], flags, p, len);
  }
  if (rc < 0)
    return rc;
  pw_frame_end(&s->out, at);
  s->done++;
  return send_out(s);
}

static int on_def(wstate *s, pw_reader *r) {
  uint32_t fnid = pw_get_u32(r);
  mp_plat_target t;
  int rc = pw_get_target(r, &t);
  if (rc < 0 || fnid != s->nfns)
    return rc < 0 ? rc : mp_set_error(MP_EPROTO, "pool worker: functions out of order");
  wfn *fns = realloc(s->fns, (s->nfns + 1) * sizeof *fns);
  if (fns == NULL)
    return mp_set_error(MP_ENOMEM, "pool worker: out of memory");
  s->fns = fns;
  wfn *f = &fns[s->nfns++];
  memset(f, 0, sizeof *f);
  if (mp_plat_target_resolve(&t, &f->fn) < 0) {
    f->fn = NULL; /* every task of this function fails with the reason */
    snprintf(f->error, sizeof f->error, "%s", mp_last_error());
  }
  return 0;
}

/* Reads the init frame, runs the initializer and says hello (or why it failed). */
static int start_up(wstate *s) {
  pw_reader r;
  int rc = next_frame(s, &r);
  if (rc <= 0 || pw_get_u8(&r) != PW_INIT)
    return rc < 0 ? rc : mp_set_error(MP_EPROTO, "pool worker: no init frame");
  int has_init = (int)pw_get_u8(&r);
  mp_plat_target t;
  rc = has_init ? pw_get_target(&r, &t) : 0;
  s->maxtasks = pw_get_u64(&r);
  size_t len = pw_get_u32(&r);
  const unsigned char *p = pw_get_bytes(&r, len);
  mp_value *initargs = NULL;
  if (rc == 0)
    rc = r.bad ? mp_set_error(MP_EPROTO, "pool worker: malformed init frame")
               : pw_decode_value(p, len, &initargs);
  void (*init)(void) = NULL;
  if (rc == 0 && has_init)
    rc = mp_plat_target_resolve(&t, &init);
  if (rc == 0 && init) {
    clear_error();
    int code = ((mp_pool_init_fn)init)(initargs);
    if (code != 0)
      rc = mp_last_error_code() != 0 && mp_last_error()[0]
               ? MP_ECHILD
               : mp_set_error(MP_ECHILD, "the pool's initializer returned %d", code);
  }
  mp_value_free(initargs);
  size_t at;
  int wrc = pw_frame_begin(&s->out, &at);
  if (rc == 0) {
    wrc = wrc ? wrc : pw_put_u8(&s->out, PW_HELLO);
    wrc = wrc ? wrc : pw_put_u64(&s->out, (uint64_t)mp_getpid());
  } else {
    wrc = wrc ? wrc : pw_put_u8(&s->out, PW_INITFAIL);
    wrc = wrc ? wrc : pw_put(&s->out, mp_last_error(), strlen(mp_last_error()));
  }
  if (wrc == 0) {
    pw_frame_end(&s->out, at);
    wrc = send_out(s);
  }
  return rc < 0 ? rc : wrc;
}

static int serve(wstate *s) {
  for (;;) {
    if (s->maxtasks && s->done >= s->maxtasks)
      return 0; /* maxtasksperchild: the master starts a fresh worker */
    pw_reader r;
    int rc = next_frame(s, &r);
    if (rc <= 0)
      return rc;
    unsigned kind = pw_get_u8(&r);
    if (kind == PW_TASK)
      rc = on_task(s, &r);
    else if (kind == PW_DEF)
      rc = on_def(s, &r);
    else if (kind == PW_STOP)
      return 0;
    else
      rc = mp_set_error(MP_EPROTO, "pool worker: unknown frame kind %u", kind);
    if (rc < 0)
      return rc;
  }
}

int mp__pool_worker_main(mp_args *args) {
  mp_conn *conn = NULL;
  if (mp_args_get_conn(args, 0, &conn) < 0 || mp__conn_chan(conn) == NULL)
    return 2;
  /* Static: a task that calls exit() leaves the buffers reachable for leak checkers. */
  static wstate s;
  memset(&s, 0, sizeof s);
  s.ch = mp__conn_chan(conn);
  int rc = start_up(&s);
  if (rc == 0)
    rc = serve(&s);
  pw_rx_free(&s.rx);
  pw_buf_free(&s.out);
  free(s.fns);
  return rc == 0 ? 0 : 3;
}
