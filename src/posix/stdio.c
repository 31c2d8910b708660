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

/* __fpending reads the buffer's fill without the stream's lock: an empty stream is not
 * written to, which saves a fork child (and its parent) a copy-on-write fault. */
void mp_plat_flush_stdio(void) {
  FILE *streams[2] = {stdout, stderr};
  for (int i = 0; i < 2; i++)
#if MP_HAVE_FPENDING
    if (__fpending(streams[i]) > 0)
#endif
      fflush(streams[i]);
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
    snprintf(cand, dlen + nlen + 3, "%.*s/%s", dlen ? (int)dlen : 1, dlen ? dir : ".", name);
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

int mp_plat_stdio_pipe(int index, mp_plat_handle *child, mp_plat_handle *parent) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0)
    return mp__os_error("pipe2");
  *parent = index == 0 ? fds[1] : fds[0];
  *child = index == 0 ? fds[0] : fds[1];
  fcntl((int)*parent, F_SETFL, fcntl((int)*parent, F_GETFL) | O_NONBLOCK);
  return 0;
}

int mp_plat_stdio_file(const char *path, int index, int append, mp_plat_handle *child) {
  int flags = index == 0 ? O_RDONLY : O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC);
  int fd = open(path ? path : "/dev/null", (path ? flags : O_RDWR) | O_CLOEXEC, 0666);
  if (fd < 0) {
    int e = errno;
    return mp__os_error_code(mp__errno_code(e), e, path ? path : "/dev/null");
  }
  *child = fd;
  return 0;
}

mp_plat_handle mp_plat_stdio_parent(int index) { return index; }

int mp_plat_stdio_check(mp_plat_handle h, int index) {
  if (fcntl((int)h, F_GETFD) < 0)
    return mp_set_error(MP_EINVAL, "std stream %d: handle %d is not an open fd", index, (int)h);
  return 0;
}

/* ---- moving bytes -------------------------------------------------------------------- */

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

/* Writes what the ready stdin pipe takes of the input. A write to a pipe whose reader is gone
 * raises SIGPIPE; keep it away from the process by blocking it in this thread and consuming
 * the one the write caused, unless one was pending already. */
static int pump_write(mp_plat_handle *h, const char *in, size_t in_len, size_t *in_off, int flags) {
  sigset_t sigpipe, old, pending;
  struct timespec zero = {0, 0};
  sigemptyset(&sigpipe);
  sigaddset(&sigpipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &sigpipe, &old);
  sigpending(&pending);
  ssize_t w = write((int)*h, in + *in_off, in_len - *in_off > CHUNK ? CHUNK : in_len - *in_off);
  int e = errno;
  while (w < 0 && e == EPIPE && !sigismember(&pending, SIGPIPE) &&
         sigtimedwait(&sigpipe, NULL, &zero) < 0 && errno == EINTR) {
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (w >= 0)
    *in_off += (size_t)w;
  else if (e == EPIPE && (flags & MP_PUMP_KEEP_STDIN))
    return MP_EBROKEN;
  else if (e == EPIPE)
    close_pipe(h); /* a child that stopped reading just ends the input */
  else if (e != EAGAIN && e != EINTR)
    return mp__os_error_code(MP_EOS, e, "write to the child");
  return 0;
}

/* One poll of the pipes with work left and the I/O they are ready for: 0, 1 when no pipe has
 * work left, MP_ETIMEDOUT (late: the deadline passed on an earlier round), or an error. */
static int pump_round(mp_plat_handle pipes[3], const char *in, size_t in_len, size_t *in_off,
                      mp_plat_outbuf *bufs[3], int64_t deadline, int late, int flags) {
  struct pollfd pfd[3];
  int idx[3], n = 0, rc = 0;
  for (int i = 0; i < 3; i++) {
    if (pipes[i] == MP_PLAT_INVALID || (i == 0 && *in_off >= in_len))
      continue;
    pfd[n] = (struct pollfd){(int)pipes[i], (short)(i == 0 ? POLLOUT : POLLIN), 0};
    idx[n++] = i;
  }
  if (n == 0)
    return 1;
  /* A child that never stops writing must not hold us past the deadline. */
  int ms = mp__ms_until(deadline), r = late && ms == 0 ? 0 : poll(pfd, (nfds_t)n, ms);
  if (r <= 0)
    return r == 0 ? MP_ETIMEDOUT : errno == EINTR ? 0 : mp__os_error("poll");
  for (int k = 0; k < n && rc == 0; k++) {
    int i = idx[k];
    if (pfd[k].revents != 0)
      rc =
          i != 0 ? pump_read(&pipes[i], bufs[i]) : pump_write(&pipes[0], in, in_len, in_off, flags);
  }
  return rc;
}

int mp_plat_pipe_pump(mp_plat_handle pipes[3], const void *in, size_t in_len, size_t *in_off,
                      mp_plat_outbuf *out, mp_plat_outbuf *err, int64_t deadline, int flags) {
  mp_plat_outbuf *bufs[3] = {NULL, out, err};
  int rc;
  for (int rounds = 0;; rounds++) {
    if (pipes[0] != MP_PLAT_INVALID && *in_off >= in_len && !(flags & MP_PUMP_KEEP_STDIN))
      close_pipe(&pipes[0]);
    rc = pump_round(pipes, in, in_len, in_off, bufs, deadline, rounds > 0, flags);
    if (rc != 0 || (flags & MP_PUMP_FIRST))
      break;
  }
  return rc == 1 ? 0 : rc;
}

/* ---- environment --------------------------------------------------------------------- */

/* The strings are borrowed, not copied: like environ itself, they hold while no other
 * thread changes the environment (setenv is not thread-safe in POSIX either). */
int mp_plat_environ(char ***env) {
  size_t n = 0;
  while (environ[n])
    n++;
  if ((*env = malloc((n + 1) * sizeof **env)) == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory copying the environment");
  memcpy(*env, environ, (n + 1) * sizeof **env);
  return 0;
}

int mp_plat_env_icase(void) { return 0; }
