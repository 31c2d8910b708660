/* POSIX backend for a child's standard streams: pipes, files and /dev/null for the child,
 * poll-driven reads, writes and pumping for the parent, PATH search and the environment. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../platform.h"
#include "util.h"

#if defined(__has_include)
#  if __has_include(<stdio_ext.h>)
#    include <stdio_ext.h> /* __fpending: glibc, musl, Solaris */
#    define MP_HAVE_FPENDING 1
#  endif
#endif

extern char **environ;

#define CHUNK 65536

/* ---- small helpers ------------------------------------------------------------------- */

/* __fpending reads the buffer's fill without the stream's lock: an empty stream is not
 * written to, which saves a fork child (and its parent) a copy-on-write fault. */
static void flush_pending(FILE *f) {
#if MP_HAVE_FPENDING
  if (__fpending(f) == 0)
    return;
#endif
  fflush(f);
}

void mp_plat_flush_stdio(void) {
  flush_pending(stdout);
  flush_pending(stderr);
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

int mp_plat_find_program(const char *name, const char *path, int search, char **found) {
  if (search && strchr(name, '/') == NULL)
    return find_in_path(name, path, found);
  if ((*found = strdup(name)) == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory for the program's name");
  return 0;
}

/* ---- the child's standard streams ---------------------------------------------------- */

static int open_file(const struct mp_stdio *s, int index, int *fd) {
  int flags = O_CLOEXEC | (index == 0 ? O_RDONLY : O_WRONLY | O_CREAT);
  if (index != 0)
    flags |= s->append ? O_APPEND : O_TRUNC;
  *fd = open(s->path, flags, 0666);
  if (*fd < 0) {
    int e = errno;
    return mp__os_error_code(mp__errno_code(e), e, s->path);
  }
  return 0;
}

static int make_pipe(int index, mp_plat_handle *child, mp_plat_handle *parent) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0)
    return mp__os_error("pipe2");
  *parent = index == 0 ? fds[1] : fds[0];
  *child = index == 0 ? fds[0] : fds[1];
  fcntl((int)*parent, F_SETFL, fcntl((int)*parent, F_GETFL) | O_NONBLOCK);
  return 0;
}

int mp_plat_stdio_open(const struct mp_stdio *s, int index, mp_plat_handle *child,
                       mp_plat_handle *parent) {
  int fd = -1;
  *child = *parent = MP_PLAT_INVALID;
  switch (s->mode) {
  case MP_STDIO_PIPE: return make_pipe(index, child, parent);
  case MP_STDIO_DEVNULL:
    if ((fd = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0)
      return mp__os_error("open /dev/null");
    *child = fd;
    return 0;
  case MP_STDIO_FILE: {
    int rc = open_file(s, index, &fd);
    *child = fd;
    return rc;
  }
  default:
    return mp_set_error(MP_EINVAL, "std stream %d: mode %d opens nothing", index, (int)s->mode);
  }
}

mp_plat_handle mp_plat_stdio_parent(int index) { return index; }

int mp_plat_stdio_check(mp_plat_handle h, int index) {
  if (fcntl((int)h, F_GETFD) < 0)
    return mp_set_error(MP_EINVAL, "std stream %d: handle %d is not an open fd", index, (int)h);
  return 0;
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

int mp_plat_pipe_read(mp_plat_handle h, void *buf, size_t cap, size_t *n, int timeout_ms) {
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

int mp_plat_pipe_write(mp_plat_handle h, const void *buf, size_t len, size_t *written,
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

void mp_plat_pipe_close(mp_plat_handle h) {
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

int mp_plat_pipe_pump(mp_plat_handle pipes[3], const void *in, size_t in_len, size_t *in_off,
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
