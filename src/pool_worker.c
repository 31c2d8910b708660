/* A pool worker: the target of each worker process. It reads messages from its own
 * connection, runs tasks in the order they came and answers each one before starting the
 * next, so that the master always knows which task a dead worker was running. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "connection.h"
#include "pool_wire.h"
#include "target.h"
#include "value.h"

typedef struct wfn {
  void (*fn)(void);
  char error[256]; /* why the reference could not be resolved; fn is then NULL */
} wfn;

typedef struct wstate {
  mp_conn *conn;
  mp__buf out;
  wfn *fns;
  size_t nfns;
  uint64_t maxtasks, done;
} wstate;

/* 1 and the next message, 0 when the master closed the connection, or an error. */
static int next_message(wstate *s, mp__reader *body) {
  const unsigned char *msg = NULL;
  size_t len = 0;
  int rc = mp__conn_recv_borrow(s->conn, &msg, &len, MP_FOREVER);
  if (rc == MP_EEOF)
    return 0;
  if (rc < 0)
    return rc;
  *body = (mp__reader){msg, len, 0};
  return 1;
}

static void clear_error(void) { mp_set_error(MP_OK, "%s", ""); }

/* Appends a failed item: the task's code and the message it set, or a default one. */
static int put_failure(mp__buf *b, int code, const char *fallback) {
  const char *msg = mp_last_error_code() != 0 && mp_last_error()[0] ? mp_last_error() : fallback;
  return mp__pw_put_failure(b, code, msg);
}

static int call_fn(void (*fn)(void), unsigned flags, const mp_value *in, mp_value **out) {
  if (!(flags & MP__PW_STAR))
    return ((mp_task_fn)fn)(in, out);
  size_t n = 0;
  mp_value_len(in, &n);
  mp_value **argv = malloc((n ? n : 1) * sizeof *argv);
  if (argv == NULL)
    return mp_set_error(MP_ENOMEM, "pool worker: out of memory for %llu arguments",
                        (unsigned long long)n);
  for (size_t i = 0; i < n; i++)
    mp_value_at(in, i, &argv[i]);
  int rc = ((mp_star_fn)fn)(argv, n, out);
  free(argv);
  return rc;
}

/* Appends the item of a task that ran: its output, or its failure. */
static int put_outcome(mp__buf *b, int rc, mp_value *out) {
  char fallback[96];
  if (rc != 0) {
    snprintf(fallback, sizeof fallback, "the task returned %d", rc);
    mp_value_free(out);
    return put_failure(b, MP_ETASK, fallback);
  }
  rc = mp__value_encode_append(out, b);
  mp_value_free(out);
  return rc < 0 ? put_failure(b, rc, "pool worker: the output could not be encoded") : 0;
}

/* Runs the input that starts r and appends its result item to out; fn NULL: the item
 * fails with MP_ECHILD and why. */
static int run_item(void (*fn)(void), const char *why, unsigned flags, mp__reader *r,
                    mp__value_arena *a, mp__buf *out) {
  mp_value *in = NULL, *res = NULL;
  size_t used = 0;
  int rc = mp__value_decode_in(a, r->p, r->left, &in, &used);
  if (rc < 0)
    return rc; /* the master sent something it could not have encoded: give up */
  mp__get_bytes(r, used);
  if (fn == NULL) {
    mp__value_free_in(a, in);
    return mp__pw_put_failure(out, MP_ECHILD, why);
  }
  if (mp_last_error_code() != 0)
    clear_error(); /* only when dirty: formatting a message per task costs */
  rc = call_fn(fn, flags, in, &res);
  mp__value_free_in(a, in);
  return put_outcome(out, rc, res);
}

int mp__pw_run_items(void (*fn)(void), const char *why, unsigned flags, uint32_t n, mp__reader *r,
                     mp__buf *out) {
  mp__value_arena a; /* the inputs of a chunk share one allocation */
  mp__value_arena_init(&a, n);
  int rc = 0;
  for (uint32_t i = 0; rc == 0 && i < n; i++)
    rc = run_item(fn, why, flags, r, &a, out);
  mp__value_arena_done(&a);
  return rc;
}

/* Starts the answer to a task of n items; send_answer ends and writes it. */
static int begin_answer(wstate *s, uint32_t n, size_t *at) {
  int rc = mp__conn_msg_begin(&s->out, at);
  rc = rc ? rc : mp__buf_put_u8(&s->out, MP__PW_RESULT);
  return rc ? rc : mp__buf_put_u32(&s->out, n);
}

static int send_answer(wstate *s, size_t at) {
  int rc = mp__conn_msg_end(&s->out, at);
  s->done++;
  return rc ? rc : mp__conn_send_batch(s->conn, &s->out);
}

static const wfn *function(wstate *s, uint32_t fnid) {
  return fnid < s->nfns ? &s->fns[fnid] : NULL;
}

static int on_task(wstate *s, mp__reader *r) {
  uint32_t fnid = 0, n = 0;
  unsigned flags = 0;
  int rc = mp__pw_read_task_head(r, &fnid, &flags, &n);
  const wfn *f = function(s, fnid);
  if (rc < 0 || f == NULL)
    return rc < 0 ? rc : mp_set_error(MP_EPROTO, "pool worker: no function %u", (unsigned)fnid);
  size_t at;
  rc = begin_answer(s, n, &at);
  rc = rc ? rc : mp__pw_run_items(f->fn, f->error, flags, n, r, &s->out);
  return rc < 0 ? rc : send_answer(s, at);
}

/* An argument task: its handles came along; the argument list takes them. */
static int on_args_task(wstate *s, mp__reader *r) {
  uint32_t fnid = 0;
  size_t nh = 0;
  uint64_t theirs[256];
  mp_plat_handle handles[256];
  int rc = mp__pw_read_args_head(r, &fnid, &nh, theirs);
  const wfn *f = function(s, fnid);
  if (rc == 0 && f == NULL)
    rc = mp_set_error(MP_EPROTO, "pool worker: no function %u", (unsigned)fnid);
  rc = rc ? rc : mp__conn_take_handles(s->conn, theirs, nh, handles);
  if (rc < 0)
    return rc;
  mp_args *args = NULL;
  size_t at;
  int code = mp__args_decode((const char *)r->p, r->left, handles, nh, &args);
  rc = begin_answer(s, 1, &at);
  if (rc == 0 && code < 0)
    rc = put_failure(&s->out, code, "pool worker: the arguments could not be decoded");
  else if (rc == 0 && f->fn == NULL)
    rc = mp__pw_put_failure(&s->out, MP_ECHILD, f->error);
  else if (rc == 0) {
    mp_value *out = NULL;
    clear_error();
    code = ((mp_args_task_fn)f->fn)(args, &out);
    rc = put_outcome(&s->out, code, out);
  }
  mp_args_free(args); /* releases the objects imported for this task */
  return rc < 0 ? rc : send_answer(s, at);
}

static int on_def(wstate *s, mp__reader *r) {
  uint32_t fnid = mp__get_u32(r);
  if (r->bad || fnid != s->nfns)
    return mp_set_error(MP_EPROTO, "pool worker: functions out of order");
  wfn *fns = realloc(s->fns, (s->nfns + 1) * sizeof *fns);
  if (fns == NULL)
    return mp_set_error(MP_ENOMEM, "pool worker: out of memory");
  s->fns = fns;
  wfn *f = &fns[s->nfns];
  memset(f, 0, sizeof *f);
  int rc = mp__fnref_decode(r, &f->fn);
  if (rc == MP_EPROTO)
    return rc;
  if (rc < 0) {
    f->fn = NULL; /* every task of this function fails with the reason */
    snprintf(f->error, sizeof f->error, "%s", mp_last_error());
  }
  s->nfns++;
  return 0;
}

/* Runs the initializer of the init message: 0, or why the worker cannot start. */
static int initialise(wstate *s, mp__reader *r) {
  void (*init)(void) = NULL;
  int has_init = (int)mp__get_u8(r);
  int rc = has_init ? mp__fnref_decode(r, &init) : 0;
  s->maxtasks = mp__get_u64(r);
  mp_value *initargs = NULL;
  size_t used = 0;
  if (rc == 0)
    rc = r->bad ? mp_set_error(MP_EPROTO, "pool worker: malformed init message")
                : mp__value_decode_prefix(r->p, r->left, &initargs, &used);
  if (rc == 0 && init) {
    clear_error();
    int code = ((mp_pool_init_fn)init)(initargs);
    if (code != 0)
      rc = mp_last_error_code() != 0 && mp_last_error()[0]
               ? MP_ECHILD
               : mp_set_error(MP_ECHILD, "the pool's initializer returned %d", code);
  }
  mp_value_free(initargs);
  return rc;
}

/* Reads the init message, runs the initializer and says hello (or why it failed). */
static int start_up(wstate *s) {
  mp__reader r;
  int rc = next_message(s, &r);
  if (rc <= 0 || mp__get_u8(&r) != MP__PW_INIT)
    return rc < 0 ? rc : mp_set_error(MP_EPROTO, "pool worker: no init message");
  rc = initialise(s, &r);
  size_t at;
  int wrc = mp__conn_msg_begin(&s->out, &at);
  if (rc == 0) {
    wrc = wrc ? wrc : mp__buf_put_u8(&s->out, MP__PW_HELLO);
    wrc = wrc ? wrc : mp__buf_put_u64(&s->out, (uint64_t)mp_getpid());
  } else {
    wrc = wrc ? wrc : mp__buf_put_u8(&s->out, MP__PW_INITFAIL);
    wrc = wrc ? wrc : mp__buf_put(&s->out, mp_last_error(), strlen(mp_last_error()));
  }
  wrc = wrc ? wrc : mp__conn_msg_end(&s->out, at);
  wrc = wrc ? wrc : mp__conn_send_batch(s->conn, &s->out);
  return rc < 0 ? rc : wrc;
}

static int serve(wstate *s) {
  for (;;) {
    if (s->maxtasks && s->done >= s->maxtasks)
      return 0; /* maxtasksperchild: the master starts a fresh worker */
    mp__reader r;
    int rc = next_message(s, &r);
    if (rc <= 0)
      return rc;
    unsigned kind = mp__get_u8(&r);
    if (kind == MP__PW_TASK)
      rc = on_task(s, &r);
    else if (kind == MP__PW_ARGS_TASK)
      rc = on_args_task(s, &r);
    else if (kind == MP__PW_DEF)
      rc = on_def(s, &r);
    else if (kind == MP__PW_STOP)
      return 0;
    else
      rc = mp_set_error(MP_EPROTO, "pool worker: unknown message kind %u", kind);
    if (rc < 0)
      return rc;
  }
}

int mp__pool_worker_main(mp_args *args) {
  mp_conn *conn = NULL;
  if (mp_args_get_conn(args, 0, &conn) < 0 || mp__conn_accept_handles(conn) < 0)
    return 2;
  /* Static: a task that calls exit() leaves the buffers reachable for leak checkers. */
  static wstate s;
  memset(&s, 0, sizeof s);
  s.conn = conn;
  int rc = start_up(&s);
  if (rc == 0)
    rc = serve(&s);
  mp__buf_free(&s.out);
  free(s.fns);
  return rc == 0 ? 0 : 3;
}
