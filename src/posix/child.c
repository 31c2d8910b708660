/* POSIX child engine: one posix_spawn path for this program and for other programs, fork,
 * waiting on a pidfd (Linux), on a watcher thread or on a fork server's report
 * (posix/forkserver.c), status decoding, signals to one child or its process group.
 *
 * Why a forker thread: Linux delivers the parent-death signal when the *thread* that forked
 * exits, not the process, so a child started from a short-lived thread would die with it.
 * Children that must die with us are started from a thread that lives as long as the process;
 * the others are spawned directly. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine.h"
#include "features.h"
#include "util.h"
#include "../platform.h"

#if MP_LINUX
#  include <dirent.h>
#  include <sys/auxv.h>
#  include <sys/prctl.h>
#  include <sys/syscall.h>
#endif

extern char **environ;

int mp_plat_child_caps(void) { return MP_CAP_FORK | MP_CAP_ZOMBIES | MP_CAP_BOOT_HANDED; }

int64_t mp_plat_bootstrap_value(mp_plat_handle h) {
  (void)h;
  return MP_BOOT_FD;
}

/* ---- the lifeline: die-with-parent without PR_SET_PDEATHSIG ------------------------------ */
/* The parent holds the write end of one pipe for its whole life; each child that must die
 * with it holds the read end and a thread blocked reading it. The parent's death closes the
 * write end (the kernel does it), the read returns end of file, the child exits. */

static int lifeline[2] = {-1, -1};
static pthread_mutex_t lifeline_mu = PTHREAD_MUTEX_INITIALIZER;
static pid_t lifeline_owner;

/* Made once per process: a fork child inherits its parent's lifeline (whose read end it may be
 * watching) and needs a new one for its own children. */
int mp__lifeline_read_end(void) {
  pthread_mutex_lock(&lifeline_mu);
  if (lifeline_owner != getpid()) {
    if (pipe2(lifeline, O_CLOEXEC) == 0)
      lifeline_owner = getpid();
    else
      lifeline[0] = lifeline[1] = -1;
  }
  int fd = lifeline[0];
  pthread_mutex_unlock(&lifeline_mu);
  return fd >= 0 ? fd : mp__os_error("pipe2(lifeline)");
}

static void *lifeline_watch(void *arg) {
  char c;
  while (read((int)(intptr_t)arg, &c, 1) < 0 && errno == EINTR) {
  }
  _exit(128 + SIGKILL); /* as PR_SET_PDEATHSIG's SIGKILL would */
}

/* In a child: die with the parent, and catch the race where it already died. */
void mp__die_with_parent(pid_t expected_parent, int lifeline_fd) {
  pthread_t t;
#if MP_LINUX
  prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
  if (lifeline_fd >= 0 &&
      pthread_create(&t, NULL, lifeline_watch, (void *)(intptr_t)lifeline_fd) == 0)
    pthread_detach(t);
  if (getppid() != expected_parent)
    _exit(128 + SIGKILL);
}

/* ---- closing what a child must not hold --------------------------------------------------- */

typedef struct keep_set {
  const mp_plat_handle *fds;
  size_t n;
  int cloexec_only, except;
} keep_set;

static int close_unless_kept(int fd, void *arg) {
  const keep_set *k = arg;
  for (size_t i = 0; i < k->n; i++)
    if ((int)k->fds[i] == fd)
      return 0;
  if (fd != k->except && fd != lifeline[0] &&
      (!k->cloexec_only || (fcntl(fd, F_GETFD) & FD_CLOEXEC)))
    close(fd);
  return 0;
}

#if MP_LINUX
/* close_range (Linux 5.9) when nothing above low stays; else getdents64 into a small stack
 * buffer: safe after fork in a threaded parent, and one pass is enough (/proc lists by number
 * from a position, so closing those listed skips none). Cheap on purpose, as every page a fork
 * child touches costs it a fault: the path is built on the stack (a literal would fault in a
 * read-only data page) and names are parsed here, not by strtol's code and locale tables. */
void mp__close_from(int low, int cloexec_only, const mp_plat_handle *keep, size_t nkeep) {
#  ifdef SYS_close_range
  if (!cloexec_only && nkeep == 0 && syscall(SYS_close_range, low, ~0u, 0) == 0)
    return;
#  endif
  char path[] = {'/', 'p', 'r', 'o', 'c', '/', 's', 'e', 'l', 'f', '/', 'f', 'd', '\0'};
  keep_set k = {keep, nkeep, cloexec_only, open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (k.except < 0)
    return;
  char buf[1024];
  long n;
  while ((n = syscall(SYS_getdents64, k.except, buf, sizeof buf)) > 0) {
    for (long off = 0; off < n;) {
      struct dirent64 *d = (struct dirent64 *)(buf + off);
      off += d->d_reclen;
      int fd = 0;
      const char *c = d->d_name;
      for (; *c >= '0' && *c <= '9' && fd < (1 << 24); c++)
        fd = fd * 10 + (*c - '0');
      if (c != d->d_name && *c == '\0' && fd >= low)
        close_unless_kept(fd, &k);
    }
  }
  close(k.except);
}
#else
/* Calls fn(fd, arg) for each open descriptor from low up to the descriptor limit (at most
 * max) until it returns nonzero: poll() reports POLLNVAL for those not open, 256 at a time.
 * poll, fcntl and close are safe after fork. */
static int each_open_fd(int low, int max, int (*fn)(int fd, void *arg), void *arg) {
  struct rlimit rl;
  int limit =
      getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)max ? (int)rl.rlim_cur : max;
  struct pollfd p[256];
  int e = 0;
  for (int base = low; e == 0 && base < limit; base += 256) {
    int n = limit - base < 256 ? limit - base : 256;
    for (int i = 0; i < n; i++)
      p[i] = (struct pollfd){base + i, 0, 0};
    if (poll(p, (nfds_t)n, 0) < 0)
      continue;
    for (int i = 0; e == 0 && i < n; i++)
      if (!(p[i].revents & POLLNVAL))
        e = fn(base + i, arg);
  }
  return e;
}

void mp__close_from(int low, int cloexec_only, const mp_plat_handle *keep, size_t nkeep) {
  keep_set k = {keep, nkeep, cloexec_only, -1};
  each_open_fd(low, 1 << 20, close_unless_kept, &k);
}

static int close_inheritable(int fd, void *fa) {
  return (fcntl(fd, F_GETFD) & FD_CLOEXEC) ? 0 : posix_spawn_file_actions_addclose(fa, fd);
}
#endif

/* ---- tracking a started child ----------------------------------------------------------- */

/* mp_plat_child.backend: how the child's end is known (WAIT_SERVED: see engine.h). */
enum { WAIT_THREAD = 0, WAIT_PIDFD = 1 };

static int no_pidfd_for_tests;
void mp_plat_child_test_no_pidfd(int on) { no_pidfd_for_tests = on; }

/* Without a pidfd (portable POSIX, kernels before 5.3, sandboxes that refuse pidfd_open): a
 * thread per child sleeps in waitid(WNOWAIT), then writes a byte to the pipe whose read end
 * is the wait handle. WNOWAIT leaves the child a zombie until collect() reaps it, so children
 * are never reaped behind the application's back and a kill never hits a recycled pid; no
 * SIGCHLD handler, no busy waiting. A byte, not end of file, as fork children may hold copies
 * of the write end; the thread never closes it (c->job holds it): collect() does, once the
 * byte has come, so no descriptor outlives the wait. */
static void *watch_exit(void *arg) {
  int *w = arg, fd = w[1];
  siginfo_t si;
  while (waitid(P_PID, (id_t)w[0], &si, WEXITED | WNOWAIT) != 0 && errno == EINTR) {
  }
  free(w);
  (void)!write(fd, "x", 1); /* also on ECHILD (reaped elsewhere): collect() says so */
  return NULL;
}

static int watch(mp_plat_child *c) {
  int p[2], *w = malloc(2 * sizeof *w);
  if (w == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory watching a child");
  if (pipe2(p, O_CLOEXEC) != 0) {
    free(w);
    return mp__os_error("pipe2(child exit notification)");
  }
  w[0] = (int)c->pid, w[1] = p[1];
  int rc = mp__service_thread(watch_exit, w, "pthread_create(child watcher)");
  if (rc != 0) {
    free(w), close(p[1]), close(p[0]);
    return rc;
  }
  c->wait = p[0], c->job = p[1];
  return 0;
}

/* The child exists already, so a failure here must not lose it: the caller kills and reaps
 * it. The wait handle: served_fd (>= 0), else a pidfd where the kernel gives one, else a
 * watcher's pipe. */
int mp__track(mp_plat_child *c, pid_t pid, int flags, int served_fd) {
  memset(c, 0, sizeof *c);
  c->pid = pid;
  c->flags = flags;
  c->job = MP_PLAT_INVALID;
  c->wait = served_fd;
  c->backend = served_fd >= 0 ? WAIT_SERVED : WAIT_PIDFD;
#if MP_LINUX
  if (served_fd < 0 && !no_pidfd_for_tests)
    c->wait = (int)syscall(SYS_pidfd_open, pid, 0);
#endif
  if (c->wait >= 0)
    return 0;
  c->backend = WAIT_THREAD;
  return watch(c);
}

/* ---- fork and spawn, on the forker thread or not ------------------------------------------ */

/* A fork, or a spawn of spec, to run for the requesting thread. */
typedef struct fork_req {
  const mp_plat_child_spec *spec; /* NULL: a fork of keep, child_fn and ctx */
  int flags;
  const mp_plat_handle *keep;
  size_t nkeep;
  int (*child_fn)(void *);
  void *ctx;
  sigset_t mask; /* the requesting thread's signal mask, for the child */
  pid_t pid;
  int err; /* errno of a failure */
  int done;
  struct fork_req *next;
} fork_req;

static void run_fork(fork_req *r) {
  pid_t parent = getpid();
  int life = -1;
  if (!MP_LINUX && (r->flags & MP_CHILD_DIE_WITH_PARENT))
    life = mp__lifeline_read_end();
  /* Or buffered output would be written twice, by parent and child. */
  mp_plat_flush_stdio();
  pid_t pid = fork();
  if (pid < 0)
    r->err = errno;
  if (pid != 0) {
    r->pid = pid;
    return;
  }
  /* r lives on the requesting thread's stack, which this child's glibc hands to the next
   * thread it creates (the lifeline watcher): keep what the child needs on this stack. */
  int (*child_fn)(void *) = r->child_fn;
  void *ctx = r->ctx;
  sigset_t mask = r->mask;
  mp__close_from(3, 1, r->keep, r->nkeep);
  if (r->flags & MP_CHILD_DIE_WITH_PARENT)
    mp__die_with_parent(parent, life);
  pthread_sigmask(SIG_SETMASK, &mask, NULL);
  mp_plat_exit(child_fn(ctx));
}

/* The child's layout: stdio at 0..2 (when given), the bootstrap at MP_BOOT_FD, the lifeline
 * next (portable builds), then the passed handles. Sources are first copied above every source
 * and target, so that no dup2 overwrites a descriptor still to be copied and every target is a
 * fresh, inheritable copy even where source and target numbers agree. */
static int add_layout(posix_spawn_file_actions_t *fa, const mp_plat_child_spec *s, int life) {
  int src[3 + 2 + 256], dst[3 + 2 + 256], n = 0, top = MP_BOOT_FD;
  for (int i = 0; i < 3; i++)
    if (s->stdio[i] != MP_PLAT_INVALID)
      src[n] = (int)s->stdio[i], dst[n++] = i;
  if (s->bootstrap != MP_PLAT_INVALID)
    src[n] = (int)s->bootstrap, dst[n++] = top++;
  if (life >= 0)
    src[n] = life, dst[n++] = top++;
  for (size_t i = 0; i < s->npass; i++) {
    if (s->passed)
      s->passed[i] = top;
    src[n] = (int)s->pass[i], dst[n++] = top++;
  }
  int base = top, e = 0;
  for (int i = 0; i < n; i++)
    if (src[i] >= base)
      base = src[i] + 1;
  for (int i = 0; e == 0 && i < n; i++)
    e = posix_spawn_file_actions_adddup2(fa, src[i], base + i);
  for (int i = 0; e == 0 && i < n; i++)
    e = posix_spawn_file_actions_adddup2(fa, base + i, dst[i]);
#if MP_LINUX
  /* Nothing else reaches the program, even descriptors someone opened without O_CLOEXEC. */
  return e ? e : posix_spawn_file_actions_addclosefrom_np(fa, top);
#else
  for (int i = 0; e == 0 && i < n; i++)
    e = posix_spawn_file_actions_addclose(fa, base + i);
  /* Descriptors opened without O_CLOEXEC by other code: closed by name (up to 65536). */
  return e ? e : each_open_fd(top, 65536, close_inheritable, fa);
#endif
}

/* The program starts with default dispositions (SIGPIPE not ignored) and the mask of the
 * thread that started it, as if that thread had run it. */
static int setup_attr(const mp_plat_child_spec *s, const sigset_t *mask, posix_spawnattr_t *at) {
  sigset_t def;
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (s->flags & MP_CHILD_DETACHED)
    flags |= POSIX_SPAWN_SETSID;
  else if (s->flags & MP_CHILD_NEW_GROUP)
    flags |= POSIX_SPAWN_SETPGROUP;
  sigfillset(&def);
  sigdelset(&def, SIGKILL);
  sigdelset(&def, SIGSTOP);
  int e = posix_spawnattr_setflags(at, flags);
  if (e == 0)
    e = posix_spawnattr_setsigmask(at, mask);
  if (e == 0)
    e = posix_spawnattr_setsigdefault(at, &def);
  return e ? e : posix_spawnattr_setpgroup(at, 0);
}

static int spawn_now(const mp_plat_child_spec *s, const sigset_t *mask, pid_t *pid) {
  char exe[4096];
  const char *sh_argv[4] = {"/bin/sh", "-c", s->shell_cmd, NULL};
  const char *const *argv = s->shell_cmd ? sh_argv : s->argv;
  const char *prog = s->shell_cmd ? "/bin/sh" : s->program;
  if (prog == NULL) {
    if (mp_plat_self_exe(exe, sizeof exe) != 0)
      return errno ? errno : ENOENT;
    prog = exe;
  }
  int life = -1;
  if (!MP_LINUX && (s->flags & MP_CHILD_DIE_WITH_PARENT) && s->bootstrap != MP_PLAT_INVALID &&
      (life = mp__lifeline_read_end()) < 0)
    return EMFILE;
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&at);
  int e = add_layout(&fa, s, life);
  if (e == 0 && s->cwd)
    e = posix_spawn_file_actions_addchdir_np(&fa, s->cwd);
  if (e == 0)
    e = setup_attr(s, mask, &at);
  if (e == 0)
    e = posix_spawn(pid, prog, &fa, &at, (char *const *)argv, s->envp ? s->envp : environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  return e;
}

static void run(fork_req *r) {
  if (r->spec)
    r->err = spawn_now(r->spec, &r->mask, &r->pid);
  else
    run_fork(r);
}

static pthread_mutex_t fk_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fk_cv = PTHREAD_COND_INITIALIZER;
static fork_req *fk_queue;
static pid_t fk_owner; /* the process whose forker runs; a fork child has none */

static void *forker_main(void *unused) {
  (void)unused;
  pthread_mutex_lock(&fk_mu);
  for (;;) {
    while (fk_queue == NULL)
      pthread_cond_wait(&fk_cv, &fk_mu);
    fork_req *r = fk_queue;
    fk_queue = r->next;
    pthread_mutex_unlock(&fk_mu);
    run(r);
    pthread_mutex_lock(&fk_mu);
    r->done = 1;
    pthread_cond_broadcast(&fk_cv);
  }
  return NULL;
}

static void forker_atfork_child(void) {
  pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t fresh_cv = PTHREAD_COND_INITIALIZER;
  fk_mu = fresh;
  fk_cv = fresh_cv;
  fk_queue = NULL;
  fk_owner = 0;
}
static void forker_atfork_prepare(void) { pthread_mutex_lock(&fk_mu); }
static void forker_atfork_parent(void) { pthread_mutex_unlock(&fk_mu); }
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void install_atfork(void) {
  pthread_atfork(forker_atfork_prepare, forker_atfork_parent, forker_atfork_child);
}

/* Runs r on the forker thread, starting it on first use, and waits for the result. */
static int forker_call(fork_req *r) {
  pthread_once(&atfork_once, install_atfork);
  pthread_mutex_lock(&fk_mu);
  int rc = fk_owner == getpid()
               ? 0
               : mp__service_thread(forker_main, NULL, "pthread_create(forker thread)");
  if (rc == 0) {
    fk_owner = getpid();
    r->next = fk_queue;
    fk_queue = r;
    pthread_cond_broadcast(&fk_cv);
    while (!r->done)
      pthread_cond_wait(&fk_cv, &fk_mu);
  }
  pthread_mutex_unlock(&fk_mu);
  return rc;
}

static int spawn_error(int e, const mp_plat_child_spec *s) {
  char what[600];
  const char *prog = s->shell_cmd ? "/bin/sh" : s->program ? s->program : "this program";
  if (s->cwd && access(s->cwd, X_OK) != 0) {
    snprintf(what, sizeof what, "cannot start '%s': working directory '%s'", prog, s->cwd);
    return mp__os_error_code(mp__errno_code(errno), errno, what);
  }
  snprintf(what, sizeof what, "cannot start '%s'", prog);
  return mp__os_error_code(s->program || s->shell_cmd ? mp__errno_code(e) : MP_ECHILD, e, what);
}

/* Runs r, on the forker thread if asked, and tracks its child. A child that cannot be tracked
 * is killed and reaped here, so it neither runs on nor stays. */
static int start(fork_req *r, int on_forker, mp_plat_child *c) {
  memset(c, 0, sizeof *c);
  c->wait = c->job = MP_PLAT_INVALID;
  if (r->spec && r->spec->npass > 256)
    return mp_set_error(MP_EINVAL, "a child can receive at most 256 handles, not %zu",
                        r->spec->npass);
  pthread_sigmask(SIG_SETMASK, NULL, &r->mask);
  int rc = on_forker ? forker_call(r) : (run(r), 0);
  if (rc == 0 && r->err)
    rc = r->spec ? spawn_error(r->err, r->spec) : mp__os_error_code(MP_EOS, r->err, "fork");
  if (rc == 0 && (rc = mp__track(c, r->pid, r->flags, -1)) != 0) {
    kill(r->pid, SIGKILL);
    while (waitpid(r->pid, NULL, 0) < 0 && errno == EINTR) {
    }
  }
  return rc;
}

int mp_plat_child_fork(mp_plat_child *c, int flags, const mp_plat_handle *keep, size_t nkeep,
                       int (*child_fn)(void *), void *ctx) {
  fork_req r = {.flags = flags, .keep = keep, .nkeep = nkeep, .child_fn = child_fn, .ctx = ctx};
  return start(&r, 1, c);
}

int mp_plat_child_spawn(const mp_plat_child_spec *s, mp_plat_child *c) {
  fork_req r = {.spec = s, .flags = s->flags};
  /* Only a child that must die with us needs the long-lived forker thread. */
  return start(&r, (s->flags & MP_CHILD_DIE_WITH_PARENT) != 0, c);
}

/* ---- waiting and signalling --------------------------------------------------------------- */

static int decode_status(int st) {
  if (WIFEXITED(st))
    return WEXITSTATUS(st);
  if (WIFSIGNALED(st))
    return -WTERMSIG(st);
  return -1;
}

int mp__wait_readable(int fd, int timeout_ms) {
  struct pollfd pfd = {fd, POLLIN, 0};
  uint64_t deadline =
      mp_plat_monotonic_ns() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000u;
  for (;;) {
    int left = timeout_ms;
    if (timeout_ms > 0) {
      uint64_t now = mp_plat_monotonic_ns();
      left = now >= deadline ? 0 : (int)((deadline - now + 999999u) / 1000000u);
    }
    int n = poll(&pfd, 1, left);
    if (n > 0)
      return 0;
    if (n == 0)
      return MP_ETIMEDOUT;
    if (errno != EINTR)
      return mp__os_error("poll(child)");
  }
}

/* Collects the status: at once when the wait handle said the child exited, else (WNOHANG)
 * if it has exited. */
static int collect(mp_plat_child *c, int nohang) {
  int st = 0;
  if (c->backend == WAIT_SERVED) {
    /* A server that went away killed its children as it went (they die with it). */
    c->status = mp__served_status((int)c->wait, &st) == 0 ? decode_status(st) : -MP_SIG_KILL;
    c->reaped = 1;
    return 0;
  }
  pid_t r;
  while ((r = waitpid((pid_t)c->pid, &st, nohang)) < 0 && errno == EINTR) {
  }
  if (r == 0)
    return MP_ETIMEDOUT;
  int e = errno;
  c->reaped = 1; /* the wait handle stays open (and readable) for mp_wait until release */
  if (c->backend == WAIT_THREAD) { /* its watcher has woken (the child is gone): its byte */
    mp__wait_readable((int)c->wait, MP_FOREVER);
    close((int)c->job);
    c->job = MP_PLAT_INVALID;
  }
  if (r < 0) /* someone else (SIGCHLD ignored, waitpid(-1)) took the child */
    return mp__os_error_code(MP_ECHILD, e, "waitpid: the child was reaped elsewhere");
  c->status = decode_status(st);
  return 0;
}

int mp_plat_child_wait(mp_plat_child *c, int timeout_ms) {
  if (c->reaped)
    return 0;
  if (c->wait == MP_PLAT_INVALID)
    return mp_set_error(MP_ESTATE, "the child %lld is not tracked", (long long)c->pid);
  /* Asked first: an exited child is collected now, not when its watcher thread runs. */
  int rc = c->backend == WAIT_SERVED ? MP_ETIMEDOUT : collect(c, WNOHANG);
  if (rc == MP_ETIMEDOUT && (rc = mp__wait_readable((int)c->wait, timeout_ms)) == 0)
    rc = collect(c, 0); /* the handle is ready: the child has exited */
  return rc;
}

int mp_plat_child_signal(mp_plat_child *c, int sig, int tree) {
  int s = sig == MP_SIG_KILL ? SIGKILL : SIGTERM;
  /* The group outlives its leader while grandchildren are in it, so a tree signal still
   * applies after the child itself was reaped. */
  if (tree && (c->flags & (MP_CHILD_NEW_GROUP | MP_CHILD_DETACHED))) {
    if (killpg((pid_t)c->pid, s) != 0 && errno != ESRCH && errno != EPERM)
      return mp__os_error("killpg");
    return 0;
  }
  if (c->reaped || c->wait == MP_PLAT_INVALID)
    return 0; /* the pid may belong to someone else by now */
  int e;
  if (c->backend == WAIT_SERVED)
    e = mp__served_signal((int)c->wait, s);
#if MP_LINUX
  else if (c->backend == WAIT_PIDFD)
    e = syscall(SYS_pidfd_send_signal, (int)c->wait, s, NULL, 0) == 0 ? 0 : errno;
#endif
  else /* not reaped: still our child's pid, a zombie at worst */
    e = kill((pid_t)c->pid, s) == 0 ? 0 : errno;
  if (e != 0 && e != ESRCH)
    return mp__os_error_code(MP_EOS, e, "signalling the child");
  return 0;
}

void mp_plat_child_release(mp_plat_child *c) {
  if (c->wait != MP_PLAT_INVALID)
    close((int)c->wait);
  c->wait = MP_PLAT_INVALID; /* an unreaped child's watcher keeps its end (job): it writes yet */
}

/* ---- in the spawned child ------------------------------------------------------------------ */

int mp_plat_child_mode_allowed(void) {
#if MP_LINUX
  int secure = getauxval(AT_SECURE) != 0;
#else
  int secure = getuid() != geteuid() || getgid() != getegid();
#endif
  if (secure)
    return mp_set_error(MP_EPERM, "refusing to run as a multiproc child in a setuid/setgid "
                                  "program (AT_SECURE)");
  return 0;
}

/* The bootstrap descriptor must be a socket whose peer is the parent named by the marker
 * and is the process that started this one; in a fork server's child the server started
 * it, but the client made the socket pair, so the peer is still the client. */
int mp_plat_bootstrap_handle(int64_t parent_pid, int64_t value, mp_plat_handle *out) {
  int fd = (int)value;
  pid_t ppid = getppid();
  if ((pid_t)parent_pid != ppid && (mp__served_by == 0 || ppid != mp__served_by))
    return mp_set_error(MP_EPERM,
                        "bootstrap: parent %lld named by the marker is not this "
                        "process's parent (%lld)",
                        (long long)parent_pid, (long long)ppid);
  if (fcntl(fd, F_GETFD) < 0)
    return mp__os_error("bootstrap: descriptor");
#if MP_LINUX
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    return mp__os_error("bootstrap: descriptor (SO_PEERCRED)");
  if ((int64_t)cred.pid != parent_pid || cred.uid != getuid())
    return mp_set_error(MP_EPERM, "bootstrap: the peer (pid %lld) is not the parent %lld",
                        (long long)cred.pid, (long long)parent_pid);
#else
  int type = 0;
  socklen_t len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
    return mp__os_error("bootstrap: descriptor is not a socket");
#endif
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  *out = fd;
  return 0;
}

void mp_plat_child_seal(const mp_plat_handle *h, size_t n) {
  for (size_t i = 0; i < n; i++)
    fcntl((int)h[i], F_SETFD, fcntl((int)h[i], F_GETFD) | FD_CLOEXEC);
}

void mp_plat_child_setup(int64_t parent_pid, int die) {
  if (!die)
    return;
  int life = MP_LINUX ? -1 : MP_BOOT_FD + 1; /* the layout of add_layout */
  if (life >= 0)
    fcntl(life, F_SETFD, FD_CLOEXEC);
  mp__die_with_parent((pid_t)parent_pid, life);
}

/* ---- identity of this program -------------------------------------------------------------- */

static char argv0_path[4096];

void mp_plat_note_argv0(const char *argv0) {
  if (argv0 == NULL || argv0_path[0] || strchr(argv0, '/') == NULL)
    return;
  if (realpath(argv0, argv0_path) == NULL)
    argv0_path[0] = '\0';
}

int mp_plat_self_exe(char *buf, size_t size) {
#if MP_LINUX
  ssize_t n = readlink("/proc/self/exe", buf, size - 1);
  if (n < 0)
    return mp__os_error("readlink(/proc/self/exe)");
  buf[n] = '\0';
  return 0;
#else
  if (argv0_path[0] == '\0' || strlen(argv0_path) >= size)
    return mp_set_error(MP_ENOTSUP, "this program's own path is unknown: call mp_init(&argc, "
                                    "&argv) with argv[0] holding a path");
  strcpy(buf, argv0_path);
  return 0;
#endif
}

int mp_plat_started_as_child(void) {
#if MP_LINUX
  char buf[8192];
  int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
  ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
  if (fd >= 0)
    close(fd);
  if (n <= 0)
    return 0;
  buf[n] = '\0';
  size_t first = strlen(buf) + 1; /* the marker counts only as argv[1] */
  return (ssize_t)first < n && strncmp(buf + first, MP_CHILD_MARKER, strlen(MP_CHILD_MARKER)) == 0;
#else
  return 0; /* no portable way to read the command line before mp_init */
#endif
}

void mp_plat_exit(int code) {
  mp_plat_flush_stdio();
  _exit(code);
}
