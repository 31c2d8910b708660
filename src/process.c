/* Processes: run a function in a child, by fork (POSIX), by re-executing this program
 * (spawn, both systems) or through a fork server (POSIX; forkserver.c), and follow its life
 * through the child engine (child.h, platform.h). The start methods are a table (methods[]
 * below). The spawn bootstrap, which a fork server's children run too (the server forks
 * them, the client talks to them) and which starts the server itself:
 *
 *   parent                                   child (mp_init sees the marker as argv[1])
 *   spawn self --multiproc-child=ppid:h:f -> takes bootstrap handle h, checks its peer
 *          <- "hello"                         (proves mp_init ran; bounded by start_timeout)
 *   call: target, name, handles, args     ->  resolves the target, imports the handles
 *          <- reply: 0 or code, message       (so start() reports bootstrap failures)
 *                                             runs the target, exits with its result
 *
 * The call is u16 length + target reference, u16 length + name, u16 n + n u64 handles, then
 * the arguments; the reply a u32 code (0, or a negative MP_E*) + the message: big-endian, like
 * every wire of ours (buf.h). Parent and child are the same build, so nothing is versioned. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "xfer.h"
#include "args.h"
#include "buf.h"
#include "child.h"
#include "connection.h"
#include "forkserver.h"
#include "proc.h"
#include "platform.h"
#include "target.h"

#define MP_DEFAULT_START_TIMEOUT_MS 30000
#define MP_MAX_CHILD_HANDLES 256
/* Exit codes of a spawned child that could not run its target. */
#define MP_EXIT_BOOTSTRAP 120
#define MP_EXIT_NO_INIT 121
/* A marker flag beside MP_CHILD_DIE_WITH_PARENT: the child is a fork server. */
#define MP_MARKER_SERVER 256

enum { ST_CREATED, ST_STARTED, ST_DONE };

struct mp_process {
  mp_target_fn fn;
  mp_args *args;
  char *name;
  int daemon, detached, start_timeout_ms;
  mp_start_method method;
  int state;
  int serves;      /* not a process of the user's: the fork server (see mp__process_spawn_server) */
  int launch_lost; /* forkserver: the last launch's server went away before it answered */
  mp_plat_child proc;
  mp_process *next; /* registry of started, unreaped children */
};

/* ---- process-wide state ----------------------------------------------------------------- */

static mp_process *live;               /* guarded by mp_plat_global_lock */
static unsigned process_counter;       /* guarded by mp_plat_global_lock */
static mp_start_method default_method; /* 0: the platform's default */
static mp_start_method forced_method;  /* from MULTIPROC_START_METHOD */
static char current_name[128] = "MainProcess";
static int64_t parent_pid; /* known in children; 0: ask the OS */
static const char *program_argv0;
static int is_spawned_child_running; /* mp_init ran the bootstrap in this process */

/* ---- start methods ------------------------------------------------------------------------ */
/* One row per method: a new method is one more row and its start function; the
 * MULTIPROC_START_METHOD names and the checks come from this table. */

static int start_fork(mp_process *p);
static int start_spawn(mp_process *p);
static int start_forkserver(mp_process *p);

static int has_fork(void) { return (mp_plat_child_caps() & MP_CAP_FORK) != 0; }
static int always(void) { return 1; }

typedef struct start_method {
  mp_start_method id;
  const char *name;
  int (*available)(void);
  int (*start)(mp_process *p);
  int missing; /* the error where it is not available (fork's predates MP_ENOTSUP's use) */
} start_method;

static const start_method methods[] = {
    {MP_START_FORK, "fork", has_fork, start_fork, MP_EINVAL},
    {MP_START_SPAWN, "spawn", always, start_spawn, MP_EINVAL},
    {MP_START_FORKSERVER, "forkserver", has_fork, start_forkserver, MP_ENOTSUP},
};
#define NMETHODS (sizeof methods / sizeof methods[0])

static const start_method *method_row(mp_start_method m) {
  for (size_t i = 0; i < NMETHODS; i++)
    if (methods[i].id == m)
      return &methods[i];
  return NULL;
}

/* The platform's default: fork where it exists (as Python on Linux), else spawn. */
static mp_start_method platform_default(void) {
  return has_fork() ? MP_START_FORK : MP_START_SPAWN;
}

int mp__start_method_check(mp_start_method m, const char *who) {
  if (m == MP_START_DEFAULT)
    return 0;
  const start_method *row = method_row(m);
  if (row == NULL)
    return mp_set_error(MP_EINVAL, "%s: unknown start method %d", who, (int)m);
  if (!row->available())
    return mp_set_error(row->missing,
                        "%s: the %s start method needs fork(), which this system does not "
                        "have; use MP_START_SPAWN",
                        who, row->name);
  return 0;
}

int mp_set_start_method(mp_start_method method) {
  int rc = mp__start_method_check(method, "mp_set_start_method");
  if (rc == 0)
    default_method = method;
  return rc;
}

mp_start_method mp_get_start_method(void) {
  if (forced_method)
    return forced_method;
  return default_method ? default_method : platform_default();
}

static mp_start_method resolve_method(mp_start_method asked) {
  if (forced_method)
    return forced_method;
  return asked ? asked : mp_get_start_method();
}

static void registry_add(mp_process *p) {
  mp_plat_global_lock();
  p->next = live;
  live = p;
  mp_plat_global_unlock();
}

static void registry_remove(mp_process *p) {
  mp_plat_global_lock();
  for (mp_process **pp = &live; *pp; pp = &(*pp)->next) {
    if (*pp == p) {
      *pp = p->next;
      break;
    }
  }
  mp_plat_global_unlock();
}

/* ---- the public object ------------------------------------------------------------------ */

int mp_process_create(mp_process **out, mp_target_fn fn, const mp_args *args,
                      const mp_process_opts *opts) {
  if (out == NULL || fn == NULL)
    return mp_set_error(MP_EINVAL, "mp_process_create: %s is NULL", out ? "fn" : "p");
  *out = NULL;
  mp_process_opts none;
  memset(&none, 0, sizeof none);
  if (opts == NULL)
    opts = &none;
  int rc = mp__start_method_check(opts->method, "mp_process_create");
  if (rc)
    return rc;
  mp_process *p = calloc(1, sizeof *p);
  if (p == NULL)
    return mp_set_error(MP_ENOMEM, "mp_process_create: out of memory");
  rc = mp__args_copy(args, &p->args);
  if (rc == 0) {
    char fallback[32];
    mp_plat_global_lock();
    snprintf(fallback, sizeof fallback, "Process-%u", ++process_counter);
    mp_plat_global_unlock();
    p->name = mp__strdup(opts->name ? opts->name : fallback);
    rc = p->name ? 0 : mp_set_error(MP_ENOMEM, "mp_process_create: out of memory");
  }
  if (rc) {
    mp_args_free(p->args);
    free(p);
    return rc;
  }
  p->fn = fn;
  p->daemon = opts->daemon != 0;
  p->detached = opts->detached != 0;
  p->method = opts->method;
  p->start_timeout_ms =
      opts->start_timeout_ms > 0 ? opts->start_timeout_ms : MP_DEFAULT_START_TIMEOUT_MS;
  p->proc.wait = p->proc.job = MP_PLAT_INVALID;
  *out = p;
  return 0;
}

void mp_process_free(mp_process *p) {
  if (p == NULL)
    return;
  if (p->state == ST_STARTED)
    registry_remove(p);
  /* A child still running is reaped once it ends, and joined by mp_shutdown (a daemon
   * terminated first), as Python joins the children a program forgot. */
  mp__child_abandon(&p->proc, p->daemon ? MP__AT_EXIT_TERMINATE : MP__AT_EXIT_JOIN);
  mp_args_free(p->args);
  free(p->name);
  free(p);
}

int64_t mp_process_pid(const mp_process *p) {
  return p && p->state != ST_CREATED ? p->proc.pid : 0;
}

const char *mp_process_name(const mp_process *p) { return p ? p->name : NULL; }

int mp_process_daemon(const mp_process *p) { return p ? p->daemon : 0; }

const char *mp_current_process_name(void) { return current_name; }

int64_t mp_getppid(void) { return parent_pid ? parent_pid : mp_plat_getppid(); }

/* ---- fork ----------------------------------------------------------------------------- */

static void become_child(const char *name, int64_t ppid) {
  /* A plain loop, not snprintf or strlen: every page of code a fork child runs for the first
   * time is a page fault (its parent's text mappings are not copied). */
  size_t n = 0;
  for (; name[n] != '\0' && n < sizeof current_name - 1; n++)
    current_name[n] = name[n];
  current_name[n] = '\0';
  parent_pid = ppid;
  /* The parent's children are not this process's to join, terminate or reap. */
  live = NULL;
  mp__child_forget_all();
}

static int fork_child_main(void *ctx) {
  mp_process *p = ctx;
  become_child(p->name, mp_plat_getppid());
  int code = p->fn(p->args);
  mp_shutdown(); /* as Python's child does: its daemons end, its other children are joined */
  return code;
}

static int start_fork(mp_process *p) {
  /* The handles the arguments name, found before the fork (every page the child writes costs
   * it a copy): an object that cannot travel (a closed connection) fails the start, as under
   * spawn. */
  mp_plat_handle keep[MP_MAX_CHILD_HANDLES];
  size_t nkeep = 0, len = 0;
  char *buf = NULL;
  int rc = mp__args_encode(p->args, &buf, &len, keep, &nkeep, MP_MAX_CHILD_HANDLES);
  free(buf);
  return rc ? rc
            : mp_plat_child_fork(&p->proc, p->detached ? 0 : MP_CHILD_DIE_WITH_PARENT, keep, nkeep,
                                 fork_child_main, p);
}

/* ---- spawn: the parent's side of the bootstrap -------------------------------------------- */

static int encode_call(mp_process *p, const mp__buf *fnref, const char *args_buf, size_t args_len,
                       const mp_plat_handle *child_handles, size_t nh, mp__buf *out) {
  size_t nlen = strlen(p->name);
  nlen = nlen < sizeof current_name ? nlen : sizeof current_name - 1; /* what the child keeps */
  int bad = mp__buf_put_u16(out, (unsigned)fnref->len) ||
            mp__buf_put(out, fnref->data, fnref->len) || mp__buf_put_u16(out, (unsigned)nlen) ||
            mp__buf_put(out, p->name, nlen) || mp__buf_put_u16(out, (unsigned)nh);
  for (size_t i = 0; i < nh && !bad; i++)
    bad = mp__buf_put_u64(out, (uint64_t)(int64_t)child_handles[i]);
  if (bad || mp__buf_put(out, args_buf, args_len))
    return mp_set_error(MP_ENOMEM, "start: out of memory encoding the call");
  return 0;
}

static int64_t remaining_ms(uint64_t deadline) {
  uint64_t now = mp_plat_monotonic_ns();
  return now >= deadline ? 0 : (int64_t)((deadline - now) / 1000000u) + 1;
}

/* Waits for one message from the child; if the child exits first, says how. */
static int recv_from_child(mp_process *p, mp_conn *c, uint64_t deadline, const char *stage,
                           void **msg, size_t *len) {
  mp_waitable w[2] = {mp_waitable_conn(c), mp_waitable_process(p)};
  int rc = mp_wait(w, 2, (int)remaining_ms(deadline));
  if (rc == MP_ETIMEDOUT && strcmp(stage, "hello") == 0)
    return mp_set_error(MP_ECHILD, "child did not call mp_init within %d ms", p->start_timeout_ms);
  if (rc == MP_ETIMEDOUT)
    return mp_set_error(MP_ECHILD, "child did not finish the bootstrap within %d ms (%s)",
                        p->start_timeout_ms, stage);
  if (rc < 0)
    return rc;
  if (w[0].ready) {
    rc = mp_conn_recv(c, msg, len, (int)remaining_ms(deadline));
    if (rc != MP_EEOF && rc != MP_EBROKEN)
      return rc;
  }
  /* The child closed its end or exited: reap it (it is on its way out), then say how. */
  if (mp_plat_child_wait(&p->proc, (int)remaining_ms(deadline)) == MP_ETIMEDOUT) {
    mp_plat_child_signal(&p->proc, MP_SIG_KILL, 0);
    mp_plat_child_wait(&p->proc, MP_FOREVER);
  }
  if (p->proc.status == MP_EXIT_NO_INIT || strcmp(stage, "hello") == 0)
    return mp_set_error(MP_ECHILD,
                        "child exited with code %d before calling mp_init: does main() "
                        "call mp_init(&argc, &argv) first?",
                        p->proc.status);
  return mp_set_error(MP_ECHILD, "child exited with code %d during the bootstrap (%s)",
                      p->proc.status, stage);
}

/* Reads the reply: 0, or the child's error with its message; anything else is MP_EPROTO. */
static int check_reply(const void *msg, size_t len) {
  mp__reader r = {msg, len, 0};
  int32_t code = (int32_t)mp__get_u32(&r);
  if (r.bad || code > 0 || code <= -1000 || (code == 0 && r.left > 0))
    return mp_set_error(MP_EPROTO, "start: malformed bootstrap reply from the child");
  if (code == 0)
    return 0;
  return mp_set_error(code, "child could not start its target: %.*s",
                      (int)(r.left > 500 ? 500 : r.left), (const char *)r.p);
}

static int handshake(mp_process *p, mp_conn *mine, const mp__buf *call) {
  uint64_t deadline = mp_plat_monotonic_ns() + (uint64_t)p->start_timeout_ms * 1000000u;
  void *msg = NULL;
  size_t len = 0;
  int rc = recv_from_child(p, mine, deadline, "hello", &msg, &len);
  mp_free(msg);
  msg = NULL;
  if (rc == 0)
    rc = mp_conn_send(mine, call->data, call->len);
  if (rc == 0)
    rc = recv_from_child(p, mine, deadline, "call", &msg, &len);
  if (rc == 0)
    rc = check_reply(msg, len);
  mp_free(msg);
  return rc;
}

/* How a bootstrapped child comes to exist: spawned, or forked by the fork server. spec names
 * the bootstrap handle, the handles to pass and where their values in the child go. */
typedef int (*launch_fn)(mp_process *p, const mp_plat_child_spec *spec);

/* Spawns this program with the marker as argv[1], the bootstrap end and the handles. */
static int spawn_self(mp_process *p, const mp_plat_child_spec *given) {
  char marker[96], self[4096];
  snprintf(marker, sizeof marker, MP_CHILD_MARKER "%lld:%lld:%d", (long long)mp_plat_getpid(),
           (long long)mp_plat_bootstrap_value(given->bootstrap),
           given->flags | (p->serves ? MP_MARKER_SERVER : 0));
  const char *argv0 = program_argv0;
  if (argv0 == NULL)
    argv0 = mp_plat_self_exe(self, sizeof self) == 0 ? self : "multiproc-child";
  const char *argv[] = {argv0, marker, NULL};
  mp_plat_child_spec spec = *given;
  spec.argv = argv;
  return mp__child_spawn(&spec, &p->proc);
}

static int launch_served(mp_process *p, const mp_plat_child_spec *spec) {
  return mp__forkserver_launch(&p->proc, spec, p->start_timeout_ms, &p->launch_lost);
}

/* Prepares the call, launches the child, and runs the handshake; a child that fails it is
 * killed and reaped. The parent's copy of the child's bootstrap end goes as soon as the
 * child holds it. keep (the fork server's start) takes the bootstrap connection. */
static int start_bootstrapped(mp_process *p, launch_fn launch, mp_conn **keep) {
  mp__buf fnref = {0};
  mp_conn *mine = NULL, *theirs = NULL;
  mp_plat_handle handles[MP_MAX_CHILD_HANDLES], child_handles[MP_MAX_CHILD_HANDLES];
  size_t nh = 0;
  char *args_buf = NULL;
  size_t args_len = 0;
  mp__buf call = {0};
  mp__xfer boot;
  int rc = mp__fnref_encode((void (*)(void))p->fn, &fnref);
  if (rc == 0)
    rc = mp__args_encode(p->args, &args_buf, &args_len, handles, &nh, MP_MAX_CHILD_HANDLES);
  if (rc == 0)
    rc = mp_pipe(&mine, &theirs, 1);
  if (rc == 0) {
    memset(&boot, 0, sizeof boot);
    rc = mp__conn_xfer.export_obj(theirs, &boot);
  }
  if (rc == 0) {
    mp_plat_child_spec spec;
    memset(&spec, 0, sizeof spec);
    for (int i = 0; i < 3; i++)
      spec.stdio[i] = MP_PLAT_INVALID;
    spec.bootstrap = boot.handles[0];
    spec.pass = handles;
    spec.passed = child_handles;
    spec.npass = nh;
    spec.flags = p->detached ? 0 : MP_CHILD_DIE_WITH_PARENT;
    rc = launch(p, &spec);
  }
  if (rc == 0) {
    if (mp_plat_child_caps() & MP_CAP_BOOT_HANDED) {
      mp_conn_free(theirs); /* the child has its copy; EOF now means the child is gone */
      theirs = NULL;
    }
    rc = encode_call(p, &fnref, args_buf, args_len, child_handles, nh, &call);
    if (rc == 0)
      rc = handshake(p, mine, &call);
    if (rc != 0)
      mp__child_discard(&p->proc);
  }
  if (rc == 0 && keep)
    *keep = mine, mine = NULL;
  mp_conn_free(theirs);
  mp_conn_free(mine);
  mp__buf_free(&call);
  free(args_buf);
  mp__buf_free(&fnref);
  return rc;
}

static int start_spawn(mp_process *p) { return start_bootstrapped(p, spawn_self, NULL); }

/* A server that went away before it answered (killed while idle, or just as it read the
 * request) left no child of the request running: asked again, once, with a new server and
 * a new bootstrap pair, since the old one may hold part of a dying child's hello. */
static int start_forkserver(mp_process *p) {
  int rc = start_bootstrapped(p, launch_served, NULL);
  if (rc != 0 && p->launch_lost)
    rc = start_bootstrapped(p, launch_served, NULL);
  return rc == 0 ? 0 : mp__forkserver_explain(rc);
}

static int no_preload(void) { return 0; }

int mp__process_spawn_server(mp_preload_fn preload, int timeout_ms, mp_plat_child *proc,
                             mp_plat_handle *ctl) {
  static char name[] = "ForkServer";
  mp_process s; /* a process object of our own: never registered, never freed */
  memset(&s, 0, sizeof s);
  s.fn = (mp_target_fn)(void (*)(void))(preload ? preload : no_preload);
  s.name = name;
  s.serves = 1;
  s.start_timeout_ms = timeout_ms > 0 ? timeout_ms : MP_DEFAULT_START_TIMEOUT_MS;
  s.proc.wait = s.proc.job = MP_PLAT_INVALID;
  mp_conn *mine = NULL;
  int rc = start_bootstrapped(&s, spawn_self, &mine);
  if (rc == 0 && (rc = mp_plat_handle_dup(mp_plat_chan_handle(mp__conn_chan(mine)), ctl)) != 0)
    mp__child_discard(&s.proc);
  mp_conn_free(mine);
  if (rc == 0)
    *proc = s.proc;
  return rc;
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

int mp_process_start(mp_process *p) {
  if (p == NULL)
    return mp_set_error(MP_EINVAL, "mp_process_start: p is NULL");
  if (p->state != ST_CREATED)
    return mp_set_error(MP_ESTATE, "mp_process_start: %s was already started", p->name);
  static int spawned_without_init = -1; /* the command line never changes: read it once */
  if (spawned_without_init < 0)
    spawned_without_init = mp_plat_started_as_child();
  if (spawned_without_init && !is_spawned_child_running) {
    /* This program was spawned by multiproc but its main() did not call mp_init: it is
     * running the parent's main a second time. Stop before it spawns itself again. */
    fprintf(stderr, "multiproc: this process was spawned to run a target, but main() did not "
                    "call mp_init(&argc, &argv) first; exiting\n");
    mp_plat_exit(MP_EXIT_NO_INIT);
  }
  mp__child_reap_abandoned(); /* what free() left: never a zombie until mp_shutdown */
  mp_start_method m = resolve_method(p->method);
  int rc = mp__start_method_check(m, "mp_process_start");
  /* What the parent printed before start comes before what the child prints. */
  mp_plat_flush_stdio();
  if (rc == 0)
    rc = method_row(m)->start(p);
  if (rc) {
    memset(&p->proc, 0, sizeof p->proc);
    p->proc.wait = p->proc.job = MP_PLAT_INVALID;
    return rc;
  }
  p->state = ST_STARTED;
  registry_add(p);
  return 0;
}

static void mark_done(mp_process *p) {
  p->state = ST_DONE;
  registry_remove(p);
}

int mp_process_join(mp_process *p, int timeout_ms) {
  if (p == NULL)
    return mp_set_error(MP_EINVAL, "mp_process_join: p is NULL");
  if (p->state == ST_CREATED)
    return mp_set_error(MP_ESTATE, "mp_process_join: %s was not started", p->name);
  if (p->state == ST_DONE)
    return 0;
  int rc = mp_plat_child_wait(&p->proc, timeout_ms);
  if (rc == 0)
    mark_done(p);
  return rc;
}

int mp_process_is_alive(mp_process *p) {
  if (p == NULL || p->state != ST_STARTED)
    return 0;
  return mp_process_join(p, 0) == MP_ETIMEDOUT;
}

int mp_process_exitcode(mp_process *p, int *code) {
  if (p == NULL || code == NULL)
    return mp_set_error(MP_EINVAL, "mp_process_exitcode: NULL argument");
  if (p->state == ST_STARTED)
    mp_process_join(p, 0);
  if (p->state != ST_DONE)
    return mp_set_error(MP_ESTATE, "mp_process_exitcode: %s has not exited", p->name);
  *code = p->proc.status;
  return 0;
}

static int send_signal(mp_process *p, int sig, const char *who) {
  if (p == NULL)
    return mp_set_error(MP_EINVAL, "%s: p is NULL", who);
  if (p->state == ST_CREATED)
    return mp_set_error(MP_ESTATE, "%s: %s was not started", who, p->name);
  return p->state == ST_DONE ? 0 : mp_plat_child_signal(&p->proc, sig, 0);
}

int mp_process_terminate(mp_process *p) {
  return send_signal(p, MP_SIG_TERM, "mp_process_terminate");
}

int mp_process_kill(mp_process *p) { return send_signal(p, MP_SIG_KILL, "mp_process_kill"); }

mp_plat_handle mp__process_wait_handle(mp_process *p) {
  return p ? p->proc.wait : MP_PLAT_INVALID; /* INVALID until spawned */
}

/* Terminates daemons, then joins every child, those the user freed too. */
void mp_shutdown(void) {
  for (;;) {
    mp_plat_global_lock();
    mp_process *p = live;
    if (p)
      live = p->next;
    mp_plat_global_unlock();
    if (p == NULL)
      break;
    if (p->daemon)
      mp_plat_child_signal(&p->proc, MP_SIG_TERM, 0);
    mp_plat_child_wait(&p->proc, MP_FOREVER);
    p->state = ST_DONE;
  }
  mp__child_shutdown();
  mp__forkserver_stop(); /* after the joins: its children die with it */
}

/* ---- the child's side of the bootstrap ---------------------------------------------------- */

typedef struct child_call {
  mp__reader fnref;
  char name[128];
  mp_plat_handle handles[MP_MAX_CHILD_HANDLES];
  size_t nhandles;
  const char *args;
  size_t args_len;
} child_call;

/* Decodes and checks a call message; call points into msg. */
static int parse_call(const void *msg, size_t len, child_call *c) {
  mp__reader r = {msg, len, 0};
  size_t rl = mp__get_u16(&r);
  const unsigned char *ref = mp__get_bytes(&r, rl);
  size_t nl = mp__get_u16(&r);
  const unsigned char *name = mp__get_bytes(&r, nl);
  size_t nh = mp__get_u16(&r);
  if (r.bad || rl > MP__FNREF_MAX || nl >= sizeof c->name || nh > MP_MAX_CHILD_HANDLES)
    return mp_set_error(MP_EPROTO, "bootstrap: malformed call");
  for (size_t i = 0; i < nh; i++)
    c->handles[i] = (mp_plat_handle)(int64_t)mp__get_u64(&r);
  if (r.bad)
    return mp_set_error(MP_EPROTO, "bootstrap: the call's %zu handles are cut short", nh);
  c->nhandles = nh;
  c->fnref = (mp__reader){ref, rl, 0};
  memcpy(c->name, name, nl);
  c->name[nl] = '\0';
  c->args = (const char *)r.p;
  c->args_len = r.left;
  return 0;
}

int mp__boot_check_call(const void *msg, size_t len) {
  child_call call;
  return parse_call(msg, len, &call);
}

static int send_reply(mp_conn *c, int code, const char *message) {
  mp__buf b = {0};
  int rc =
      mp__buf_put_u32(&b, (uint32_t)code) || mp__buf_put(&b, message, code ? strlen(message) : 0)
          ? MP_ENOMEM
          : mp_conn_send(c, b.data, b.len);
  mp__buf_free(&b);
  return rc;
}

/* Receives and decodes the call; on success *fn and *args are ready to run. */
static int receive_call(mp_conn *c, mp_target_fn *fn, mp_args **args) {
  void *msg = NULL;
  size_t len = 0;
  int rc = mp_conn_recv(c, &msg, &len, MP_FOREVER);
  if (rc)
    return rc;
  child_call call;
  rc = parse_call(msg, len, &call);
  void (*code)(void) = NULL;
  if (rc == 0)
    rc = mp__fnref_decode(&call.fnref, &code);
  if (rc == 0)
    rc = mp__args_decode(call.args, call.args_len, call.handles, call.nhandles, args);
  if (rc == 0) {
    /* Whatever the target execs (system(), a subprocess) must not inherit these. */
    mp_plat_child_seal(call.handles, call.nhandles);
    *fn = (mp_target_fn)code;
    snprintf(current_name, sizeof current_name, "%s", call.name);
  }
  mp_free(msg);
  return rc;
}

/* Reads a decimal number (digits only, no sign or space) ending at stop; 0 or MP_EPROTO. */
static int marker_number(const char **p, char stop, long long *out) {
  char *end;
  errno = 0;
  if (**p < '0' || **p > '9' || (*out = strtoll(*p, &end, 10), errno == ERANGE) || *end != stop)
    return MP_EPROTO;
  *p = end + (stop != '\0');
  return 0;
}

/* "--multiproc-child=<ppid>:<bootstrap>:<flags>", nothing more, nothing less. */
int mp__boot_parse_marker(const char *arg, int64_t *ppid, int64_t *handle, int *flags) {
  long long a = 0, b = 0, f = 0;
  size_t n = strlen(MP_CHILD_MARKER);
  if (strncmp(arg, MP_CHILD_MARKER, n) != 0)
    return mp_set_error(MP_EPROTO, "bootstrap: not a child marker");
  const char *p = arg + n;
  if (marker_number(&p, ':', &a) || marker_number(&p, ':', &b) || marker_number(&p, '\0', &f) ||
      a == 0 || (f & ~(long long)(MP_CHILD_DIE_WITH_PARENT | MP_MARKER_SERVER)) != 0)
    return mp_set_error(MP_EPROTO, "bootstrap: malformed child marker \"%.64s\"", arg);
  *ppid = a;
  *handle = b;
  *flags = (int)f;
  return 0;
}

/* In the fork server, after the bootstrap: the target named the preload, run once now. */
static int run_preload(mp_target_fn fn) {
  int r = ((mp_preload_fn)(void (*)(void))fn)();
  return r == 0 ? 0 : mp_set_error(MP_ECHILD, "the fork server's preload function returned %d", r);
}

static void bootstrap_failed(void) {
  fprintf(stderr, "multiproc: %s\n", mp_last_error());
  mp_plat_exit(MP_EXIT_BOOTSTRAP);
}

static void served_child_main(int64_t client, int64_t boot);

/* Serves forks on the bootstrap connection's handle: never returns. */
static void serve_forks(mp_conn *c) {
  mp_plat_handle ctl = MP_PLAT_INVALID;
  int rc = mp_plat_handle_dup(mp_plat_chan_handle(mp__conn_chan(c)), &ctl);
  mp_conn_free(c);
  if (rc == 0)
    mp_plat_forkserver_serve(ctl, parent_pid, served_child_main);
  fprintf(stderr, "multiproc: fork server: %s\n", mp_last_error());
  mp_plat_exit(MP_EXIT_BOOTSTRAP);
}

/* The bootstrap on handle h, then the target (or, in the fork server, the preload and the
 * serving): never returns. */
static void run_bootstrap(mp_plat_handle h, int server) {
  mp_conn *c = NULL;
  if (mp__conn_wrap_handle(h, &c) != 0 || mp_conn_send(c, "hello", 5) != 0)
    mp_plat_exit(MP_EXIT_BOOTSTRAP);
  mp_target_fn fn = NULL;
  mp_args *args = NULL;
  int rc = receive_call(c, &fn, &args);
  if (rc == MP_EEOF || rc == MP_EBROKEN)
    mp_plat_exit(MP_EXIT_BOOTSTRAP); /* the parent gave up on us */
  if (rc == 0 && server) {
    mp_args_free(args); /* the preload takes none */
    rc = run_preload(fn);
  }
  send_reply(c, rc, mp_last_error());
  if (rc == 0 && server)
    serve_forks(c);
  mp_conn_free(c);
  if (rc)
    mp_plat_exit(MP_EXIT_BOOTSTRAP);
  int code = fn(args);
  mp_args_free(args);
  mp_shutdown();
  mp_plat_exit(code);
}

/* A fork server's child (forked by posix/forkserver.c): its client is the parent it talks to. */
static void served_child_main(int64_t client, int64_t boot) {
  live = NULL; /* what the preload started is the server's */
  mp__child_forget_all();
  mp_plat_handle h = MP_PLAT_INVALID;
  if (mp_plat_bootstrap_handle(client, boot, &h) != 0)
    bootstrap_failed();
  run_bootstrap(h, 0);
}

/* Runs the whole child: never returns. */
static void child_main(const char *marker) {
  int64_t value = 0;
  int flags = 0;
  mp_plat_handle h = MP_PLAT_INVALID;
  if (mp__boot_parse_marker(marker, &parent_pid, &value, &flags) != 0 ||
      mp_plat_child_mode_allowed() != 0 ||
      ((flags & MP_MARKER_SERVER) &&
       mp__start_method_check(MP_START_FORKSERVER, "fork server") != 0) ||
      mp_plat_bootstrap_handle(parent_pid, value, &h) != 0)
    bootstrap_failed();
  is_spawned_child_running = 1;
  mp_plat_child_setup(parent_pid, flags & MP_CHILD_DIE_WITH_PARENT);
  run_bootstrap(h, (flags & MP_MARKER_SERVER) != 0);
}

/* MULTIPROC_START_METHOD forces a method (the test suite re-runs itself so): 0 or MP_EINVAL. */
static int read_forced_method(void) {
  const char *env = getenv("MULTIPROC_START_METHOD");
  if (env == NULL || env[0] == '\0')
    return 0;
  for (size_t i = 0; i < NMETHODS; i++)
    if (strcmp(env, methods[i].name) == 0 && methods[i].available())
      forced_method = methods[i].id;
  return forced_method
             ? 0
             : mp_set_error(MP_EINVAL,
                            "MULTIPROC_START_METHOD=%s is not a start method here; ignored", env);
}

int mp_init(int *argc, char ***argv) {
  static int initialised;
  if (argc && argv && *argv) {
    /* Noted in a spawned child too: it may start children of its own (a fork server). */
    program_argv0 = (*argv)[0];
    mp_plat_note_argv0(program_argv0);
    /* Child mode only for exactly "program marker": a marker anywhere else is an argument. */
    if (*argc == 2 && strncmp((*argv)[1], MP_CHILD_MARKER, strlen(MP_CHILD_MARKER)) == 0)
      child_main((*argv)[1]);
  }
  if (initialised)
    return 0;
  initialised = 1;
  int rc = read_forced_method();
  atexit(mp_shutdown);
  if (rc != 0)
    return rc;
  /* Chosen by now: the server starts while the program is still as main left it (its
   * threads, if any, are the program's to know about); a failure is retried at first use. */
  return resolve_method(MP_START_DEFAULT) == MP_START_FORKSERVER ? mp__forkserver_start(0) : 0;
}
