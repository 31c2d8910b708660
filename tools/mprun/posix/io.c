/* Raw input and output, and temporary files, on POSIX. Input is read with read(2), not
 * stdio, so a thread blocked on standard input holds no stdio lock that another thread
 * (or the library, flushing before a fork) could wait for. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../sys.h"
#include "multiproc.h"

static int os_error(const char *what, const char *path) {
  int e = errno;
  int code = e == ENOENT || e == ENOTDIR ? MP_ENOENT
             : e == EACCES || e == EPERM ? MP_EPERM
                                         : MP_EOS;
  if (path)
    return mp_set_error(code, "%s '%s': %s", what, path, strerror(e));
  return mp_set_error(code, "%s: %s", what, strerror(e));
}

int sys_write_all(int stream, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t w = write(stream, p, len);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && errno == EPIPE)
      return mp_set_error(MP_EBROKEN, "%s is closed", stream == 1 ? "stdout" : "stderr");
    if (w < 0)
      return os_error(stream == 1 ? "write to stdout" : "write to stderr", NULL);
    p += w;
    len -= (size_t)w;
  }
  return 0;
}

/* ---- input --------------------------------------------------------------------------- */

struct sys_in {
  int fd;
  int owned;
};

int sys_in_open(sys_in **in, const char *path) {
  sys_in *s = malloc(sizeof *s);
  if (s == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory");
  s->fd = 0;
  s->owned = path != NULL;
  if (path && (s->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
    free(s);
    return os_error("cannot open", path);
  }
  *in = s;
  return 0;
}

int sys_in_read(sys_in *in, void *buf, size_t cap, size_t *n) {
  for (;;) {
    ssize_t r = read(in->fd, buf, cap);
    if (r >= 0) {
      *n = (size_t)r;
      return 0;
    }
    if (errno != EINTR)
      return os_error("read input", NULL);
  }
}

void sys_in_close(sys_in *in) {
  if (in == NULL)
    return;
  if (in->owned)
    close(in->fd);
  free(in);
}

FILE *sys_fopen(const char *path, const char *mode) {
  FILE *f = fopen(path, mode);
  if (f == NULL)
    os_error("cannot open", path);
  return f;
}

/* ---- temporary files ----------------------------------------------------------------- */

struct sys_tmp {
  int fd;
};

/* O_TMPFILE gives a file that never had a name; elsewhere mkstemp and unlink at once. */
static int open_unnamed(const char *dir) {
  int fd;
#ifdef O_TMPFILE
  if ((fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600)) >= 0)
    return fd;
#endif
  size_t n = strlen(dir);
  char *name = malloc(n + 20);
  if (name == NULL) {
    errno = ENOMEM;
    return -1;
  }
  memcpy(name, dir, n);
  memcpy(name + n, "/mprun-XXXXXX", 14);
  fd = mkostemp(name, O_CLOEXEC);
  if (fd >= 0)
    unlink(name);
  free(name);
  return fd;
}

int sys_tmp_create(sys_tmp **t) {
  const char *dir = getenv("TMPDIR");
  if (dir == NULL || dir[0] == '\0')
    dir = "/tmp";
  sys_tmp *s = malloc(sizeof *s);
  if (s == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory");
  if ((s->fd = open_unnamed(dir)) < 0) {
    free(s);
    return os_error("cannot create a temporary file in", dir);
  }
  *t = s;
  return 0;
}

intptr_t sys_tmp_handle(const sys_tmp *t) { return t->fd; }

int sys_tmp_size(sys_tmp *t, uint64_t *size) {
  struct stat st;
  if (fstat(t->fd, &st) != 0)
    return os_error("fstat (temporary file)", NULL);
  *size = (uint64_t)st.st_size;
  return 0;
}

int sys_tmp_read_at(sys_tmp *t, uint64_t off, void *buf, size_t cap, size_t *n) {
  for (;;) {
    ssize_t r = pread(t->fd, buf, cap, (off_t)off);
    if (r >= 0) {
      *n = (size_t)r;
      return 0;
    }
    if (errno != EINTR)
      return os_error("read (temporary file)", NULL);
  }
}

int sys_tmp_append(sys_tmp *t, const void *buf, size_t len) {
  const char *p = buf;
  if (lseek(t->fd, 0, SEEK_END) < 0)
    return os_error("lseek (temporary file)", NULL);
  while (len > 0) {
    ssize_t w = write(t->fd, p, len);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return os_error("write (temporary file)", NULL);
    p += w;
    len -= (size_t)w;
  }
  return 0;
}

int sys_tmp_reset(sys_tmp *t) {
  /* The child shared our file offset; rewind it as well as emptying the file. */
  if (ftruncate(t->fd, 0) != 0 || lseek(t->fd, 0, SEEK_SET) < 0)
    return os_error("truncate (temporary file)", NULL);
  return 0;
}

void sys_tmp_free(sys_tmp *t) {
  if (t == NULL)
    return;
  close(t->fd);
  free(t);
}
