/* Subprocesses: external commands with pipes, timeouts, environment edits and tree kills,
 * in the manner of Python's subprocess. A thin layer over the child engine (child.c and the
 * backend's child.c) and the backend's pipes (stdio.c): this file checks the caller's
 * options, opens the child's streams, builds its environment and implements run/call. */
#include <stdlib.h>
#include <string.h>

#include "child.h"
#include "compat.h"
#include "deadline.h"
#include "platform.h"

struct mp_popen {
  mp_plat_child c;
  mp_plat_handle pipes[3]; /* parent's ends: stdin (write), stdout, stderr (read) */
  int had_pipe[3];         /* which streams were MP_STDIO_PIPE, to tell "closed" from "never" */
  int default_timeout;     /* MP_FOREVER when the options gave none */
  size_t in_off;           /* communicate's progress through the input, kept across timeouts */
  mp_plat_outbuf out, err; /* output read but not yet handed over (by read or communicate) */
  size_t head[3];          /* how much of out/err mp_popen_read has already handed over */
};

int mp__ms_until(int64_t deadline_ns) {
  int64_t left = deadline_ns - (int64_t)mp_plat_monotonic_ns();
  return deadline_ns < 0 ? -1 : left <= 0 ? 0 : (int)((left + 999999) / 1000000);
}

char *mp__outbuf_reserve(mp_plat_outbuf *b, size_t extra) {
  if (b->cap - b->len < extra + 1) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < extra + 1)
      cap *= 2;
    char *nd = realloc(b->data, cap);
    if (nd == NULL)
      return NULL;
    b->data = nd;
    b->cap = cap;
  }
  return b->data + b->len;
}

/* Gives the buffer's bytes to the caller (NUL-terminated, never NULL; out NULL: drops them)
 * and empties it. Returns rc, or MP_ENOMEM. */
static int buf_take(mp_plat_outbuf *b, char **out, size_t *out_len, int rc) {
  if (mp__outbuf_reserve(b, 0) == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory for captured output");
  b->data[b->len] = '\0';
  if (out != NULL) {
    *out = b->data;
    if (out_len)
      *out_len = b->len;
  } else {
    free(b->data);
  }
  b->data = NULL;
  b->len = b->cap = 0;
  return rc;
}

/* ---- checking the options ------------------------------------------------------------ */

static int check_stdio(const mp_stdio *s, int index) {
  static const char *const names[] = {"stdin", "stdout", "stderr"};
  switch (s->mode) {
  case MP_STDIO_INHERIT:
  case MP_STDIO_PIPE:
  case MP_STDIO_DEVNULL: return 0;
  case MP_STDIO_FILE:
    if (s->path == NULL || s->path[0] == '\0')
      return mp_set_error(MP_EINVAL, "%s: MP_STDIO_FILE needs a path", names[index]);
    return 0;
  case MP_STDIO_HANDLE:
    if (s->handle == (intptr_t)MP_PLAT_INVALID)
      return mp_set_error(MP_EINVAL, "%s: MP_STDIO_HANDLE needs an open handle", names[index]);
    return 0;
  case MP_STDIO_STDOUT:
    if (index != 2)
      return mp_set_error(MP_EINVAL, "%s: MP_STDIO_STDOUT is only for stderr", names[index]);
    return 0;
  }
  return mp_set_error(MP_EINVAL, "%s: unknown mode %d", names[index], (int)s->mode);
}

/* ---- the child's environment --------------------------------------------------------- */

static int ascii_lower(int ch) { return ch >= 'A' && ch <= 'Z' ? ch + 32 : ch; }

/* Whether entry, "NAME=value", is named name (a leading '=' belongs to the name: "=C:=C:\\"). */
static int env_named(const char *entry, const char *name, size_t len, int icase) {
  const char *eq = strchr(entry + (entry[0] == '='), '=');
  if ((eq ? (size_t)(eq - entry) : strlen(entry)) != len)
    return 0;
  for (size_t i = 0; i < len; i++) {
    int x = (unsigned char)entry[i], y = (unsigned char)name[i];
    if (icase ? ascii_lower(x) != ascii_lower(y) : x != y)
      return 0;
  }
  return 1;
}

/* Builds the child's environment: the parent's with opts->env applied, or opts->env alone.
 * It borrows its strings from *parent (the parent's, to free after) and opts->env. */
static int env_build(const mp_popen_opts *o, char ***parent, char ***out) {
  size_t nedits = 0, n = 0;
  int icase = mp_plat_env_icase(), rc;
  while (o->env[nedits])
    nedits++;
  if (!o->env_replace && (rc = mp_plat_environ(parent)) != 0)
    return rc;
  while (*parent && (*parent)[n])
    n++;
  char **env = malloc((n + nedits + 1) * sizeof *env);
  if (env == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory for the environment");
  if (n > 0)
    memcpy(env, *parent, n * sizeof *env);
  for (size_t i = 0; i < nedits; i++) {
    const char *e = o->env[i];
    size_t name_len = strcspn(e, "="); /* a caller's name never starts with '=' */
    if (name_len == 0 || (o->env_replace && e[name_len] != '=')) {
      free(env);
      return mp_set_error(MP_EINVAL, "environment entry \"%s\" is not NAME=value%s", e,
                          o->env_replace ? "" : " or NAME");
    }
    size_t kept = 0; /* every entry of that name goes; NAME=value adds one back */
    for (size_t r = 0; r < n; r++)
      if (!env_named(env[r], e, name_len, icase))
        env[kept++] = env[r];
    n = kept;
    if (e[name_len] == '=')
      env[n++] = (char *)e;
  }
  env[n] = NULL;
  *out = env;
  return 0;
}

static const char *env_lookup(char **env, const char *name, int icase) {
  size_t len = strlen(name);
  for (size_t i = 0; env && env[i]; i++)
    if (env_named(env[i], name, len, icase) && env[i][len] == '=')
      return env[i] + len + 1;
  return NULL;
}

/* ---- create -------------------------------------------------------------------------- */

static const mp_popen_opts zero_opts;

/* What a shell child is called in messages: it has no argv of its own. */
static const char *const shell_argv[] = {"(shell)", NULL};

/* The child's three streams: what it gets (child[i]; INVALID: the parent's own), the
 * parent's pipe ends, and which child ends were opened here (closed after the spawn). */
typedef struct streams {
  mp_plat_handle child[3], parent[3];
  int owned[3];
} streams;

static void streams_close(streams *st, int parents_too) {
  for (int i = 0; i < 3; i++) {
    if (st->owned[i])
      mp_plat_handle_close(st->child[i]);
    if (parents_too)
      mp_plat_pipe_close(st->parent[i]);
  }
}

static int streams_open(const mp_stdio *const stdio[3], streams *st) {
  int rc = 0;
  for (int i = 0; i < 3; i++)
    st->child[i] = st->parent[i] = MP_PLAT_INVALID, st->owned[i] = 0;
  for (int i = 0; i < 3 && rc == 0; i++) {
    switch (stdio[i]->mode) {
    case MP_STDIO_INHERIT: break;
    case MP_STDIO_HANDLE:
      st->child[i] = (mp_plat_handle)stdio[i]->handle;
      rc = mp_plat_stdio_check(st->child[i], i);
      break;
    case MP_STDIO_STDOUT: /* merged: wherever stdout goes, the parent's stdout included */
      st->child[2] = st->child[1] != MP_PLAT_INVALID ? st->child[1] : mp_plat_stdio_parent(1);
      break;
    case MP_STDIO_PIPE:
      rc = mp_plat_stdio_pipe(i, &st->child[i], &st->parent[i]);
      st->owned[i] = rc == 0;
      break;
    default: /* MP_STDIO_DEVNULL, MP_STDIO_FILE */
      rc = mp_plat_stdio_file(stdio[i]->mode == MP_STDIO_FILE ? stdio[i]->path : NULL, i,
                              stdio[i]->append, &st->child[i]);
      st->owned[i] = rc == 0;
    }
  }
  if (rc != 0)
    streams_close(st, 1);
  return rc;
}

static int popen_start(mp_popen **pp, const char *const *argv, const char *shell_cmd,
                       const mp_popen_opts *opts) {
  int rc;
  if (pp == NULL)
    return mp_set_error(MP_EINVAL, "mp_popen_create: p is NULL");
  *pp = NULL;
  if (argv == NULL || argv[0] == NULL || argv[0][0] == '\0')
    return mp_set_error(MP_EINVAL, "argv must name a program (argv[0] non-empty, NULL-terminated)");
  if (argv == shell_argv && shell_cmd == NULL)
    return mp_set_error(MP_EINVAL, "mp_popen_create_shell: cmdline is NULL");
  const mp_popen_opts *o = opts ? opts : &zero_opts;
  const mp_stdio *stdio[3] = {&o->std_in, &o->std_out, &o->std_err};
  for (int i = 0; i < 3; i++)
    if ((rc = check_stdio(stdio[i], i)) != 0)
      return rc;
  if (o->timeout_ms < 0 && o->timeout_ms != MP_NO_LIMIT && o->timeout_ms != MP_DEFAULT_TIMEOUT)
    return mp_set_error(MP_EINVAL, "timeout_ms must be positive, 0 or MP_NO_LIMIT (none), not %d",
                        o->timeout_ms);
  if (o->search_path < MP_NO_SEARCH_PATH || o->search_path > 1)
    return mp_set_error(MP_EINVAL, "search_path must be 0, 1 or MP_NO_SEARCH_PATH, not %d",
                        o->search_path);
  mp_popen *p = calloc(1, sizeof *p);
  char **env = NULL, **parent_env = NULL, *prog = NULL;
  streams st;
  if (p == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory for a popen object");
  rc = o->env != NULL ? env_build(o, &parent_env, &env) : 0;
  /* The child's PATH decides where its program is found, as with Python and Rust. */
  if (rc == 0 && shell_cmd == NULL)
    rc = mp_plat_find_program(argv[0], env ? env_lookup(env, "PATH", mp_plat_env_icase()) : NULL,
                              o->search_path != MP_NO_SEARCH_PATH, &prog);
  if (rc == 0)
    rc = streams_open(stdio, &st);
  if (rc == 0) {
    mp_plat_child_spec spec = {.program = prog,
                               .argv = argv,
                               .shell_cmd = shell_cmd,
                               .envp = env,
                               .cwd = o->cwd,
                               .bootstrap = MP_PLAT_INVALID,
                               .flags = (o->new_process_group ? MP_CHILD_NEW_GROUP : 0) |
                                        (o->detached ? MP_CHILD_DETACHED : MP_CHILD_OWN_JOB)};
    memcpy(spec.stdio, st.child, sizeof st.child);
    rc = mp__child_spawn(&spec, &p->c);
    streams_close(&st, rc != 0);
  }
  free(env);
  free(parent_env);
  free(prog);
  if (rc != 0) {
    free(p);
    return rc;
  }
  memcpy(p->pipes, st.parent, sizeof st.parent);
  for (int i = 0; i < 3; i++)
    p->had_pipe[i] = stdio[i]->mode == MP_STDIO_PIPE;
  p->default_timeout = o->timeout_ms > 0 ? o->timeout_ms : MP_FOREVER;
  *pp = p;
  return 0;
}

int mp_popen_create(mp_popen **p, const char *const *argv, const mp_popen_opts *opts) {
  return popen_start(p, argv, NULL, opts);
}

int mp_popen_create_shell(mp_popen **p, const char *cmdline, const mp_popen_opts *opts) {
  return popen_start(p, shell_argv, cmdline, opts);
}

/* ---- I/O ----------------------------------------------------------------------------- */

/* Checks a call's timeout_ms and resolves it (MP_DEFAULT_TIMEOUT: the popen's own) into *t
 * and a deadline. 0 or MP_EINVAL. */
static int call_timeout(const mp_popen *p, int timeout_ms, int *t, int64_t *deadline) {
  *t = timeout_ms == MP_DEFAULT_TIMEOUT ? p->default_timeout : timeout_ms;
  *deadline = -1;
  if (timeout_ms < MP_DEFAULT_TIMEOUT)
    return mp_set_error(MP_EINVAL, "timeout_ms %d: use >= 0, MP_FOREVER or MP_DEFAULT_TIMEOUT",
                        timeout_ms);
  return mp__deadline_ns(*t, deadline);
}

/* Moves bytes on one of p's pipes only (a write or a read), as flags say. It touches no other
 * stream's pipe or buffer: stdout and stderr may be read from two threads (mprun does). */
static int pump_one(mp_popen *p, int which, const void *in, size_t len, size_t *off,
                    int64_t deadline, int flags) {
  mp_plat_handle one[3] = {MP_PLAT_INVALID, MP_PLAT_INVALID, MP_PLAT_INVALID};
  one[which] = p->pipes[which];
  int rc = mp_plat_pipe_pump(one, in, len, off, &p->out, &p->err, deadline, flags);
  p->pipes[which] = one[which];
  return rc;
}

int mp_popen_write(mp_popen *p, const void *buf, size_t len, size_t *written, int timeout_ms) {
  size_t dummy;
  int rc, t;
  int64_t deadline;
  if (written == NULL)
    written = &dummy;
  *written = 0;
  if (p == NULL || (buf == NULL && len > 0))
    return mp_set_error(MP_EINVAL, "mp_popen_write: p or buf is NULL");
  if ((rc = call_timeout(p, timeout_ms, &t, &deadline)) != 0)
    return rc;
  if (p->pipes[0] == MP_PLAT_INVALID)
    return mp_set_error(p->had_pipe[0] ? MP_ECLOSED : MP_EINVAL,
                        p->had_pipe[0] ? "the child's stdin is already closed"
                                       : "the child's stdin is not a pipe (MP_STDIO_PIPE)");
  rc = pump_one(p, 0, buf, len, written, deadline, MP_PUMP_KEEP_STDIN);
  if (rc == MP_EBROKEN)
    return mp_set_error(rc, "the child closed its stdin");
  return rc == MP_ETIMEDOUT ? mp_set_error(rc, "the child did not read its stdin in time") : rc;
}

/* Reads through the output buffer: one pump takes what the pipe has, the caller gets up to
 * cap of it, and the rest waits for the next read or communicate. */
int mp_popen_read(mp_popen *p, int which, void *buf, size_t cap, size_t *n, int timeout_ms) {
  int rc, t;
  int64_t deadline;
  if (n)
    *n = 0;
  if (p == NULL || buf == NULL || n == NULL || cap == 0)
    return mp_set_error(MP_EINVAL, "mp_popen_read: p, buf or n is NULL, or cap is 0");
  if (which != MP_STDOUT && which != MP_STDERR)
    return mp_set_error(MP_EINVAL, "mp_popen_read: which must be MP_STDOUT or MP_STDERR");
  if ((rc = call_timeout(p, timeout_ms, &t, &deadline)) != 0)
    return rc;
  const char *name = which == MP_STDOUT ? "stdout" : "stderr";
  if (!p->had_pipe[which])
    return mp_set_error(MP_EINVAL, "the child's %s is not a pipe (MP_STDIO_PIPE)", name);
  mp_plat_outbuf *b = which == MP_STDOUT ? &p->out : &p->err;
  size_t none = 0, *head = &p->head[which];
  /* A wake-up can move nothing (a zero-byte pipe message on Windows): pump again. */
  while (rc == 0 && b->len == *head && p->pipes[which] != MP_PLAT_INVALID)
    rc = pump_one(p, which, NULL, 0, &none, deadline, MP_PUMP_FIRST);
  if (b->len == *head && rc == MP_ETIMEDOUT)
    return mp_set_error(rc, "no output from the child in time");
  if (b->len == *head)
    return rc != 0 ? rc : mp_set_error(MP_EEOF, "the child's %s has ended", name);
  /* Handed over from a moving head, not by moving the rest down: small reads of a big chunk
   * stay linear. An emptied buffer starts again at its beginning. */
  *n = b->len - *head < cap ? b->len - *head : cap;
  memcpy(buf, b->data + *head, *n);
  *head += *n;
  if (*head == b->len)
    b->len = *head = 0;
  return 0;
}

int mp_popen_close_stdin(mp_popen *p) {
  if (p == NULL)
    return mp_set_error(MP_EINVAL, "mp_popen_close_stdin: p is NULL");
  if (!p->had_pipe[0])
    return mp_set_error(MP_EINVAL, "the child's stdin is not a pipe (MP_STDIO_PIPE)");
  mp_plat_pipe_close(p->pipes[0]);
  p->pipes[0] = MP_PLAT_INVALID;
  return 0;
}

/* communicate's work, leaving the output in p's buffers: feeds stdin, reads stdout and stderr
 * to the end, then waits for the child. */
static int talk(mp_popen *p, const void *in, size_t in_len, int64_t deadline) {
  if (p->in_off > in_len)
    p->in_off = in_len;
  int rc = mp_plat_pipe_pump(p->pipes, in, in_len, &p->in_off, &p->out, &p->err, deadline, 0);
  if (rc == 0)
    rc = mp_plat_child_wait(&p->c, mp__ms_until(deadline));
  if (rc == 0)
    p->in_off = 0;
  return rc;
}

int mp_popen_communicate(mp_popen *p, const void *in, size_t in_len, char **out, size_t *out_len,
                         char **err, size_t *err_len, int timeout_ms) {
  int rc, t;
  int64_t deadline;
  if (out)
    *out = NULL;
  if (err)
    *err = NULL;
  if (out_len)
    *out_len = 0;
  if (err_len)
    *err_len = 0;
  if (p == NULL || (in == NULL && in_len > 0))
    return mp_set_error(MP_EINVAL, "mp_popen_communicate: p or in is NULL");
  if ((rc = call_timeout(p, timeout_ms, &t, &deadline)) != 0)
    return rc;
  if (in_len > 0 && !p->had_pipe[0])
    return mp_set_error(MP_EINVAL, "input given but the child's stdin is not a pipe");
  for (int i = 1; i < 3; i++) { /* what mp_popen_read handed over is not output any more */
    mp_plat_outbuf *b = i == MP_STDOUT ? &p->out : &p->err;
    if (p->head[i] == 0)
      continue;
    b->len -= p->head[i];
    memmove(b->data, b->data + p->head[i], b->len);
    p->head[i] = 0;
  }
  rc = talk(p, in, in_len, deadline);
  if (rc == 0 || rc == MP_ETIMEDOUT)
    rc = buf_take(&p->err, err, err_len, buf_take(&p->out, out, out_len, rc));
  if (rc == MP_ETIMEDOUT)
    mp_set_error(rc, "communicate: the child did not finish within %d ms", t);
  return rc;
}

/* ---- waiting and signals ------------------------------------------------------------- */

int mp_popen_wait(mp_popen *p, int timeout_ms) {
  int rc, t;
  int64_t deadline;
  if (p == NULL)
    return mp_set_error(MP_EINVAL, "mp_popen_wait: p is NULL");
  if ((rc = call_timeout(p, timeout_ms, &t, &deadline)) != 0)
    return rc;
  if (p->c.reaped)
    return 0;
  rc = mp_plat_child_wait(&p->c, t);
  if (rc == MP_ETIMEDOUT)
    mp_set_error(rc, "process %lld is still running", (long long)p->c.pid);
  return rc;
}

int mp_popen_poll(mp_popen *p) {
  if (p == NULL)
    return mp_set_error(MP_EINVAL, "mp_popen_poll: p is NULL");
  if (p->c.reaped)
    return 1;
  int rc = mp_plat_child_wait(&p->c, 0);
  return rc == 0 ? 1 : rc == MP_ETIMEDOUT ? 0 : rc;
}

int mp_popen_returncode(mp_popen *p, int *code) {
  if (p == NULL || code == NULL)
    return mp_set_error(MP_EINVAL, "mp_popen_returncode: p or code is NULL");
  if (!p->c.reaped && mp_popen_poll(p) != 1)
    return mp_set_error(MP_ESTATE, "process %lld has not exited", (long long)p->c.pid);
  *code = p->c.status;
  return 0;
}

int64_t mp_popen_pid(const mp_popen *p) { return p ? p->c.pid : 0; }

static int popen_signal(mp_popen *p, int sig, int tree, const char *fn) {
  if (p == NULL)
    return mp_set_error(MP_EINVAL, "%s: p is NULL", fn);
  return mp_plat_child_signal(&p->c, sig, tree);
}

int mp_popen_terminate(mp_popen *p) {
  return popen_signal(p, MP_SIG_TERM, 0, "mp_popen_terminate");
}
int mp_popen_kill(mp_popen *p) { return popen_signal(p, MP_SIG_KILL, 0, "mp_popen_kill"); }
int mp_popen_kill_tree(mp_popen *p) {
  return popen_signal(p, MP_SIG_KILL, 1, "mp_popen_kill_tree");
}

void mp_popen_free(mp_popen *p) {
  if (p == NULL)
    return;
  for (int i = 0; i < 3; i++)
    mp_plat_pipe_close(p->pipes[i]);
  mp__child_abandon(&p->c, MP__AT_EXIT_NOTHING);
  free(p->out.data);
  free(p->err.data);
  free(p);
}

/* ---- run, call, check_output --------------------------------------------------------- */

void mp_run_result_free(mp_run_result *r) {
  if (r == NULL)
    return;
  free(r->out);
  free(r->err);
  memset(r, 0, sizeof *r);
}

static int run_common(const char *const *argv, const char *shell_cmd, const mp_popen_opts *opts,
                      mp_run_result *r) {
  if (r == NULL)
    return mp_set_error(MP_EINVAL, "mp_run: result is NULL");
  memset(r, 0, sizeof *r);
  if (argv == shell_argv && shell_cmd == NULL)
    return mp_set_error(MP_EINVAL, "mp_run_shell: cmdline is NULL");
  mp_popen_opts o = opts ? *opts : zero_opts;
  if (o.input_len > 0 && o.input == NULL)
    return mp_set_error(MP_EINVAL, "mp_run: input_len > 0 but input is NULL");
  if (o.input != NULL && o.std_in.mode != MP_STDIO_INHERIT && o.std_in.mode != MP_STDIO_PIPE)
    return mp_set_error(MP_EINVAL, "mp_run: input feeds stdin, which must then be left unset");
  if (o.input != NULL)
    o.std_in.mode = MP_STDIO_PIPE;
  /* A timeout must be able to kill grandchildren too: on POSIX that needs a group. */
  if (o.timeout_ms > 0 && !o.detached)
    o.new_process_group = 1;
  mp_popen *p;
  int rc = popen_start(&p, argv, shell_cmd, &o);
  if (rc != 0)
    return rc;
  int t;
  int64_t deadline;
  (void)call_timeout(p, MP_DEFAULT_TIMEOUT, &t, &deadline);
  rc = talk(p, o.input, o.input_len, deadline);
  if (rc == MP_ETIMEDOUT) { /* kill the whole tree, reap the child, keep what the pipes hold */
    (void)mp_popen_kill_tree(p);
    (void)mp_plat_child_wait(&p->c, MP_FOREVER);
    /* The tree is dead, so the pipes end at once; the bound only guards against a
     * descendant that escaped the group or job. */
    (void)mp__deadline_ns(100, &deadline);
    (void)mp_plat_pipe_pump(p->pipes, NULL, 0, &p->in_off, &p->out, &p->err, deadline, 0);
  }
  if (rc == 0 || rc == MP_ETIMEDOUT) {
    rc = buf_take(&p->out, o.std_out.mode == MP_STDIO_PIPE ? &r->out : NULL, &r->out_len, rc);
    rc = buf_take(&p->err, o.std_err.mode == MP_STDIO_PIPE ? &r->err : NULL, &r->err_len, rc);
  }
  if (rc == MP_ETIMEDOUT)
    mp_set_error(rc, "'%s' did not finish within %d ms; its process tree was killed",
                 shell_cmd ? shell_cmd : argv[0], o.timeout_ms);
  if (p->c.reaped)
    r->returncode = p->c.status;
  mp_popen_free(p);
  if (rc != 0 && rc != MP_ETIMEDOUT)
    mp_run_result_free(r);
  return rc;
}

int mp_run(const char *const *argv, const mp_popen_opts *opts, mp_run_result *result) {
  return run_common(argv, NULL, opts, result);
}

int mp_run_shell(const char *cmdline, const mp_popen_opts *opts, mp_run_result *result) {
  return run_common(shell_argv, cmdline, opts, result);
}

int mp_call(const char *const *argv, const mp_popen_opts *opts, int *code) {
  mp_run_result r;
  if (code == NULL)
    return mp_set_error(MP_EINVAL, "mp_call: code is NULL");
  int rc = mp_run(argv, opts, &r);
  *code = r.returncode;
  mp_run_result_free(&r);
  return rc;
}

int mp_check_output(const char *const *argv, const mp_popen_opts *opts, char **out,
                    size_t *out_len) {
  mp_run_result r;
  if (out == NULL)
    return mp_set_error(MP_EINVAL, "mp_check_output: out is NULL");
  *out = NULL;
  if (out_len)
    *out_len = 0;
  mp_popen_opts o = opts ? *opts : zero_opts;
  if (o.std_out.mode != MP_STDIO_INHERIT && o.std_out.mode != MP_STDIO_PIPE)
    return mp_set_error(MP_EINVAL, "mp_check_output captures stdout: leave std_out unset");
  o.std_out.mode = MP_STDIO_PIPE;
  int rc = mp_run(argv, &o, &r);
  *out = r.out;
  if (out_len)
    *out_len = r.out_len;
  free(r.err);
  if (rc == 0 && r.returncode != 0)
    rc = mp_set_error(MP_EEXIT, "command '%s' returned non-zero exit status %d", argv[0],
                      r.returncode);
  return rc;
}
