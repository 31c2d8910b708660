/* Win32 backend for subprocesses: CreateProcessW with a quoted command line, a sorted
 * UTF-16 environment block, STARTUPINFOEXW naming exactly the child's three std handles,
 * a job object per child for kill_tree, batch files through cmd.exe with the escaping that
 * fixed CVE-2024-24576, and overlapped named pipes so that reads, writes and communicate
 * honour timeouts and never deadlock. */
#include <windows.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../platform.h"

#define CHUNK 65536

/* ---- UTF-8 <-> UTF-16 ---------------------------------------------------------------- */

static wchar_t *to_wide(const char *s) {
  int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, NULL, 0);
  if (n <= 0)
    return NULL;
  wchar_t *w = malloc((size_t)n * sizeof *w);
  if (w != NULL)
    MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, w, n);
  return w;
}

static char *to_utf8(const wchar_t *w, int wlen) {
  int n = WideCharToMultiByte(CP_UTF8, 0, w, wlen, NULL, 0, NULL, NULL);
  char *s = malloc((size_t)n + 1);
  if (s != NULL) {
    WideCharToMultiByte(CP_UTF8, 0, w, wlen, s, n, NULL, NULL);
    s[n] = '\0';
  }
  return s;
}

/* A string argument that is not valid UTF-8 cannot be converted faithfully. */
static int bad_utf8(const char *what, const char *s) {
  return mp_set_error(MP_EINVAL, "%s is not valid UTF-8: \"%s\"", what, s);
}

/* ---- growable wide strings ----------------------------------------------------------- */

typedef struct wstr {
  wchar_t *s;
  size_t len, cap;
  int oom;
} wstr;

static void ws_putn(wstr *b, const wchar_t *s, size_t n) {
  if (b->oom)
    return;
  if (b->cap - b->len < n + 1) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n + 1)
      cap *= 2;
    wchar_t *ns = realloc(b->s, cap * sizeof *ns);
    if (ns == NULL) {
      b->oom = 1;
      return;
    }
    b->s = ns;
    b->cap = cap;
  }
  memcpy(b->s + b->len, s, n * sizeof *s);
  b->len += n;
  b->s[b->len] = 0;
}

static void ws_put(wstr *b, const wchar_t *s) { ws_putn(b, s, wcslen(s)); }
static void ws_putc(wstr *b, wchar_t c) { ws_putn(b, &c, 1); }
static void ws_repeat(wstr *b, wchar_t c, size_t n) {
  while (n-- > 0)
    ws_putc(b, c);
}

/* ---- command lines ------------------------------------------------------------------- */

/* One argument by the MSVCRT / CommandLineToArgvW rules: quoted when empty or holding
 * whitespace or a quote; inside quotes, backslashes before a '"' (or the closing quote)
 * are doubled and the '"' itself is escaped. */
static void append_arg(wstr *b, const wchar_t *a) {
  int quote = a[0] == 0 || wcspbrk(a, L" \t\n\v\"") != NULL;
  if (!quote) {
    ws_put(b, a);
    return;
  }
  ws_putc(b, L'"');
  size_t backslashes = 0;
  for (const wchar_t *p = a; *p; p++) {
    if (*p == L'\\') {
      backslashes++;
      continue;
    }
    if (*p == L'"')
      ws_repeat(b, L'\\', backslashes * 2 + 1);
    else
      ws_repeat(b, L'\\', backslashes);
    backslashes = 0;
    ws_putc(b, *p);
  }
  ws_repeat(b, L'\\', backslashes * 2);
  ws_putc(b, L'"');
}

/* An argument for a batch file, which cmd.exe re-parses (CVE-2024-24576): quote anything
 * but plain characters, double '"', turn '%' into "%%cd:~,%" (an empty substring of %cd%,
 * so no %VAR% expands), refuse CR and LF which would end the command. */
static int append_bat_arg(wstr *b, const wchar_t *a, const char *a8) {
  static const wchar_t plain[] = L"#$*+-./:?@\\_";
  size_t n = wcslen(a);
  int quote = n == 0 || a[n - 1] == L'\\';
  for (const wchar_t *p = a; *p; p++) {
    if (*p == L'\r' || *p == L'\n')
      return mp_set_error(MP_EINVAL,
                          "batch file argument \"%s\" holds a line break, which cmd.exe cannot "
                          "receive safely",
                          a8);
    int alnum =
        (*p >= L'0' && *p <= L'9') || (*p >= L'a' && *p <= L'z') || (*p >= L'A' && *p <= L'Z');
    if (*p < 0x80 && !alnum && wcschr(plain, *p) == NULL)
      quote = 1;
  }
  if (quote)
    ws_putc(b, L'"');
  size_t backslashes = 0;
  for (const wchar_t *p = a; *p; p++) {
    if (*p == L'\\') {
      backslashes++;
      ws_putc(b, L'\\');
      continue;
    }
    if (*p == L'"') {
      ws_repeat(b, L'\\', backslashes);
      ws_putc(b, L'"');
    } else if (*p == L'%') {
      ws_put(b, L"%%cd:~,");
    }
    backslashes = 0;
    ws_putc(b, *p);
  }
  if (quote) {
    ws_repeat(b, L'\\', backslashes);
    ws_putc(b, L'"');
  }
  return 0;
}

static int ends_with_icase(const wchar_t *s, const wchar_t *suffix) {
  size_t n = wcslen(s), k = wcslen(suffix);
  return n >= k && _wcsicmp(s + n - k, suffix) == 0;
}

static int system_program(const wchar_t *name, wchar_t *out, size_t size) {
  UINT n = GetSystemDirectoryW(out, (UINT)size);
  if (n == 0 || n + wcslen(name) + 2 > size)
    return mp__os_error("GetSystemDirectoryW");
  wcscat(out, L"\\");
  wcscat(out, name);
  return 0;
}

/* Builds the command line for argv with program prog (a full path). */
static int build_cmdline(const char *const *argv, const wchar_t *prog, wstr *cl) {
  int bat = ends_with_icase(prog, L".bat") || ends_with_icase(prog, L".cmd");
  if (bat) {
    if (wcschr(prog, L'"') != NULL || prog[0] == 0 || prog[wcslen(prog) - 1] == L'\\')
      return mp_set_error(MP_EINVAL, "batch file name \"%s\" holds '\"' or ends in '\\'", argv[0]);
    ws_put(cl, L"cmd.exe /e:ON /v:OFF /d /c \"\"");
    ws_put(cl, prog);
    ws_putc(cl, L'"');
  } else {
    if (strchr(argv[0], '"') != NULL)
      return mp_set_error(MP_EINVAL, "program name \"%s\" holds '\"'", argv[0]);
    wchar_t *a0 = to_wide(argv[0]);
    if (a0 == NULL)
      return bad_utf8("argv[0]", argv[0]);
    ws_putc(cl, L'"');
    ws_put(cl, a0);
    ws_putc(cl, L'"');
    free(a0);
  }
  for (size_t i = 1; argv[i] != NULL; i++) {
    wchar_t *a = to_wide(argv[i]);
    if (a == NULL)
      return bad_utf8("an argument", argv[i]);
    ws_putc(cl, L' ');
    int rc = 0;
    if (bat)
      rc = append_bat_arg(cl, a, argv[i]);
    else
      append_arg(cl, a);
    free(a);
    if (rc != 0)
      return rc;
  }
  if (bat)
    ws_putc(cl, L'"');
  return cl->oom ? mp_set_error(MP_ENOMEM, "out of memory for the command line") : 0;
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
static int search_path(const mp_plat_spawn *spec, const wchar_t *name, wchar_t *out) {
  wchar_t sysdirs[2 * MAX_PATH + 2], exts[4096];
  wchar_t *child_path = spec->path ? to_wide(spec->path) : NULL;
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
  if (!found) {
    char *n8 = to_utf8(name, -1);
    int rc =
        mp_set_error(MP_ENOENT, "'%s' not found in PATH (extensions %s)", n8 ? n8 : "?", "PATHEXT");
    free(n8);
    return rc;
  }
  return 0;
}

static int resolve_program(const mp_plat_spawn *spec, wchar_t *out) {
  /* No Windows file name holds '"', and one in a batch file's name would end its quoting. */
  if (strchr(spec->argv[0], '"') != NULL)
    return mp_set_error(MP_EINVAL,
                        "program name \"%s\" holds '\"' (not a batch file "
                        "name, nor any Windows file name)",
                        spec->argv[0]);
  wchar_t *name = to_wide(spec->argv[0]);
  if (name == NULL)
    return bad_utf8("argv[0]", spec->argv[0]);
  int rc = 0;
  if (spec->search_path && wcspbrk(name, L"\\/:") == NULL) {
    rc = search_path(spec, name, out);
  } else if (!full_path(name, out, MAX_PATH * 4)) {
    rc = mp__os_error("GetFullPathNameW");
  } else if (!is_file(out)) {
    /* CreateProcess appends no extension to an application name; do it like a shell. */
    const wchar_t *base = wcsrchr(out, L'\\');
    size_t n = wcslen(out);
    if (wcschr(base ? base + 1 : out, L'.') == NULL && n + 5 < MAX_PATH * 4) {
      wcscat(out, L".exe");
      if (!is_file(out))
        out[n] = 0;
    }
    if (!is_file(out))
      rc = mp_set_error(MP_ENOENT, "cannot start '%s': no such file", spec->argv[0]);
  }
  free(name);
  return rc;
}

/* ---- the environment block ----------------------------------------------------------- */

static size_t name_len_w(const wchar_t *e) {
  const wchar_t *eq = wcschr(e + (e[0] == L'='), L'=');
  return eq ? (size_t)(eq - e) : wcslen(e);
}

static int cmp_env(const void *a, const void *b) {
  const wchar_t *x = *(const wchar_t *const *)a, *y = *(const wchar_t *const *)b;
  int r = CompareStringOrdinal(x, (int)name_len_w(x), y, (int)name_len_w(y), TRUE);
  return r - CSTR_EQUAL;
}

/* Windows wants the block sorted by name, case-insensitively, ending in two NULs. */
static int build_env_block(char **envp, wstr *block) {
  size_t n = 0;
  while (envp[n])
    n++;
  wchar_t **w = calloc(n + 1, sizeof *w);
  if (w == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory for the environment block");
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++)
    if ((w[i] = to_wide(envp[i])) == NULL)
      rc = bad_utf8("an environment entry", envp[i]);
  if (rc == 0) {
    qsort(w, n, sizeof *w, cmp_env);
    for (size_t i = 0; i < n; i++)
      ws_putn(block, w[i], wcslen(w[i]) + 1);
    ws_putn(block, L"\0", n == 0 ? 2 : 1);
    if (block->oom)
      rc = mp_set_error(MP_ENOMEM, "out of memory for the environment block");
  }
  for (size_t i = 0; i < n; i++)
    free(w[i]);
  free(w);
  return rc;
}

/* ---- the child's standard handles ---------------------------------------------------- */

typedef struct std_plan {
  HANDLE src[3];   /* what the child gets (not inheritable); NULL: nothing */
  HANDLE owned[3]; /* handles opened only for this child, closed after the spawn */
  HANDLE inh[3];   /* the inheritable duplicates that CreateProcess hands over */
} std_plan;

static int make_pipe(mp_plat_child *c, int index, HANDLE *child_end) {
  static volatile LONG counter;
  wchar_t name[96];
  unsigned r = 0;
  mp_plat_random_bytes(&r, sizeof r);
  wsprintfW(name, L"\\\\.\\pipe\\multiproc-popen-%lu-%ld-%08x", GetCurrentProcessId(),
            InterlockedIncrement(&counter), r);
  int parent_reads = index != 0;
  HANDLE p =
      CreateNamedPipeW(name,
                       (parent_reads ? PIPE_ACCESS_INBOUND : PIPE_ACCESS_OUTBOUND) |
                           FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE,
                       PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
                       1, CHUNK, CHUNK, 0, NULL);
  if (p == INVALID_HANDLE_VALUE)
    return mp__os_error("CreateNamedPipeW");
  /* The child's end is an ordinary synchronous handle, as programs expect of stdio. */
  HANDLE ch = CreateFileW(name, parent_reads ? GENERIC_WRITE : GENERIC_READ, 0, NULL, OPEN_EXISTING,
                          0, NULL);
  if (ch == INVALID_HANDLE_VALUE) {
    int rc = mp__os_error("CreateFileW (pipe client)");
    CloseHandle(p);
    return rc;
  }
  c->pipes[index] = (mp_plat_handle)p;
  *child_end = ch;
  return 0;
}

static int open_file(const struct mp_stdio *s, int index, HANDLE *out) {
  wchar_t *path = to_wide(s->path);
  if (path == NULL)
    return bad_utf8("file path", s->path);
  DWORD access = index == 0  ? GENERIC_READ
                 : s->append ? FILE_APPEND_DATA | SYNCHRONIZE
                             : GENERIC_WRITE;
  DWORD disp = index == 0 ? OPEN_EXISTING : s->append ? OPEN_ALWAYS : CREATE_ALWAYS;
  *out = CreateFileW(path, access, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                     disp, FILE_ATTRIBUTE_NORMAL, NULL);
  free(path);
  if (*out == INVALID_HANDLE_VALUE) {
    DWORD e = GetLastError();
    int code = e == ERROR_FILE_NOT_FOUND || e == ERROR_PATH_NOT_FOUND ? MP_ENOENT
               : e == ERROR_ACCESS_DENIED                             ? MP_EPERM
                                                                      : MP_EOS;
    return mp__os_error_code(code, (long)e, s->path);
  }
  return 0;
}

static int plan_one(const mp_plat_spawn *spec, mp_plat_child *c, std_plan *pl, int i) {
  static const DWORD std_ids[3] = {STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE};
  const struct mp_stdio *s = spec->stdio[i];
  HANDLE h = NULL;
  int rc = 0;
  switch (s->mode) {
  case MP_STDIO_INHERIT:
    h = GetStdHandle(std_ids[i]);
    pl->src[i] = h == INVALID_HANDLE_VALUE ? NULL : h;
    return 0;
  case MP_STDIO_PIPE: rc = make_pipe(c, i, &h); break;
  case MP_STDIO_DEVNULL:
    h = CreateFileW(L"NUL", GENERIC_READ | GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL,
                    OPEN_EXISTING, 0, NULL);
    if (h == INVALID_HANDLE_VALUE)
      rc = mp__os_error("CreateFileW(NUL)");
    break;
  case MP_STDIO_FILE: rc = open_file(s, i, &h); break;
  case MP_STDIO_HANDLE: pl->src[i] = (HANDLE)s->handle; return 0;
  case MP_STDIO_STDOUT: pl->src[i] = pl->src[1]; return 0;
  }
  if (rc != 0)
    return rc;
  pl->owned[i] = pl->src[i] = h;
  return 0;
}

/* Inheritable duplicates made for this child alone; the handle list names only these. */
static int make_inheritable(std_plan *pl, HANDLE *list, DWORD *nlist) {
  HANDLE self = GetCurrentProcess();
  *nlist = 0;
  for (int i = 0; i < 3; i++) {
    if (pl->src[i] == NULL)
      continue;
    if (i == 2 && pl->src[2] == pl->src[1] && pl->inh[1] != NULL) {
      pl->inh[2] = pl->inh[1];
      continue;
    }
    if (!DuplicateHandle(self, pl->src[i], self, &pl->inh[i], 0, TRUE, DUPLICATE_SAME_ACCESS)) {
      char what[64];
      wsprintfA(what, "DuplicateHandle (std handle %d)", i);
      return mp__os_error(what);
    }
    list[(*nlist)++] = pl->inh[i];
  }
  return 0;
}

static void plan_cleanup(std_plan *pl) {
  for (int i = 0; i < 3; i++) {
    if (pl->inh[i] != NULL && !(i == 2 && pl->inh[2] == pl->inh[1]))
      CloseHandle(pl->inh[i]);
    if (pl->owned[i] != NULL)
      CloseHandle(pl->owned[i]);
  }
}

static void close_parent_pipes(mp_plat_child *c) {
  for (int i = 0; i < 3; i++) {
    if (c->pipes[i] != MP_PLAT_INVALID)
      CloseHandle((HANDLE)c->pipes[i]);
    c->pipes[i] = MP_PLAT_INVALID;
  }
}

/* ---- CreateProcessW ------------------------------------------------------------------ */

typedef struct launch {
  const wchar_t *app;
  wchar_t *cmdline;
  wchar_t *env;
  wchar_t *cwd;
  DWORD flags;
} launch;

static int start_error(const mp_plat_spawn *spec, const char *prog8) {
  DWORD e = GetLastError();
  char what[600];
  if (e == ERROR_DIRECTORY ||
      (spec->cwd && GetFileAttributesA(spec->cwd) == INVALID_FILE_ATTRIBUTES)) {
    snprintf(what, sizeof what, "cannot start '%s': working directory '%s'", prog8,
             spec->cwd ? spec->cwd : "?");
    return mp__os_error_code(MP_ENOENT, (long)e, what);
  }
  snprintf(what, sizeof what, "cannot start '%s'", prog8);
  int code = e == ERROR_FILE_NOT_FOUND || e == ERROR_PATH_NOT_FOUND ? MP_ENOENT
             : e == ERROR_ACCESS_DENIED                             ? MP_EPERM
                                                                    : MP_EOS;
  return mp__os_error_code(code, (long)e, what);
}

static int create_process(const mp_plat_spawn *spec, const launch *l, std_plan *pl,
                          PROCESS_INFORMATION *pi, const char *prog8) {
  HANDLE list[3];
  DWORD nlist;
  int rc = make_inheritable(pl, list, &nlist);
  if (rc != 0)
    return rc;
  STARTUPINFOEXW si;
  memset(&si, 0, sizeof si);
  si.StartupInfo.cb = sizeof si;
  si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
  si.StartupInfo.hStdInput = pl->inh[0];
  si.StartupInfo.hStdOutput = pl->inh[1];
  si.StartupInfo.hStdError = pl->inh[2];
  SIZE_T size = 0;
  InitializeProcThreadAttributeList(NULL, 1, 0, &size);
  si.lpAttributeList = malloc(size);
  if (si.lpAttributeList == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory for the attribute list");
  if (!InitializeProcThreadAttributeList(si.lpAttributeList, 1, 0, &size)) {
    free(si.lpAttributeList);
    return mp__os_error("InitializeProcThreadAttributeList");
  }
  BOOL ok = nlist == 0 ||
            UpdateProcThreadAttribute(si.lpAttributeList, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST,
                                      list, nlist * sizeof(HANDLE), NULL, NULL);
  if (!ok)
    rc = mp__os_error("UpdateProcThreadAttribute(HANDLE_LIST)");
  else if (!CreateProcessW(l->app, l->cmdline, NULL, NULL, nlist > 0,
                           l->flags | EXTENDED_STARTUPINFO_PRESENT, l->env, l->cwd, &si.StartupInfo,
                           pi))
    rc = start_error(spec, prog8);
  DeleteProcThreadAttributeList(si.lpAttributeList);
  free(si.lpAttributeList);
  return rc;
}

/* Puts the suspended child into a job of its own so kill_tree reaches its descendants. If
 * that is impossible (an enclosing job that forbids nesting, before Windows 8) the child
 * runs without one and kill_tree kills the child alone. */
static void attach_job(mp_plat_child *c, HANDLE process) {
  HANDLE job = CreateJobObjectW(NULL, NULL);
  if (job == NULL)
    return;
  if (!AssignProcessToJobObject(job, process)) {
    CloseHandle(job);
    return;
  }
  c->job = (mp_plat_handle)job;
}

static int prepare_launch(const mp_plat_spawn *spec, launch *l, wstr *cl, wstr *envb, wchar_t *prog,
                          char **prog8) {
  int rc;
  if (spec->shell_cmd) {
    if ((rc = system_program(L"cmd.exe", prog, MAX_PATH * 4)) != 0)
      return rc;
    wchar_t *cmd = to_wide(spec->shell_cmd);
    if (cmd == NULL)
      return bad_utf8("the shell command", spec->shell_cmd);
    ws_put(cl, L"cmd.exe /d /s /c \"");
    ws_put(cl, cmd);
    ws_putc(cl, L'"');
    free(cmd);
  } else {
    if ((rc = resolve_program(spec, prog)) != 0)
      return rc;
    if ((rc = build_cmdline(spec->argv, prog, cl)) != 0)
      return rc;
    /* A batch file runs through cmd.exe, named explicitly, with the line built above. */
    if (ends_with_icase(prog, L".bat") || ends_with_icase(prog, L".cmd")) {
      if ((rc = system_program(L"cmd.exe", prog, MAX_PATH * 4)) != 0)
        return rc;
    }
  }
  if (cl->oom)
    return mp_set_error(MP_ENOMEM, "out of memory for the command line");
  if (spec->envp && (rc = build_env_block(spec->envp, envb)) != 0)
    return rc;
  if (spec->cwd && (l->cwd = to_wide(spec->cwd)) == NULL)
    return bad_utf8("cwd", spec->cwd);
  l->app = prog;
  l->cmdline = cl->s;
  l->env = spec->envp ? envb->s : NULL;
  l->flags = CREATE_UNICODE_ENVIRONMENT;
  if (spec->new_group)
    l->flags |= CREATE_NEW_PROCESS_GROUP;
  if (spec->detached)
    l->flags |= DETACHED_PROCESS | CREATE_BREAKAWAY_FROM_JOB;
  else
    l->flags |= CREATE_SUSPENDED;
  *prog8 = spec->shell_cmd ? _strdup("cmd.exe") : _strdup(spec->argv[0]);
  return 0;
}

int mp_plat_popen_spawn(const mp_plat_spawn *spec, mp_plat_child *c) {
  wchar_t prog[MAX_PATH * 4];
  wstr cl = {0}, envb = {0};
  launch l = {0};
  char *prog8 = NULL;
  std_plan pl;
  PROCESS_INFORMATION pi;
  memset(c, 0, sizeof *c);
  memset(&pl, 0, sizeof pl);
  c->proc = c->job = MP_PLAT_INVALID;
  for (int i = 0; i < 3; i++)
    c->pipes[i] = MP_PLAT_INVALID;
  int rc = prepare_launch(spec, &l, &cl, &envb, prog, &prog8);
  for (int i = 0; i < 3 && rc == 0; i++)
    rc = plan_one(spec, c, &pl, i);
  if (rc == 0) {
    rc = create_process(spec, &l, &pl, &pi, prog8 ? prog8 : "?");
    /* An enclosing job may forbid breakaway; a detached child then stays inside it. */
    if (rc != 0 && spec->detached && GetLastError() == ERROR_ACCESS_DENIED) {
      l.flags &= ~(DWORD)CREATE_BREAKAWAY_FROM_JOB;
      rc = create_process(spec, &l, &pl, &pi, prog8 ? prog8 : "?");
    }
  }
  plan_cleanup(&pl);
  free(cl.s);
  free(envb.s);
  free(l.cwd);
  free(prog8);
  if (rc != 0) {
    close_parent_pipes(c);
    return rc;
  }
  if (!spec->detached) {
    attach_job(c, pi.hProcess);
    ResumeThread(pi.hThread);
  }
  CloseHandle(pi.hThread);
  c->pid = (int64_t)pi.dwProcessId;
  c->proc = (mp_plat_handle)pi.hProcess;
  c->own_group = 1;
  return 0;
}

/* ---- waiting and killing ------------------------------------------------------------- */

static DWORD wait_ms(int timeout_ms) { return timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms; }

int mp_plat_popen_wait(mp_plat_child *c, int timeout_ms) {
  if (c->reaped)
    return 0;
  DWORD r = WaitForSingleObject((HANDLE)c->proc, wait_ms(timeout_ms));
  if (r == WAIT_TIMEOUT)
    return MP_ETIMEDOUT;
  if (r != WAIT_OBJECT_0)
    return mp__os_error("WaitForSingleObject(process)");
  DWORD code = 0;
  if (!GetExitCodeProcess((HANDLE)c->proc, &code))
    return mp__os_error("GetExitCodeProcess");
  c->reaped = 1;
  /* Windows has no signals: report our own terminate/kill as -15 / -9, as on POSIX. */
  c->status = c->killed_sig ? -c->killed_sig : (int)code;
  return 0;
}

int mp_plat_popen_signal(mp_plat_child *c, int sig, int tree) {
  if (c->reaped && !(tree && c->job != MP_PLAT_INVALID))
    return 0;
  int running = !c->reaped && WaitForSingleObject((HANDLE)c->proc, 0) == WAIT_TIMEOUT;
  BOOL ok;
  if (tree && c->job != MP_PLAT_INVALID)
    ok = TerminateJobObject((HANDLE)c->job, 128u + (UINT)sig);
  else if (running)
    ok = TerminateProcess((HANDLE)c->proc, 128u + (UINT)sig);
  else
    return 0;
  if (!ok) {
    /* It exited on its own between the check and the call: nothing left to stop. */
    if (WaitForSingleObject((HANDLE)c->proc, 0) == WAIT_OBJECT_0)
      return 0;
    return mp__os_error(tree ? "TerminateJobObject" : "TerminateProcess");
  }
  if (running && c->killed_sig == 0)
    c->killed_sig = sig;
  return 0;
}

void mp_plat_popen_release(mp_plat_child *c) {
  /* No zombies on Windows: closing the handles is all. The job has no kill-on-close limit,
   * so a running child keeps running. */
  if (c->proc != MP_PLAT_INVALID)
    CloseHandle((HANDLE)c->proc);
  if (c->job != MP_PLAT_INVALID)
    CloseHandle((HANDLE)c->job);
  c->proc = c->job = MP_PLAT_INVALID;
}

void mp_plat_popen_reap_abandoned(void) {}

void mp_plat_popen_close(mp_plat_handle h) {
  if (h != MP_PLAT_INVALID)
    CloseHandle((HANDLE)h);
}

/* ---- overlapped I/O ------------------------------------------------------------------ */

static int broken(DWORD e) {
  return e == ERROR_BROKEN_PIPE || e == ERROR_NO_DATA || e == ERROR_PIPE_NOT_CONNECTED;
}

/* One overlapped operation on h, waited for up to timeout_ms; cancelled (keeping what it
 * moved) when the time runs out. Returns 0, MP_ETIMEDOUT, MP_EEOF (pipe closed) or MP_EOS. */
static int io_once(HANDLE h, int writing, void *buf, DWORD len, DWORD *done, int timeout_ms) {
  OVERLAPPED ov;
  memset(&ov, 0, sizeof ov);
  *done = 0;
  ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
  if (ov.hEvent == NULL)
    return mp__os_error("CreateEventW");
  BOOL ok = writing ? WriteFile(h, buf, len, NULL, &ov) : ReadFile(h, buf, len, NULL, &ov);
  DWORD e = ok ? 0 : GetLastError();
  int rc = 0;
  if (!ok && e != ERROR_IO_PENDING) {
    rc = broken(e) ? MP_EEOF
                   : mp__os_error_code(MP_EOS, (long)e, writing ? "WriteFile" : "ReadFile");
  } else {
    int timed_out = !ok && WaitForSingleObject(ov.hEvent, wait_ms(timeout_ms)) == WAIT_TIMEOUT;
    if (timed_out)
      CancelIoEx(h, &ov);
    if (!GetOverlappedResult(h, &ov, done, TRUE)) {
      e = GetLastError();
      rc = e == ERROR_OPERATION_ABORTED ? MP_ETIMEDOUT
           : broken(e)                  ? MP_EEOF
                                        : mp__os_error_code(MP_EOS, (long)e, "GetOverlappedResult");
    } else if (timed_out && *done == 0) {
      rc = MP_ETIMEDOUT;
    }
  }
  CloseHandle(ov.hEvent);
  return rc;
}

static int ms_left(uint64_t deadline, int timeout_ms) {
  if (timeout_ms < 0)
    return -1;
  uint64_t now = mp_plat_monotonic_ns();
  return now >= deadline ? 0 : (int)((deadline - now + 999999u) / 1000000u);
}

int mp_plat_popen_read(mp_plat_handle h, void *buf, size_t cap, size_t *n, int timeout_ms) {
  uint64_t deadline =
      mp_plat_monotonic_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000u;
  for (;;) {
    DWORD got;
    int rc = io_once((HANDLE)h, 0, buf, cap > CHUNK ? CHUNK : (DWORD)cap, &got,
                     ms_left(deadline, timeout_ms));
    if (rc == MP_EEOF)
      return mp_set_error(MP_EEOF, "end of the child's output");
    if (rc == MP_ETIMEDOUT)
      return mp_set_error(rc, "no output from the child in time");
    if (rc != 0)
      return rc;
    if (got > 0) {
      *n = got;
      return 0;
    }
    /* A zero-byte message is not end of file on a pipe; wait for more. */
  }
}

int mp_plat_popen_write(mp_plat_handle h, const void *buf, size_t len, size_t *written,
                        int timeout_ms) {
  uint64_t deadline =
      mp_plat_monotonic_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000u;
  while (*written < len) {
    DWORD done, chunk = len - *written > CHUNK ? CHUNK : (DWORD)(len - *written);
    int rc =
        io_once((HANDLE)h, 1, (char *)buf + *written, chunk, &done, ms_left(deadline, timeout_ms));
    *written += done;
    if (rc == MP_EEOF)
      return mp_set_error(MP_EBROKEN, "the child closed its stdin");
    if (rc == MP_ETIMEDOUT)
      return mp_set_error(rc, "the child did not read its stdin in time");
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* communicate's engine: one overlapped operation in flight per pipe, all waited for at
 * once, so a child blocked writing stderr never stalls our writes to its stdin. */
typedef struct stream {
  OVERLAPPED ov;
  int pending;
  DWORD asked;
} stream;

static void close_stream(mp_plat_handle *h) {
  CloseHandle((HANDLE)*h);
  *h = MP_PLAT_INVALID;
}

/* Starts an operation on pipe i unless one is in flight; closes pipes that are finished. */
static int pump_issue(mp_plat_handle pipes[3], stream *s, int i, const char *in, size_t in_len,
                      size_t in_off, mp_plat_outbuf *b) {
  if (s->pending || pipes[i] == MP_PLAT_INVALID)
    return 0;
  if (i == 0 && in_off >= in_len) {
    close_stream(&pipes[0]);
    return 0;
  }
  ResetEvent(s->ov.hEvent);
  BOOL ok;
  if (i == 0) {
    s->asked = in_len - in_off > CHUNK ? CHUNK : (DWORD)(in_len - in_off);
    ok = WriteFile((HANDLE)pipes[0], in + in_off, s->asked, NULL, &s->ov);
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
  if (broken(e)) {
    close_stream(&pipes[i]); /* end of output, or a child that stopped reading its input */
    return 0;
  }
  return mp__os_error_code(MP_EOS, (long)e, i == 0 ? "WriteFile" : "ReadFile");
}

/* Collects a finished operation on pipe i (wait: block until it finishes). */
static int pump_collect(mp_plat_handle pipes[3], stream *s, int i, size_t *in_off,
                        mp_plat_outbuf *b, BOOL wait) {
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
  if (broken(e)) {
    close_stream(&pipes[i]);
    return 0;
  }
  return mp__os_error_code(MP_EOS, (long)e, "GetOverlappedResult");
}

static void pump_cancel(mp_plat_handle pipes[3], stream *s, size_t *in_off, mp_plat_outbuf **bufs) {
  for (int i = 0; i < 3; i++) {
    if (!s[i].pending)
      continue;
    CancelIoEx((HANDLE)pipes[i], &s[i].ov);
    (void)pump_collect(pipes, &s[i], i, in_off, bufs[i], TRUE);
  }
}

int mp_plat_popen_pump(mp_plat_handle pipes[3], const void *in, size_t in_len, size_t *in_off,
                       mp_plat_outbuf *out, mp_plat_outbuf *err, int timeout_ms) {
  mp_plat_outbuf *bufs[3] = {NULL, out, err};
  stream s[3];
  uint64_t deadline =
      mp_plat_monotonic_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000u;
  int rc = 0, rounds = 0;
  memset(s, 0, sizeof s);
  for (int i = 0; i < 3; i++)
    if ((s[i].ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL)) == NULL)
      rc = mp__os_error("CreateEventW");
  while (rc == 0) {
    HANDLE evs[3];
    int idx[3], n = 0;
    for (int i = 0; i < 3 && rc == 0; i++)
      rc = pump_issue(pipes, &s[i], i, in, in_len, *in_off, bufs[i]);
    for (int i = 0; i < 3; i++)
      if (s[i].pending)
        evs[n] = s[i].ov.hEvent, idx[n++] = i;
    if (rc != 0 || n == 0)
      break;
    /* A child that never stops writing must not hold us past the deadline. */
    if (rounds++ > 0 && timeout_ms >= 0 && ms_left(deadline, timeout_ms) == 0) {
      rc = MP_ETIMEDOUT;
      break;
    }
    DWORD r = WaitForMultipleObjects((DWORD)n, evs, FALSE, wait_ms(ms_left(deadline, timeout_ms)));
    if (r == WAIT_TIMEOUT) {
      rc = MP_ETIMEDOUT;
      break;
    }
    if (r >= WAIT_OBJECT_0 + (DWORD)n) {
      rc = mp__os_error("WaitForMultipleObjects");
      break;
    }
    int k = idx[r - WAIT_OBJECT_0];
    rc = pump_collect(pipes, &s[k], k, in_off, bufs[k], FALSE);
  }
  pump_cancel(pipes, s, in_off, bufs);
  for (int i = 0; i < 3; i++)
    if (s[i].ov.hEvent)
      CloseHandle(s[i].ov.hEvent);
  return rc;
}

/* ---- environment --------------------------------------------------------------------- */

int mp_plat_environ(char ***env) {
  wchar_t *block = GetEnvironmentStringsW();
  if (block == NULL)
    return mp__os_error("GetEnvironmentStringsW");
  size_t n = 0;
  for (wchar_t *p = block; *p; p += wcslen(p) + 1)
    n++;
  char **out = calloc(n + 1, sizeof *out);
  int rc = out ? 0 : mp_set_error(MP_ENOMEM, "out of memory copying the environment");
  size_t i = 0;
  for (wchar_t *p = block; rc == 0 && *p; p += wcslen(p) + 1, i++)
    if ((out[i] = to_utf8(p, -1)) == NULL)
      rc = mp_set_error(MP_ENOMEM, "out of memory copying the environment");
  FreeEnvironmentStringsW(block);
  if (rc != 0) {
    for (size_t j = 0; out && j < i; j++)
      free(out[j]);
    free(out);
    return rc;
  }
  *env = out;
  return 0;
}

int mp_plat_env_icase(void) { return 1; }
