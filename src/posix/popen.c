/* POSIX backend for subprocesses: posix_spawn (glibc's runs the child with CLONE_VFORK and
 * reports exec failure as its return value, so no error pipe is needed), pidfd waits,
 * poll-driven pipe pumping, process-group kills. No SIGCHLD handler: waitpid only our pids. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../platform.h"

extern char **environ;

#define CHUNK 65536

/* ---- small helpers ------------------------------------------------------------------- */

static int code_for_errno(int e) {
  switch (e) {
  case ENOENT:
  case ENOTDIR: return MP_ENOENT;
  case EACCES:
  case EPERM: return MP_EPERM;
  case ENOMEM: return MP_ENOMEM;
  default: return MP_EOS;
  }
}

static int ms_left(uint64_t deadline_ns, int forever) {
  if (forever)
    return -1;
  uint64_t now = mp_plat_monotonic_ns();
  if (now >= deadline_ns)
    return 0;
  uint64_t ms = (deadline_ns - now + 999999u) / 1000000u;
  return ms > 0x7fffffff ? 0x7fffffff : (int)ms;
}

static uint64_t deadline_after(int timeout_ms) {
  return mp_plat_monotonic_ns() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000u;
}

/* A write to a pipe whose reader is gone raises SIGPIPE; keep it away from the process by
 * blocking it in this thread and consuming the one our write caused. */
typedef struct sigpipe_guard {
  sigset_t old;
  int was_pending;
} sigpipe_guard;

static void sigpipe_block(sigpipe_guard *g) {
  sigset_t set, pending;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, &g->old);
  sigpending(&pending);
  g->was_pending = sigismember(&pending, SIGPIPE);
}

static void sigpipe_restore(sigpipe_guard *g, int got_epipe) {
  if (got_epipe && !g->was_pending) {
    sigset_t set;
    struct timespec zero = {0, 0};
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* ---- finding the program ------------------------------------------------------------- */

/* Looks name up in the directories of path; *found is malloc'd. */
static int find_in_path(const char *name, const char *path, char **found) {
  int saw_denied = 0;
  char fallback[256];
  if (path == NULL && (path = getenv("PATH")) == NULL) {
    size_t n = confstr(_CS_PATH, fallback, sizeof fallback);
    path = n > 0 && n <= sizeof fallback ? fallback : "/bin:/usr/bin";
  }
  size_t nlen = strlen(name);
  for (const char *dir = path;; dir++) {
    const char *end = strchr(dir, ':');
    size_t dlen = end ? (size_t)(end - dir) : strlen(dir);
    char *cand = malloc(dlen + nlen + 3);
    if (cand == NULL)
      return mp_set_error(MP_ENOMEM, "out of memory searching PATH");
    /* An empty PATH entry means the current directory, as in execvp. */
    if (dlen == 0)
      memcpy(cand, ".", 2), dlen = 1;
    else
      memcpy(cand, dir, dlen);
    cand[dlen] = '/';
    memcpy(cand + dlen + 1, name, nlen + 1);
    struct stat st;
    if (stat(cand, &st) == 0 && S_ISREG(st.st_mode)) {
      if (access(cand, X_OK) == 0) {
        *found = cand;
        return 0;
      }
      saw_denied = 1;
    }
    free(cand);
    if (end == NULL)
      break;
    dir = end;
  }
  return mp_set_error(saw_denied ? MP_EPERM : MP_ENOENT, "'%s' %s in PATH \"%s\"", name,
                      saw_denied ? "is not executable" : "not found", path);
}

/* ---- the child's standard streams ---------------------------------------------------- */

typedef struct stdio_plan {
  int src[3];         /* the fd the child gets as 0, 1, 2 (-1: inherit unchanged) */
  int close_after[6]; /* fds opened only for this spawn */
  int nclose;
} stdio_plan;

static int open_file(const struct mp_stdio *s, int index, int *fd) {
  int flags = O_CLOEXEC | (index == 0 ? O_RDONLY : O_WRONLY | O_CREAT);
  if (index != 0)
    flags |= s->append ? O_APPEND : O_TRUNC;
  *fd = open(s->path, flags, 0666);
  if (*fd < 0) {
    int e = errno;
    return mp__os_error_code(code_for_errno(e), e, s->path);
  }
  return 0;
}

static int make_pipe(mp_plat_child *c, int index, int *child_end) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0)
    return mp__os_error("pipe2");
  int parent = index == 0 ? fds[1] : fds[0];
  *child_end = index == 0 ? fds[0] : fds[1];
  fcntl(parent, F_SETFL, fcntl(parent, F_GETFL) | O_NONBLOCK);
  c->pipes[index] = parent;
  return 0;
}

static int plan_one(const mp_plat_spawn *spec, mp_plat_child *c, stdio_plan *pl, int i) {
  const struct mp_stdio *s = spec->stdio[i];
  int fd = -1, rc = 0, owned = 1;
  switch (s->mode) {
  case MP_STDIO_INHERIT: pl->src[i] = -1; return 0;
  case MP_STDIO_PIPE: rc = make_pipe(c, i, &fd); break;
  case MP_STDIO_DEVNULL:
    if ((fd = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0)
      rc = mp__os_error("open /dev/null");
    break;
  case MP_STDIO_FILE: rc = open_file(s, i, &fd); break;
  case MP_STDIO_HANDLE:
    fd = (int)s->handle;
    owned = 0;
    if (fcntl(fd, F_GETFD) < 0)
      return mp_set_error(MP_EINVAL, "std stream %d: handle %d is not an open fd", i, fd);
    break;
  case MP_STDIO_STDOUT:
    pl->src[i] = 1; /* dup2(1, 2) after stdout is in place */
    return 0;
  }
  if (rc != 0)
    return rc;
  if (owned)
    pl->close_after[pl->nclose++] = fd;
  /* A source among 0..2 could be overwritten by an earlier dup2: move it out of the way. */
  if (fd < 3 && fd != i) {
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (moved < 0)
      return mp__os_error("fcntl(F_DUPFD_CLOEXEC)");
    pl->close_after[pl->nclose++] = moved;
    fd = moved;
  }
  pl->src[i] = fd;
  return 0;
}

static void close_parent_pipes(mp_plat_child *c) {
  for (int i = 0; i < 3; i++) {
    if (c->pipes[i] >= 0)
      close((int)c->pipes[i]);
    c->pipes[i] = MP_PLAT_INVALID;
  }
}

/* ---- spawn --------------------------------------------------------------------------- */

static int setup_actions(const mp_plat_spawn *spec, const stdio_plan *pl,
                         posix_spawn_file_actions_t *fa) {
  int e = 0;
  for (int i = 0; i < 3 && e == 0; i++)
    if (pl->src[i] >= 0)
      e = posix_spawn_file_actions_adddup2(fa, pl->src[i], i);
  /* Nothing but 0..2 reaches the program, even fds someone opened without O_CLOEXEC. */
  if (e == 0)
    e = posix_spawn_file_actions_addclosefrom_np(fa, 3);
  if (e == 0 && spec->cwd)
    e = posix_spawn_file_actions_addchdir_np(fa, spec->cwd);
  return e;
}

static int setup_attr(const mp_plat_spawn *spec, posix_spawnattr_t *at) {
  sigset_t none, all;
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  sigemptyset(&none);
  sigfillset(&all);
  if (spec->detached)
    flags |= POSIX_SPAWN_SETSID;
  else if (spec->new_group)
    flags |= POSIX_SPAWN_SETPGROUP;
  int e = posix_spawnattr_setflags(at, flags);
  if (e == 0)
    e = posix_spawnattr_setsigmask(at, &none);
  /* The program starts with default dispositions (e.g. SIGPIPE not ignored). */
  if (e == 0)
    e = posix_spawnattr_setsigdefault(at, &all);
  if (e == 0)
    e = posix_spawnattr_setpgroup(at, 0);
  return e;
}

static int spawn_error(int e, const char *prog, const mp_plat_spawn *spec) {
  char what[512];
  struct stat st;
  if (spec->cwd && (stat(spec->cwd, &st) != 0 || !S_ISDIR(st.st_mode))) {
    snprintf(what, sizeof what, "cannot start '%s': working directory '%s'", prog, spec->cwd);
    return mp__os_error_code(code_for_errno(e), e, what);
  }
  snprintf(what, sizeof what, "cannot start '%s'", prog);
  return mp__os_error_code(code_for_errno(e), e, what);
}

static int do_spawn(const mp_plat_spawn *spec, const char *prog, char *const *argv,
                    const stdio_plan *pl, pid_t *pid) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&at);
  int e = setup_actions(spec, pl, &fa);
  if (e == 0)
    e = setup_attr(spec, &at);
  if (e == 0)
    e = posix_spawn(pid, prog, &fa, &at, argv, spec->envp ? spec->envp : environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  return e == 0 ? 0 : spawn_error(e, prog, spec);
}

int mp_plat_popen_spawn(const mp_plat_spawn *spec, mp_plat_child *c) {
  const char *sh_argv[4] = {"/bin/sh", "-c", spec->shell_cmd, NULL};
  const char *const *argv = spec->shell_cmd ? sh_argv : spec->argv;
  char *found = NULL;
  int rc = 0;
  memset(c, 0, sizeof *c);
  c->proc = c->job = MP_PLAT_INVALID;
  for (int i = 0; i < 3; i++)
    c->pipes[i] = MP_PLAT_INVALID;
  const char *prog = argv[0];
  if (spec->search_path && !spec->shell_cmd && strchr(prog, '/') == NULL) {
    if ((rc = find_in_path(prog, spec->path, &found)) != 0)
      return rc;
    prog = found;
  }
  stdio_plan pl = {{-1, -1, -1}, {0}, 0};
  for (int i = 0; i < 3 && rc == 0; i++)
    rc = plan_one(spec, c, &pl, i);
  pid_t pid = 0;
  if (rc == 0)
    rc = do_spawn(spec, prog, (char *const *)argv, &pl, &pid);
  for (int i = 0; i < pl.nclose; i++)
    close(pl.close_after[i]);
  free(found);
  if (rc != 0) {
    close_parent_pipes(c);
    return rc;
  }
  c->pid = pid;
  c->own_group = spec->detached || spec->new_group;
  /* Safe against pid reuse: the child is ours and not reaped yet. */
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd >= 0) {
    fcntl(pidfd, F_SETFD, FD_CLOEXEC);
    c->proc = pidfd;
  }
  return 0;
}

/* ---- waiting ------------------------------------------------------------------------- */

static void set_status(mp_plat_child *c, int st) {
  c->reaped = 1;
  c->status = WIFSIGNALED(st) ? -WTERMSIG(st) : WEXITSTATUS(st);
  if (c->proc != MP_PLAT_INVALID)
    close((int)c->proc);
  c->proc = MP_PLAT_INVALID;
}

/* One waitpid: 1 reaped, 0 still running, or an error. */
static int reap(mp_plat_child *c, int options) {
  int st;
  pid_t r;
  while ((r = waitpid((pid_t)c->pid, &st, options)) < 0 && errno == EINTR) {
  }
  if (r == (pid_t)c->pid) {
    set_status(c, st);
    return 1;
  }
  if (r == 0)
    return 0;
  int e = errno;
  /* Someone else (SIGCHLD set to SIG_IGN, a waitpid(-1) elsewhere) took our child. */
  c->reaped = 1;
  c->status = 0;
  return mp__os_error_code(MP_ECHILD, e, "waitpid: the child was reaped elsewhere");
}

/* Without a pidfd (kernels before 5.3) there is no fd to sleep on; poll waitpid with a
 * growing pause, as CPython does. */
static int wait_backoff(mp_plat_child *c, int timeout_ms) {
  uint64_t deadline = deadline_after(timeout_ms);
  long pause_us = 500;
  for (;;) {
    int r = reap(c, WNOHANG);
    if (r != 0)
      return r < 0 ? r : 0;
    int left = ms_left(deadline, 0);
    if (left == 0)
      return MP_ETIMEDOUT;
    long us = pause_us < (long)left * 1000 ? pause_us : (long)left * 1000;
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
    pause_us = pause_us * 2 > 50000 ? 50000 : pause_us * 2;
  }
}

int mp_plat_popen_wait(mp_plat_child *c, int timeout_ms) {
  if (c->reaped)
    return 0;
  if (timeout_ms < 0) {
    int r = reap(c, 0);
    return r < 0 ? r : 0;
  }
  if (c->proc == MP_PLAT_INVALID)
    return wait_backoff(c, timeout_ms);
  uint64_t deadline = deadline_after(timeout_ms);
  for (;;) {
    int r = reap(c, WNOHANG);
    if (r != 0)
      return r < 0 ? r : 0;
    int left = ms_left(deadline, 0);
    if (left == 0)
      return MP_ETIMEDOUT;
    struct pollfd pfd = {(int)c->proc, POLLIN, 0};
    if (poll(&pfd, 1, left) < 0 && errno != EINTR)
      return mp__os_error("poll(pidfd)");
  }
}

/* ---- signals ------------------------------------------------------------------------- */

int mp_plat_popen_signal(mp_plat_child *c, int sig, int tree) {
  int s = sig == 9 ? SIGKILL : SIGTERM;
  /* The group outlives its leader while grandchildren are in it, so a tree kill still
   * applies after the child itself was reaped. */
  if (tree && c->own_group) {
    if (killpg((pid_t)c->pid, s) != 0 && errno != ESRCH && errno != EPERM)
      return mp__os_error("killpg");
    return 0;
  }
  /* Once reaped, the pid may belong to someone else: never signal it. */
  if (c->reaped)
    return 0;
  if (kill((pid_t)c->pid, s) != 0 && errno != ESRCH)
    return mp__os_error("kill");
  return 0;
}

/* ---- children freed while running --------------------------------------------------- */

static pthread_mutex_t abandoned_lock = PTHREAD_MUTEX_INITIALIZER;
static pid_t *abandoned;
static size_t n_abandoned, cap_abandoned;

void mp_plat_popen_release(mp_plat_child *c) {
  if (c->proc != MP_PLAT_INVALID)
    close((int)c->proc);
  c->proc = MP_PLAT_INVALID;
  if (c->reaped)
    return;
  pthread_mutex_lock(&abandoned_lock);
  if (n_abandoned == cap_abandoned) {
    size_t cap = cap_abandoned ? cap_abandoned * 2 : 16;
    pid_t *na = realloc(abandoned, cap * sizeof *na);
    if (na != NULL)
      abandoned = na, cap_abandoned = cap;
  }
  if (n_abandoned < cap_abandoned)
    abandoned[n_abandoned++] = (pid_t)c->pid;
  pthread_mutex_unlock(&abandoned_lock);
}

void mp_plat_popen_reap_abandoned(void) {
  pthread_mutex_lock(&abandoned_lock);
  size_t w = 0;
  for (size_t r = 0; r < n_abandoned; r++) {
    int st;
    pid_t got;
    while ((got = waitpid(abandoned[r], &st, WNOHANG)) < 0 && errno == EINTR) {
    }
    if (got == 0)
      abandoned[w++] = abandoned[r]; /* still running: keep it */
  }
  n_abandoned = w;
  if (n_abandoned == 0) {
    free(abandoned);
    abandoned = NULL;
    cap_abandoned = 0;
  }
  pthread_mutex_unlock(&abandoned_lock);
}

/* ---- moving bytes -------------------------------------------------------------------- */

static int wait_fd(int fd, short events, int timeout_ms) {
  struct pollfd pfd = {fd, events, 0};
  uint64_t deadline = deadline_after(timeout_ms);
  for (;;) {
    int r = poll(&pfd, 1, ms_left(deadline, timeout_ms < 0));
    if (r > 0)
      return 0;
    if (r == 0)
      return MP_ETIMEDOUT;
    if (errno != EINTR)
      return mp__os_error("poll");
  }
}

int mp_plat_popen_read(mp_plat_handle h, void *buf, size_t cap, size_t *n, int timeout_ms) {
  uint64_t deadline = deadline_after(timeout_ms);
  for (;;) {
    ssize_t r = read((int)h, buf, cap);
    if (r > 0) {
      *n = (size_t)r;
      return 0;
    }
    if (r == 0)
      return mp_set_error(MP_EEOF, "end of the child's output");
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN)
      return mp__os_error("read from the child");
    int rc = wait_fd((int)h, POLLIN, ms_left(deadline, timeout_ms < 0));
    if (rc != 0)
      return rc == MP_ETIMEDOUT ? mp_set_error(rc, "no output from the child in time") : rc;
  }
}

/* One non-blocking write: bytes written, 0 if the pipe is full, or an error. */
static ssize_t write_some(int fd, const char *buf, size_t len, int *epipe) {
  for (;;) {
    ssize_t r = write(fd, buf, len > CHUNK ? CHUNK : len);
    if (r >= 0)
      return r;
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN)
      return 0;
    if (errno == EPIPE) {
      *epipe = 1;
      return mp_set_error(MP_EBROKEN, "the child closed its stdin");
    }
    return mp__os_error("write to the child");
  }
}

int mp_plat_popen_write(mp_plat_handle h, const void *buf, size_t len, size_t *written,
                        int timeout_ms) {
  uint64_t deadline = deadline_after(timeout_ms);
  sigpipe_guard g;
  int epipe = 0, rc = 0;
  sigpipe_block(&g);
  while (*written < len) {
    ssize_t r = write_some((int)h, (const char *)buf + *written, len - *written, &epipe);
    if (r < 0) {
      rc = (int)r;
      break;
    }
    *written += (size_t)r;
    if (r == 0 && (rc = wait_fd((int)h, POLLOUT, ms_left(deadline, timeout_ms < 0))) != 0) {
      if (rc == MP_ETIMEDOUT)
        mp_set_error(rc, "the child did not read its stdin in time");
      break;
    }
  }
  sigpipe_restore(&g, epipe);
  return rc;
}

void mp_plat_popen_close(mp_plat_handle h) {
  if (h != MP_PLAT_INVALID)
    close((int)h);
}

static void close_pipe(mp_plat_handle *h) {
  close((int)*h);
  *h = MP_PLAT_INVALID;
}

/* Reads what one ready output pipe holds into b; closes it at end of file. */
static int pump_read(mp_plat_handle *h, mp_plat_outbuf *b) {
  char *dst = mp__outbuf_reserve(b, CHUNK);
  if (dst == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory for the child's output");
  ssize_t r = read((int)*h, dst, CHUNK);
  if (r > 0)
    b->len += (size_t)r;
  else if (r == 0)
    close_pipe(h);
  else if (errno != EAGAIN && errno != EINTR)
    return mp__os_error("read from the child");
  return 0;
}

static int pump_round(mp_plat_handle pipes[3], const char *in, size_t in_len, size_t *in_off,
                      mp_plat_outbuf *bufs[3], int wait_ms, int *epipe) {
  struct pollfd pfd[3];
  int idx[3], n = 0;
  for (int i = 0; i < 3; i++) {
    if (pipes[i] == MP_PLAT_INVALID)
      continue;
    pfd[n] = (struct pollfd){(int)pipes[i], (short)(i == 0 ? POLLOUT : POLLIN), 0};
    idx[n++] = i;
  }
  if (n == 0)
    return 1;
  int r = poll(pfd, (nfds_t)n, wait_ms);
  if (r < 0)
    return errno == EINTR ? 0 : mp__os_error("poll");
  if (r == 0)
    return MP_ETIMEDOUT;
  for (int k = 0; k < n; k++) {
    int i = idx[k], rc = 0;
    if (pfd[k].revents == 0)
      continue;
    if (i != 0) {
      rc = pump_read(&pipes[i], bufs[i]);
    } else {
      ssize_t w = write_some((int)pipes[0], in + *in_off, in_len - *in_off, epipe);
      if (w >= 0)
        *in_off += (size_t)w;
      if (w < 0 && w != MP_EBROKEN)
        rc = (int)w;
      if (w == MP_EBROKEN || *in_off == in_len)
        close_pipe(&pipes[0]); /* a child that stopped reading just ends the input */
    }
    if (rc != 0)
      return rc;
  }
  return 0;
}

int mp_plat_popen_pump(mp_plat_handle pipes[3], const void *in, size_t in_len, size_t *in_off,
                       mp_plat_outbuf *out, mp_plat_outbuf *err, int timeout_ms) {
  mp_plat_outbuf *bufs[3] = {NULL, out, err};
  uint64_t deadline = deadline_after(timeout_ms);
  sigpipe_guard g;
  int epipe = 0, rc;
  sigpipe_block(&g);
  for (int rounds = 0;; rounds++) {
    if (pipes[0] != MP_PLAT_INVALID && *in_off >= in_len)
      close_pipe(&pipes[0]);
    /* A child that never stops writing must not hold us past the deadline. */
    int open =
        pipes[0] != MP_PLAT_INVALID || pipes[1] != MP_PLAT_INVALID || pipes[2] != MP_PLAT_INVALID;
    if (open && rounds > 0 && timeout_ms >= 0 && ms_left(deadline, 0) == 0) {
      rc = MP_ETIMEDOUT;
      break;
    }
    rc = pump_round(pipes, in, in_len, in_off, bufs, ms_left(deadline, timeout_ms < 0), &epipe);
    if (rc != 0)
      break;
  }
  sigpipe_restore(&g, epipe);
  return rc == 1 ? 0 : rc;
}

/* ---- environment --------------------------------------------------------------------- */

int mp_plat_environ(char ***env) {
  size_t n = 0;
  while (environ[n])
    n++;
  char **copy = calloc(n + 1, sizeof *copy);
  if (copy == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory copying the environment");
  for (size_t i = 0; i < n; i++) {
    if ((copy[i] = strdup(environ[i])) == NULL) {
      for (size_t j = 0; j < i; j++)
        free(copy[j]);
      free(copy);
      return mp_set_error(MP_ENOMEM, "out of memory copying the environment");
    }
  }
  *env = copy;
  return 0;
}

int mp_plat_env_icase(void) { return 0; }
