/* Raw input and output, and temporary files, on Windows: wide-character paths, ReadFile /
 * WriteFile on the standard handles, and delete-on-close temporary files that children
 * write to through the duplicate the library hands them. */
#include <windows.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "../sys.h"
#include "multiproc.h"

static wchar_t *to_wide(const char *s) {
  int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, NULL, 0);
  if (n <= 0)
    return NULL;
  wchar_t *w = malloc((size_t)n * sizeof *w);
  if (w != NULL)
    MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, w, n);
  return w;
}

static int os_error(const char *what, const char *path) {
  DWORD e = GetLastError();
  int code = e == ERROR_FILE_NOT_FOUND || e == ERROR_PATH_NOT_FOUND ? MP_ENOENT
             : e == ERROR_ACCESS_DENIED                             ? MP_EPERM
                                                                    : MP_EOS;
  if (path)
    return mp_set_error(code, "%s '%s' (Windows error %lu)", what, path, (unsigned long)e);
  return mp_set_error(code, "%s (Windows error %lu)", what, (unsigned long)e);
}

static int is_broken(DWORD e) {
  return e == ERROR_BROKEN_PIPE || e == ERROR_NO_DATA || e == ERROR_PIPE_NOT_CONNECTED;
}

int sys_write_all(int stream, const void *buf, size_t len) {
  HANDLE h = GetStdHandle(stream == 1 ? STD_OUTPUT_HANDLE : STD_ERROR_HANDLE);
  const char *p = buf;
  if (h == NULL || h == INVALID_HANDLE_VALUE)
    return 0; /* no such stream (a GUI parent gave none): nothing to write to */
  while (len > 0) {
    DWORD chunk = len > 65536 ? 65536 : (DWORD)len, done = 0;
    if (!WriteFile(h, p, chunk, &done, NULL)) {
      if (is_broken(GetLastError()))
        return mp_set_error(MP_EBROKEN, "%s is closed", stream == 1 ? "stdout" : "stderr");
      return os_error(stream == 1 ? "write to stdout" : "write to stderr", NULL);
    }
    p += done;
    len -= done;
  }
  return 0;
}

/* ---- input --------------------------------------------------------------------------- */

struct sys_in {
  HANDLE h;
  int owned;
};

int sys_in_open(sys_in **in, const char *path) {
  sys_in *s = malloc(sizeof *s);
  if (s == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory");
  s->owned = path != NULL;
  if (path == NULL) {
    s->h = GetStdHandle(STD_INPUT_HANDLE);
  } else {
    wchar_t *w = to_wide(path);
    if (w == NULL) {
      free(s);
      return mp_set_error(MP_EINVAL, "file name is not UTF-8: '%s'", path);
    }
    s->h = CreateFileW(w, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                       NULL, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL);
    free(w);
    if (s->h == INVALID_HANDLE_VALUE) {
      int rc = os_error("cannot open", path);
      free(s);
      return rc;
    }
  }
  *in = s;
  return 0;
}

int sys_in_read(sys_in *in, void *buf, size_t cap, size_t *n) {
  DWORD got = 0;
  *n = 0;
  if (in->h == NULL || in->h == INVALID_HANDLE_VALUE)
    return 0; /* no standard input at all reads as empty */
  if (!ReadFile(in->h, buf, cap > 65536 ? 65536 : (DWORD)cap, &got, NULL)) {
    if (is_broken(GetLastError()))
      return 0; /* the writer closed the pipe: end of input */
    return os_error("read input", NULL);
  }
  *n = got;
  return 0;
}

void sys_in_close(sys_in *in) {
  if (in == NULL)
    return;
  if (in->owned)
    CloseHandle(in->h);
  free(in);
}

FILE *sys_fopen(const char *path, const char *mode) {
  wchar_t *w = to_wide(path), wmode[8];
  size_t i = 0;
  for (; mode[i] && i + 1 < sizeof wmode / sizeof wmode[0]; i++)
    wmode[i] = (wchar_t)mode[i];
  wmode[i] = 0;
  if (w == NULL) {
    mp_set_error(MP_EINVAL, "file name is not UTF-8: '%s'", path);
    return NULL;
  }
  FILE *f = _wfopen(w, wmode);
  int e = errno;
  free(w);
  if (f == NULL)
    mp_set_error(e == ENOENT   ? MP_ENOENT
                 : e == EACCES ? MP_EPERM
                               : MP_EOS,
                 "cannot open '%s': %s", path, strerror(e));
  return f;
}

/* ---- temporary files ----------------------------------------------------------------- */

struct sys_tmp {
  HANDLE h;
};

int sys_tmp_create(sys_tmp **t) {
  wchar_t dir[MAX_PATH + 1], name[MAX_PATH + 1];
  DWORD n = GetTempPathW(MAX_PATH + 1, dir);
  if (n == 0 || n > MAX_PATH)
    return os_error("GetTempPathW", NULL);
  if (GetTempFileNameW(dir, L"mpr", 0, name) == 0)
    return os_error("GetTempFileNameW", NULL);
  sys_tmp *s = malloc(sizeof *s);
  if (s == NULL) {
    DeleteFileW(name);
    return mp_set_error(MP_ENOMEM, "out of memory");
  }
  /* Shared for deletion too, so the file goes when the last handle (ours or a child's)
   * closes, whoever closes last. */
  s->h = CreateFileW(name, GENERIC_READ | GENERIC_WRITE,
                     FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL, OPEN_EXISTING,
                     FILE_ATTRIBUTE_TEMPORARY | FILE_FLAG_DELETE_ON_CLOSE, NULL);
  if (s->h == INVALID_HANDLE_VALUE) {
    int rc = os_error("cannot open a temporary file", NULL);
    DeleteFileW(name);
    free(s);
    return rc;
  }
  *t = s;
  return 0;
}

intptr_t sys_tmp_handle(const sys_tmp *t) { return (intptr_t)t->h; }

int sys_tmp_size(sys_tmp *t, uint64_t *size) {
  LARGE_INTEGER li;
  if (!GetFileSizeEx(t->h, &li))
    return os_error("GetFileSizeEx (temporary file)", NULL);
  *size = (uint64_t)li.QuadPart;
  return 0;
}

int sys_tmp_read_at(sys_tmp *t, uint64_t off, void *buf, size_t cap, size_t *n) {
  OVERLAPPED ov;
  DWORD got = 0;
  memset(&ov, 0, sizeof ov);
  ov.Offset = (DWORD)off;
  ov.OffsetHigh = (DWORD)(off >> 32);
  *n = 0;
  if (!ReadFile(t->h, buf, cap > 65536 ? 65536 : (DWORD)cap, &got, &ov)) {
    if (GetLastError() == ERROR_HANDLE_EOF)
      return 0;
    return os_error("ReadFile (temporary file)", NULL);
  }
  *n = got;
  return 0;
}

int sys_tmp_append(sys_tmp *t, const void *buf, size_t len) {
  LARGE_INTEGER zero;
  const char *p = buf;
  zero.QuadPart = 0;
  if (!SetFilePointerEx(t->h, zero, NULL, FILE_END))
    return os_error("SetFilePointerEx (temporary file)", NULL);
  while (len > 0) {
    DWORD chunk = len > 65536 ? 65536 : (DWORD)len, done = 0;
    if (!WriteFile(t->h, p, chunk, &done, NULL))
      return os_error("WriteFile (temporary file)", NULL);
    p += done;
    len -= done;
  }
  return 0;
}

int sys_tmp_reset(sys_tmp *t) {
  LARGE_INTEGER zero;
  zero.QuadPart = 0;
  if (!SetFilePointerEx(t->h, zero, NULL, FILE_BEGIN) || !SetEndOfFile(t->h))
    return os_error("truncating a temporary file", NULL);
  return 0;
}

void sys_tmp_free(sys_tmp *t) {
  if (t == NULL)
    return;
  CloseHandle(t->h);
  free(t);
}
