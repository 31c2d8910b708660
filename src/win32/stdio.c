/* Win32 backend for a child's standard streams: overlapped named pipes with a user-only
 * DACL (so that reads, writes and communicate honour timeouts and never deadlock), files and
 * NUL for the child, program lookup with PATH and PATHEXT, and the environment. */
#include <windows.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../platform.h"
#include "wide.h"

#define CHUNK 65536

/* A string argument that is not valid UTF-8 cannot be converted faithfully. */
static int bad_utf8(const char *what, const char *s) {
  return mp_set_error(MP_EINVAL, "%s is not valid UTF-8: \"%s\"", what, s);
}

/* ---- finding the program ------------------------------------------------------------- */

static int is_file(const wchar_t *path) {
  DWORD a = GetFileAttributesW(path);
  return a != INVALID_FILE_ATTRIBUTES && !(a & FILE_ATTRIBUTE_DIRECTORY);
}

/* Normalises path (relative to our cwd; trailing dots and spaces dropped, so "x.bat."
 * is seen as the batch file it is) into out. */
static int full_path(const wchar_t *path, wchar_t *out, DWORD size) {
  DWORD n = GetFullPathNameW(path, size, out, NULL);
  return n > 0 && n < size;
}

/* Tries dir\name and dir\name+ext for each PATHEXT entry. */
static int try_dir(const wchar_t *dir, size_t dlen, const wchar_t *name, const wchar_t *exts,
                   int has_ext, wchar_t *out) {
  wchar_t cand[MAX_PATH * 4];
  size_t nlen = wcslen(name);
  if (dlen + nlen + 2 >= MAX_PATH * 4)
    return 0;
  memcpy(cand, dir, dlen * sizeof *cand);
  if (dlen > 0 && cand[dlen - 1] != L'\\' && cand[dlen - 1] != L'/')
    cand[dlen++] = L'\\';
  memcpy(cand + dlen, name, (nlen + 1) * sizeof *cand);
  if (has_ext && is_file(cand) && full_path(cand, out, MAX_PATH * 4))
    return 1;
  for (const wchar_t *e = exts; *e;) {
    const wchar_t *semi = wcschr(e, L';');
    size_t elen = semi ? (size_t)(semi - e) : wcslen(e);
    if (elen > 0 && dlen + nlen + elen + 1 < MAX_PATH * 4) {
      memcpy(cand + dlen + nlen, e, elen * sizeof *cand);
      cand[dlen + nlen + elen] = 0;
      if (is_file(cand) && full_path(cand, out, MAX_PATH * 4))
        return 1;
    }
    e += elen + (semi != NULL);
  }
  return 0;
}

/* PATH lookup with PATHEXT: the child's PATH (or ours), then the system directories. */
static int search_path(const char *path8, const wchar_t *name, wchar_t *out) {
  wchar_t sysdirs[2 * MAX_PATH + 2], exts[4096];
  wchar_t *child_path = path8 ? mp__to_wide(path8) : NULL;
  wchar_t *parent_path = child_path ? NULL : malloc(32768 * sizeof(wchar_t));
  const wchar_t *path = child_path;
  if (path == NULL) {
    if (parent_path == NULL)
      return mp_set_error(MP_ENOMEM, "out of memory searching PATH");
    DWORD n = GetEnvironmentVariableW(L"PATH", parent_path, 32768);
    path = n > 0 && n < 32768 ? parent_path : L"";
  }
  DWORD ne = GetEnvironmentVariableW(L"PATHEXT", exts, 4096);
  if (ne == 0 || ne >= 4096)
    wcscpy(exts, L".COM;.EXE;.BAT;.CMD");
  UINT s1 = GetSystemDirectoryW(sysdirs, MAX_PATH);
  sysdirs[s1] = L';';
  UINT s2 = GetWindowsDirectoryW(sysdirs + s1 + 1, MAX_PATH);
  sysdirs[s1 + 1 + s2] = 0;
  const wchar_t *dot = wcsrchr(name, L'.');
  int found = 0;
  for (int pass = 0; pass < 2 && !found; pass++) {
    for (const wchar_t *d = pass == 0 ? path : sysdirs; *d && !found;) {
      const wchar_t *semi = wcschr(d, L';');
      size_t dlen = semi ? (size_t)(semi - d) : wcslen(d);
      if (dlen > 0)
        found = try_dir(d, dlen, name, exts, dot != NULL, out);
      d += dlen + (semi != NULL);
    }
  }
  free(child_path);
  free(parent_path);
  return found ? 0 : MP_ENOENT;
}

/* A name given with a directory part: relative to our cwd, and with ".exe" added when it has
 * no extension, as a shell would (CreateProcess adds none to an application name). */
static int resolve_direct(const char *name8, const wchar_t *name, wchar_t *out) {
  if (!full_path(name, out, MAX_PATH * 4))
    return mp__os_error("GetFullPathNameW");
  if (is_file(out))
    return 0;
  const wchar_t *base = wcsrchr(out, L'\\');
  size_t n = wcslen(out);
  if (wcschr(base ? base + 1 : out, L'.') == NULL && n + 5 < MAX_PATH * 4) {
    wcscat(out, L".exe");
    if (is_file(out))
      return 0;
  }
  return mp_set_error(MP_ENOENT, "cannot start '%s': no such file", name8);
}

int mp_plat_find_program(const char *name8, const char *path, int search, char **found) {
  size_t n = strlen(name8);
  /* No Windows file name holds '"'; one ending in a separator names a directory, which
   * GetFullPathNameW would turn into "dir\.exe". */
  if (strchr(name8, '"') != NULL || n == 0 || name8[n - 1] == '\\' || name8[n - 1] == '/')
    return mp_set_error(MP_EINVAL, "program name \"%s\" holds '\"' or ends in a path separator",
                        name8);
  wchar_t *name = mp__to_wide(name8);
  wchar_t *out = malloc(MAX_PATH * 4 * sizeof *out);
  int rc = name == NULL ? bad_utf8("argv[0]", name8) : out == NULL ? MP_ENOMEM : 0;
  if (rc == 0 && search && wcspbrk(name, L"\\/:") == NULL) {
    rc = search_path(path, name, out);
    if (rc == MP_ENOENT)
      mp_set_error(MP_ENOENT, "'%s' not found in PATH (with the extensions of PATHEXT)", name8);
  } else if (rc == 0) {
    rc = resolve_direct(name8, name, out);
  }
  if (rc == 0 && (*found = mp__to_utf8(out, -1)) == NULL)
    rc = MP_ENOMEM;
  if (rc == MP_ENOMEM)
    mp_set_error(MP_ENOMEM, "out of memory finding '%s'", name8);
  free(name);
  free(out);
  return rc;
}

/* ---- the child's standard handles ---------------------------------------------------- */

/* A pipe for one stream: the parent's end overlapped, the child's an ordinary synchronous
 * handle as programs expect of stdio; only the current user may open the name. */
int mp_plat_stdio_pipe(int index, mp_plat_handle *child, mp_plat_handle *parent) {
  static volatile LONG counter;
  wchar_t name[96];
  unsigned r = 0;
  mp__user_sd sd;
  mp_plat_random_bytes(&r, sizeof r);
  _snwprintf(name, sizeof name / sizeof name[0], L"\\\\.\\pipe\\multiproc-popen-%lu-%ld-%08x",
             GetCurrentProcessId(), InterlockedIncrement(&counter), r);
  name[sizeof name / sizeof name[0] - 1] = 0;
  int rc = mp__user_sd_init(&sd), parent_reads = index != 0;
  HANDLE p = rc != 0
                 ? INVALID_HANDLE_VALUE
                 : CreateNamedPipeW(name,
                                    (parent_reads ? PIPE_ACCESS_INBOUND : PIPE_ACCESS_OUTBOUND) |
                                        FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE,
                                    PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT |
                                        PIPE_REJECT_REMOTE_CLIENTS,
                                    1, CHUNK, CHUNK, 0, &sd.sa);
  mp__user_sd_free(&sd);
  if (p == INVALID_HANDLE_VALUE)
    return rc != 0 ? rc : mp__os_error("CreateNamedPipeW");
  HANDLE ch = CreateFileW(name, parent_reads ? GENERIC_WRITE : GENERIC_READ, 0, NULL, OPEN_EXISTING,
                          0, NULL);
  if (ch == INVALID_HANDLE_VALUE) {
    rc = mp__os_error("CreateFileW (pipe client)");
    CloseHandle(p);
    return rc;
  }
  *parent = (mp_plat_handle)p;
  *child = (mp_plat_handle)ch;
  return 0;
}

int mp_plat_stdio_file(const char *path8, int index, int append, mp_plat_handle *child) {
  int nul = path8 == NULL; /* the null device, opened both ways whatever the stream */
  wchar_t *path = nul ? NULL : mp__to_wide(path8);
  if (!nul && path == NULL)
    return bad_utf8("file path", path8);
  DWORD access = nul          ? GENERIC_READ | GENERIC_WRITE
                 : index == 0 ? GENERIC_READ
                 : append     ? FILE_APPEND_DATA | SYNCHRONIZE
                              : GENERIC_WRITE;
  DWORD disp = nul || index == 0 ? OPEN_EXISTING : append ? OPEN_ALWAYS : CREATE_ALWAYS;
  HANDLE h = CreateFileW(nul ? L"NUL" : path, access,
                         FILE_SHARE_READ | FILE_SHARE_WRITE | (nul ? 0 : FILE_SHARE_DELETE), NULL,
                         disp, nul ? 0 : FILE_ATTRIBUTE_NORMAL, NULL);
  free(path);
  if (h == INVALID_HANDLE_VALUE) {
    DWORD e = GetLastError();
    int code = e == ERROR_FILE_NOT_FOUND || e == ERROR_PATH_NOT_FOUND ? MP_ENOENT
               : e == ERROR_ACCESS_DENIED                             ? MP_EPERM
                                                                      : MP_EOS;
    return mp__os_error_code(code, (long)e, nul ? "CreateFileW(NUL)" : path8);
  }
  *child = (mp_plat_handle)h;
  return 0;
}

void mp_plat_flush_stdio(void) {
  fflush(stdout);
  fflush(stderr);
}

mp_plat_handle mp_plat_stdio_parent(int index) {
  static const DWORD ids[3] = {STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE};
  HANDLE h = GetStdHandle(ids[index]);
  return h == NULL || h == INVALID_HANDLE_VALUE ? MP_PLAT_INVALID : (mp_plat_handle)h;
}

int mp_plat_stdio_check(mp_plat_handle h, int index) {
  DWORD flags;
  if (!GetHandleInformation((HANDLE)h, &flags))
    return mp_set_error(MP_EINVAL, "std stream %d: %p is not an open handle", index, (void *)h);
  return 0;
}

void mp_plat_pipe_close(mp_plat_handle h) {
  if (h != MP_PLAT_INVALID)
    CloseHandle((HANDLE)h);
}

/* ---- overlapped I/O ------------------------------------------------------------------ */

static int broken(DWORD e) {
  return e == ERROR_BROKEN_PIPE || e == ERROR_NO_DATA || e == ERROR_PIPE_NOT_CONNECTED;
}

/* The pump: one overlapped operation in flight per pipe, all waited for at once, so a child
 * blocked writing stderr never stalls our writes to its stdin. */
typedef struct stream {
  OVERLAPPED ov;
  int pending;
} stream;

/* Pipe i was closed by the child: end of its output, or a child that stopped reading its
 * input, which ends the input unless the caller keeps stdin (a write: MP_EBROKEN). */
static int pipe_gone(mp_plat_handle pipes[3], int i, int flags) {
  if (i == 0 && (flags & MP_PUMP_KEEP_STDIN))
    return MP_EBROKEN;
  CloseHandle((HANDLE)pipes[i]);
  pipes[i] = MP_PLAT_INVALID;
  return 0;
}

/* Starts an operation on pipe i unless one is in flight; closes pipes that are finished. */
static int pump_issue(mp_plat_handle pipes[3], stream *s, int i, const char *in, size_t in_len,
                      size_t in_off, mp_plat_outbuf *b, int flags) {
  if (s->pending || pipes[i] == MP_PLAT_INVALID)
    return 0;
  if (i == 0 && in_off >= in_len)
    return flags & MP_PUMP_KEEP_STDIN ? 0 : pipe_gone(pipes, 0, 0);
  ResetEvent(s->ov.hEvent);
  BOOL ok;
  if (i == 0) {
    DWORD len = in_len - in_off > CHUNK ? CHUNK : (DWORD)(in_len - in_off);
    ok = WriteFile((HANDLE)pipes[0], in + in_off, len, NULL, &s->ov);
  } else {
    char *dst = mp__outbuf_reserve(b, CHUNK);
    if (dst == NULL)
      return mp_set_error(MP_ENOMEM, "out of memory for the child's output");
    ok = ReadFile((HANDLE)pipes[i], dst, CHUNK, NULL, &s->ov);
  }
  DWORD e = ok ? 0 : GetLastError();
  if (ok || e == ERROR_IO_PENDING) {
    s->pending = 1;
    return 0;
  }
  if (broken(e))
    return pipe_gone(pipes, i, flags);
  return mp__os_error_code(MP_EOS, (long)e, i == 0 ? "WriteFile" : "ReadFile");
}

/* Collects a finished operation on pipe i (wait: block until it finishes). */
static int pump_collect(mp_plat_handle pipes[3], stream *s, int i, size_t *in_off,
                        mp_plat_outbuf *b, BOOL wait, int flags) {
  DWORD done = 0;
  BOOL ok = GetOverlappedResult((HANDLE)pipes[i], &s->ov, &done, wait);
  DWORD e = ok ? 0 : GetLastError();
  if (!ok && e == ERROR_IO_INCOMPLETE)
    return 0;
  s->pending = 0;
  if (i == 0)
    *in_off += done;
  else
    b->len += done;
  if (ok || e == ERROR_OPERATION_ABORTED)
    return 0;
  if (broken(e))
    return pipe_gone(pipes, i, flags);
  return mp__os_error_code(MP_EOS, (long)e, "GetOverlappedResult");
}

int mp_plat_pipe_pump(mp_plat_handle pipes[3], const void *in, size_t in_len, size_t *in_off,
                      mp_plat_outbuf *out, mp_plat_outbuf *err, int64_t deadline, int flags) {
  mp_plat_outbuf *bufs[3] = {NULL, out, err};
  stream s[3];
  int rc = 0, rounds = 0;
  memset(s, 0, sizeof s);
  for (int i = 0; i < 3; i++)
    if (pipes[i] != MP_PLAT_INVALID &&
        (s[i].ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL)) == NULL)
      rc = mp__os_error("CreateEventW");
  while (rc == 0) {
    HANDLE evs[3];
    int idx[3], n = 0;
    for (int i = 0; i < 3 && rc == 0; i++)
      rc = pump_issue(pipes, &s[i], i, in, in_len, *in_off, bufs[i], flags);
    for (int i = 0; i < 3; i++)
      if (s[i].pending)
        evs[n] = s[i].ov.hEvent, idx[n++] = i;
    if (rc != 0 || n == 0)
      break;
    /* A child that never stops writing must not hold us past the deadline. */
    int ms = mp__ms_until(deadline);
    DWORD r = rounds++ > 0 && ms == 0
                  ? WAIT_TIMEOUT
                  : WaitForMultipleObjects((DWORD)n, evs, FALSE, ms < 0 ? INFINITE : (DWORD)ms);
    if (r == WAIT_TIMEOUT || r >= WAIT_OBJECT_0 + (DWORD)n) {
      rc = r == WAIT_TIMEOUT ? MP_ETIMEDOUT : mp__os_error("WaitForMultipleObjects");
      break;
    }
    int k = idx[r - WAIT_OBJECT_0];
    rc = pump_collect(pipes, &s[k], k, in_off, bufs[k], FALSE, flags);
    if (flags & MP_PUMP_FIRST)
      break;
  }
  for (int i = 0; i < 3; i++) {
    if (s[i].pending) { /* cancelled, it keeps what it moved */
      CancelIoEx((HANDLE)pipes[i], &s[i].ov);
      (void)pump_collect(pipes, &s[i], i, in_off, bufs[i], TRUE, flags);
    }
    if (s[i].ov.hEvent)
      CloseHandle(s[i].ov.hEvent);
  }
  return rc;
}

/* ---- environment --------------------------------------------------------------------- */

/* One block: the array, then the strings it points to. */
int mp_plat_environ(char ***env) {
  wchar_t *block = GetEnvironmentStringsW();
  if (block == NULL)
    return mp__os_error("GetEnvironmentStringsW");
  size_t n = 0, bytes = 0, i = 0;
  for (wchar_t *p = block; *p; p += wcslen(p) + 1, n++)
    bytes += (size_t)WideCharToMultiByte(CP_UTF8, 0, p, -1, NULL, 0, NULL, NULL);
  char **out = malloc((n + 1) * sizeof *out + bytes);
  if (out != NULL) {
    char *dst = (char *)(out + n + 1), *end = dst + bytes;
    for (wchar_t *p = block; *p; p += wcslen(p) + 1)
      dst += WideCharToMultiByte(CP_UTF8, 0, p, -1, out[i++] = dst, (int)(end - dst), NULL, NULL);
    out[n] = NULL;
  }
  FreeEnvironmentStringsW(block);
  if (out == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory copying the environment");
  *env = out;
  return 0;
}

int mp_plat_env_icase(void) { return 1; }
