/* Win32 child engine: one CreateProcessW path for this program and for other programs. The
 * child starts suspended with exactly its three standard handles (inheritable duplicates
 * named in PROC_THREAD_ATTRIBUTE_HANDLE_LIST), joins its jobs, receives its further handles
 * by DuplicateHandle, then runs. Exit codes follow the POSIX convention: our terminate is
 * -15, kill -9, an access violation -11. Batch files run through cmd.exe with the line that
 * win32/cmdline.c builds. */
#include <windows.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "../platform.h"
#include "cmdline.h"
#include "wide.h"

/* Exit codes that TerminateProcess/TerminateJobObject use for our signals: "MP" plus the
 * signal, so that they decode back to it whoever reads them. */
#define MP_WIN_SIGNAL_BASE 0x4D500000u

int mp_plat_child_caps(void) { return 0; } /* no fork, no zombies, the child pulls its handle */

int64_t mp_plat_bootstrap_value(mp_plat_handle h) { return (int64_t)h; }

/* ---- jobs ----------------------------------------------------------------------------------- */

static INIT_ONCE job_once = INIT_ONCE_STATIC_INIT;
static HANDLE kill_job; /* every child that dies with us: kill-on-close */

/* A job with limits; NULL if it cannot be made (the limits unset would silently change what
 * it means, so a failed SetInformationJobObject drops the job). */
static HANDLE make_job(DWORD limits) {
  JOBOBJECT_EXTENDED_LIMIT_INFORMATION info = {.BasicLimitInformation.LimitFlags = limits};
  HANDLE job = CreateJobObjectW(NULL, NULL);
  if (job != NULL &&
      !SetInformationJobObject(job, JobObjectExtendedLimitInformation, &info, sizeof info)) {
    CloseHandle(job);
    return NULL;
  }
  return job;
}

static BOOL CALLBACK create_kill_job(PINIT_ONCE once, PVOID param, PVOID *ctx) {
  (void)once, (void)param, (void)ctx;
  kill_job = make_job(JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | JOB_OBJECT_LIMIT_BREAKAWAY_OK);
  return TRUE;
}

/* Puts the suspended child into the jobs its flags ask for. A job that cannot be joined
 * (this process runs in a job that forbids nesting or breakaway: UI limits, jobs before
 * Windows 8) is tolerated, as libuv does: the child then does not die with us, or a tree
 * kill reaches the child alone (docs/platform-notes.md). */
static void join_jobs(HANDLE process, mp_plat_child *c) {
  if (c->flags & MP_CHILD_DIE_WITH_PARENT) {
    InitOnceExecuteOnce(&job_once, create_kill_job, NULL, NULL);
    if (kill_job != NULL)
      (void)AssignProcessToJobObject(kill_job, process);
  }
  if (c->flags & MP_CHILD_OWN_JOB) {
    /* Breakaway allowed, so that a child may start its own detached children. */
    HANDLE job = make_job(JOB_OBJECT_LIMIT_BREAKAWAY_OK);
    if (job != NULL && AssignProcessToJobObject(job, process))
      c->job = (mp_plat_handle)job;
    else if (job != NULL)
      CloseHandle(job);
  }
}

/* ---- the command line, environment and directory ---------------------------------------- */

/* GetModuleFileNameW truncates silently (n == cap): grow until the path fits. */
static wchar_t *self_exe_w(void) {
  for (DWORD cap = MAX_PATH;; cap *= 2) {
    wchar_t *buf = malloc(cap * sizeof *buf);
    DWORD n = buf != NULL ? GetModuleFileNameW(NULL, buf, cap) : 0;
    if (n > 0 && n < cap)
      return buf;
    free(buf);
    if (n == 0)
      return NULL;
  }
}

/* cmd.exe by full path, never found by a search that would look in the current directory. */
static wchar_t *system_cmd(void) {
  wchar_t path[MAX_PATH];
  UINT n = GetSystemDirectoryW(path, MAX_PATH - 8);
  if (n == 0 || n >= MAX_PATH - 8)
    return NULL;
  wcscpy(path + n, L"\\cmd.exe");
  return _wcsdup(path);
}

typedef struct launch {
  wchar_t *app, *cmdline, *env, *cwd;
  const char *name; /* for messages */
} launch;

static void launch_free(launch *l) {
  free(l->app);
  free(l->cmdline);
  free(l->env);
  free(l->cwd);
}

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
static int env_block(char *const *envp, wchar_t **out) {
  size_t n = 0, total = 2;
  while (envp[n])
    n++;
  wchar_t **w = calloc(n + 1, sizeof *w), *p = NULL;
  int rc = w != NULL ? 0 : MP_ENOMEM;
  for (size_t i = 0; i < n && rc == 0; i++) {
    if ((w[i] = mp__to_wide(envp[i])) == NULL)
      rc = mp_set_error(MP_EINVAL, "environment entry \"%s\" is not valid UTF-8", envp[i]);
    total += rc == 0 ? wcslen(w[i]) + 1 : 0;
  }
  if (rc == 0 && (p = *out = malloc(total * sizeof *p)) == NULL)
    rc = MP_ENOMEM;
  if (rc == 0) {
    qsort(w, n, sizeof *w, cmp_env);
    for (size_t i = 0; i < n; i++, p++)
      p = wcscpy(p, w[i]) + wcslen(w[i]);
    p[0] = p[1] = 0;
  }
  for (size_t i = 0; w != NULL && i < n; i++)
    free(w[i]);
  free(w);
  return rc == MP_ENOMEM ? mp_set_error(rc, "out of memory for the environment block") : rc;
}

static int wide_or_fail(const char *what, const char *s, wchar_t **out) {
  if ((*out = mp__to_wide(s)) == NULL)
    return mp_set_error(MP_EINVAL, "%s is not valid UTF-8 (or out of memory): \"%s\"", what, s);
  return 0;
}

/* The application and command line: a shell command or a batch file through cmd.exe, this
 * program, or another program. */
static int build_line(const mp_plat_child_spec *s, launch *l) {
  char *line = NULL;
  int rc = 0, batch = !s->shell_cmd && s->program && mp__cmdline_is_batch(s->program);
  l->name = s->shell_cmd ? "cmd.exe" : s->program ? s->program : s->argv[0];
  if (s->shell_cmd) {
    size_t n = strlen(s->shell_cmd) + 32;
    if ((line = malloc(n)) != NULL)
      snprintf(line, n, "cmd.exe /d /s /c \"%s\"", s->shell_cmd);
  } else {
    rc = batch ? mp__cmdline_build_batch(s->program, s->argv, &line)
               : mp__cmdline_build(s->argv, &line);
  }
  l->app = s->shell_cmd || batch ? system_cmd()
           : s->program          ? mp__to_wide(s->program)
                                 : self_exe_w();
  if (rc == 0 && (line == NULL || l->app == NULL))
    rc = mp_set_error(MP_ENOMEM, "out of memory for the command line of '%s'", l->name);
  if (rc == 0)
    rc = wide_or_fail("the command line", line, &l->cmdline);
  free(line);
  return rc;
}

/* The working directory must exist: checked with the wide API, so that a non-ASCII name is
 * the name the caller meant. */
static int check_cwd(const mp_plat_child_spec *s, launch *l) {
  int rc = wide_or_fail("cwd", s->cwd, &l->cwd);
  if (rc != 0)
    return rc;
  DWORD a = GetFileAttributesW(l->cwd);
  if (a == INVALID_FILE_ATTRIBUTES || !(a & FILE_ATTRIBUTE_DIRECTORY)) {
    char what[600];
    snprintf(what, sizeof what, "cannot start '%s': working directory '%s'", l->name, s->cwd);
    return mp__os_error_code(
        MP_ENOENT, a == INVALID_FILE_ATTRIBUTES ? (long)GetLastError() : ERROR_DIRECTORY, what);
  }
  return 0;
}

/* ---- CreateProcessW ------------------------------------------------------------------------ */

/* Inheritable duplicates of the child's three handles, made for this one call; list holds
 * each once (stderr may share stdout's). */
typedef struct std_dups {
  HANDLE h[3];
  HANDLE list[3];
  DWORD n;
} std_dups;

static void close_dups(std_dups *d) {
  while (d->n > 0)
    CloseHandle(d->list[--d->n]);
}

static int make_dups(const mp_plat_child_spec *s, std_dups *d) {
  HANDLE self = GetCurrentProcess();
  memset(d, 0, sizeof *d);
  for (int i = 0; i < 3; i++) {
    mp_plat_handle src = s->stdio[i] != MP_PLAT_INVALID ? s->stdio[i] : mp_plat_stdio_parent(i);
    if (i == 2 && s->stdio[2] != MP_PLAT_INVALID && s->stdio[2] == s->stdio[1])
      d->h[2] = d->h[1];
    if (src == MP_PLAT_INVALID || d->h[i] != NULL)
      continue;
    if (!DuplicateHandle(self, (HANDLE)src, self, &d->h[i], 0, TRUE, DUPLICATE_SAME_ACCESS)) {
      char what[64];
      snprintf(what, sizeof what, "DuplicateHandle (std handle %d)", i);
      close_dups(d);
      return mp__os_error(what);
    }
    d->list[d->n++] = d->h[i];
  }
  return 0;
}

/* The OS's words for err, with the "%1" of messages such as "%1 is not a valid Win32
 * application" filled with the program's name. */
static int start_error(const launch *l, DWORD err) {
  char text[400];
  mp_plat_os_error_text((long)err, text, sizeof text);
  const char *hole = strstr(text, "%1");
  int code = err == ERROR_FILE_NOT_FOUND || err == ERROR_PATH_NOT_FOUND ? MP_ENOENT
             : err == ERROR_ACCESS_DENIED                               ? MP_EPERM
                                                                        : MP_EOS;
  return mp_set_error(code, "cannot start '%s': %.*s%s%s (OS error %lu)", l->name,
                      hole ? (int)(hole - text) : (int)sizeof text, text, hole ? l->name : "",
                      hole ? hole + 2 : "", (unsigned long)err);
}

/* One CreateProcessW; *err is its error, read at once before any other call can change it. */
static BOOL create(const launch *l, const std_dups *d, DWORD flags, PROCESS_INFORMATION *pi,
                   DWORD *err) {
  STARTUPINFOEXW si = {.StartupInfo = {.cb = sizeof si,
                                       .dwFlags = STARTF_USESTDHANDLES,
                                       .hStdInput = d->h[0],
                                       .hStdOutput = d->h[1],
                                       .hStdError = d->h[2]}};
  SIZE_T size = 0;
  InitializeProcThreadAttributeList(NULL, 1, 0, &size);
  si.lpAttributeList = malloc(size);
  BOOL ok = si.lpAttributeList != NULL &&
            InitializeProcThreadAttributeList(si.lpAttributeList, 1, 0, &size);
  if (ok && d->n > 0)
    ok = UpdateProcThreadAttribute(si.lpAttributeList, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST,
                                   (PVOID)d->list, d->n * sizeof(HANDLE), NULL, NULL);
  if (ok)
    ok = CreateProcessW(l->app, l->cmdline, NULL, NULL, d->n > 0,
                        flags | EXTENDED_STARTUPINFO_PRESENT, l->env, l->cwd, &si.StartupInfo, pi);
  *err = ok ? 0 : GetLastError();
  if (si.lpAttributeList) {
    DeleteProcThreadAttributeList(si.lpAttributeList);
    free(si.lpAttributeList);
  }
  return ok;
}

/* Starts the suspended child; a detached child whose breakaway the enclosing job refuses
 * (Task Scheduler, RunAs, CI agents) starts again inside that job. */
static int create_suspended(const mp_plat_child_spec *s, const launch *l, PROCESS_INFORMATION *pi) {
  std_dups d;
  int rc = make_dups(s, &d);
  if (rc != 0)
    return rc;
  DWORD err = 0;
  DWORD flags = CREATE_UNICODE_ENVIRONMENT | CREATE_SUSPENDED |
                (s->flags & MP_CHILD_NEW_GROUP ? CREATE_NEW_PROCESS_GROUP : 0) |
                (s->flags & MP_CHILD_DETACHED ? DETACHED_PROCESS | CREATE_BREAKAWAY_FROM_JOB : 0);
  BOOL ok = create(l, &d, flags, pi, &err);
  /* Wine under load now and then fails a start with ERROR_INTERNAL_ERROR that the next
   * attempt does not meet (docs/platform-notes.md); Windows does not use the code here. */
  for (int tries = 0; !ok && err == ERROR_INTERNAL_ERROR && tries < 3; tries++)
    ok = create(l, &d, flags, pi, &err);
  if (!ok && err == ERROR_ACCESS_DENIED && (flags & CREATE_BREAKAWAY_FROM_JOB))
    ok = create(l, &d, flags & ~(DWORD)CREATE_BREAKAWAY_FROM_JOB, pi, &err);
  close_dups(&d);
  return ok ? 0 : start_error(l, err);
}

/* The suspended child can only have ended if someone killed it: that shows as MP_EBROKEN
 * (mp_plat_handle_into), and the start fails. */
static int give_handles(HANDLE child, const mp_plat_child_spec *s) {
  mp_plat_handle v;
  for (size_t i = 0; i < s->npass; i++) {
    int rc = mp_plat_handle_into((mp_plat_handle)child, s->pass[i], s->passed ? &s->passed[i] : &v);
    if (rc < 0)
      return rc;
  }
  return 0;
}

int mp_plat_child_spawn(const mp_plat_child_spec *s, mp_plat_child *c) {
  launch l = {0};
  PROCESS_INFORMATION pi;
  memset(c, 0, sizeof *c);
  c->wait = c->job = MP_PLAT_INVALID;
  c->flags = s->flags;
  int rc = build_line(s, &l);
  if (rc == 0 && s->envp)
    rc = env_block(s->envp, &l.env);
  if (rc == 0 && s->cwd)
    rc = check_cwd(s, &l);
  if (rc == 0)
    rc = create_suspended(s, &l, &pi);
  launch_free(&l);
  if (rc != 0)
    return rc;
  c->wait = (mp_plat_handle)pi.hProcess;
  join_jobs(pi.hProcess, c);
  if ((rc = give_handles(pi.hProcess, s)) != 0) {
    TerminateProcess(pi.hProcess, MP_WIN_SIGNAL_BASE | MP_SIG_KILL);
    WaitForSingleObject(pi.hProcess, INFINITE);
    mp_plat_child_release(c);
  } else {
    ResumeThread(pi.hThread);
    c->pid = (int64_t)pi.dwProcessId;
  }
  CloseHandle(pi.hThread);
  return rc;
}

int mp_plat_child_fork(mp_plat_child *c, int flags, const mp_plat_handle *keep, size_t nkeep,
                       int (*child_fn)(void *), void *ctx) {
  (void)c, (void)flags, (void)keep, (void)nkeep, (void)child_fn, (void)ctx;
  return mp_set_error(MP_ENOTSUP, "the fork start method does not exist on Windows; use spawn");
}

void mp_plat_child_test_no_pidfd(int on) { (void)on; }

/* ---- waiting and signalling ---------------------------------------------------------------- */

static int decode_exit_code(DWORD code) {
  if ((code & 0xffffff00u) == MP_WIN_SIGNAL_BASE)
    return -(int)(code & 0xff);
  switch (code) {
  case 0xC0000005u: /* STATUS_ACCESS_VIOLATION */
  case 0xC00000FDu: /* STATUS_STACK_OVERFLOW */
  case 0xC0000006u: /* STATUS_IN_PAGE_ERROR */ return -MP_SIG_SEGV;
  case 0xC000001Du: /* STATUS_ILLEGAL_INSTRUCTION */
  case 0xC0000096u: /* STATUS_PRIVILEGED_INSTRUCTION */ return -MP_SIG_ILL;
  case 0xC0000094u: /* STATUS_INTEGER_DIVIDE_BY_ZERO */
  case 0xC000008Eu: /* STATUS_FLOAT_DIVIDE_BY_ZERO */ return -MP_SIG_FPE;
  case 0xC0000409u: /* STATUS_STACK_BUFFER_OVERRUN: __fastfail, the UCRT's abort */
    return -MP_SIG_ABRT;
  default: return (int)code;
  }
}

int mp_plat_child_wait(mp_plat_child *c, int timeout_ms) {
  if (c->reaped)
    return 0;
  DWORD w = WaitForSingleObject((HANDLE)c->wait, timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms);
  if (w == WAIT_TIMEOUT)
    return MP_ETIMEDOUT;
  if (w != WAIT_OBJECT_0)
    return mp__os_error("WaitForSingleObject(process)");
  DWORD code = 0;
  if (!GetExitCodeProcess((HANDLE)c->wait, &code))
    return mp__os_error("GetExitCodeProcess");
  /* Wine reports 0 for a process its job killed: our own signal is what ended it. */
  c->status = code == 0 && c->backend ? -c->backend : decode_exit_code(code);
  c->reaped = 1; /* the handle stays open (and signalled) for mp_wait until release */
  return 0;
}

int mp_plat_child_signal(mp_plat_child *c, int sig, int tree) {
  UINT code = MP_WIN_SIGNAL_BASE | (UINT)sig;
  int running = !c->reaped && c->wait != MP_PLAT_INVALID &&
                WaitForSingleObject((HANDLE)c->wait, 0) == WAIT_TIMEOUT;
  BOOL ok;
  if (tree && c->job != MP_PLAT_INVALID)
    ok = TerminateJobObject((HANDLE)c->job, code);
  else if (running)
    ok = TerminateProcess((HANDLE)c->wait, code);
  else
    return 0;
  /* It may exit on its own between the check and the call: then nothing is left to stop. */
  if (!ok &&
      !(c->wait != MP_PLAT_INVALID && WaitForSingleObject((HANDLE)c->wait, 0) == WAIT_OBJECT_0))
    return mp__os_error(tree ? "TerminateJobObject" : "TerminateProcess");
  if (ok && running && c->backend == 0)
    c->backend = sig; /* what ended it, should the exit code not say (Wine's job kills) */
  return 0;
}

void mp_plat_child_release(mp_plat_child *c) {
  /* No zombies on Windows: closing the handles is all. A child's own job has no kill-on-close
   * limit, so a running child keeps running. */
  if (c->wait != MP_PLAT_INVALID)
    CloseHandle((HANDLE)c->wait);
  if (c->job != MP_PLAT_INVALID)
    CloseHandle((HANDLE)c->job);
  c->wait = c->job = MP_PLAT_INVALID;
}

/* ---- in the spawned child ------------------------------------------------------------------ */

/* Windows has no setuid programs: a child runs with the token its creator gave it. */
int mp_plat_child_mode_allowed(void) { return 0; }

/* The child takes its bootstrap handle out of the process that created it, which closes its
 * own copy once the child has said hello: no handle is ever made inheritable for it. */
int mp_plat_bootstrap_handle(int64_t parent_pid, int64_t value, mp_plat_handle *out) {
  int64_t creator = mp_plat_getppid(); /* the creator's id, from the system's process list */
  if (creator != parent_pid)
    return mp_set_error(MP_EPERM,
                        "bootstrap: process %lld named by the marker did not create "
                        "this process (%lld did)",
                        (long long)parent_pid, (long long)creator);
  HANDLE parent = OpenProcess(PROCESS_DUP_HANDLE, FALSE, (DWORD)parent_pid);
  if (parent == NULL)
    return mp__os_error("OpenProcess(parent)");
  HANDLE h = NULL;
  BOOL ok = DuplicateHandle(parent, (HANDLE)(intptr_t)value, GetCurrentProcess(), &h, 0, FALSE,
                            DUPLICATE_SAME_ACCESS);
  CloseHandle(parent);
  if (!ok)
    return mp__os_error("DuplicateHandle(bootstrap from parent)");
  *out = (mp_plat_handle)h;
  return 0;
}

void mp_plat_child_seal(const mp_plat_handle *h, size_t n) {
  for (size_t i = 0; i < n; i++)
    SetHandleInformation((HANDLE)h[i], HANDLE_FLAG_INHERIT, 0);
}

/* Unhandled exceptions end the process with the exception code, which exit-code decoding
 * maps to a signal number, instead of a crash dialog or a debugger. No flushing here: the
 * stream locks may be held by the thread that crashed. */
static LONG WINAPI crash_filter(EXCEPTION_POINTERS *ep) {
  TerminateProcess(GetCurrentProcess(), ep->ExceptionRecord->ExceptionCode);
  return EXCEPTION_EXECUTE_HANDLER;
}

void mp_plat_child_setup(int64_t parent_pid, int die) {
  (void)parent_pid, (void)die; /* the job object, assigned by the parent, does this */
  SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX);
  SetUnhandledExceptionFilter(crash_filter);
}

/* ---- identity of this program -------------------------------------------------------------- */

void mp_plat_note_argv0(const char *argv0) { (void)argv0; }

int mp_plat_self_exe(char *buf, size_t size) {
  wchar_t *exe = self_exe_w();
  if (exe == NULL)
    return mp__os_error("GetModuleFileNameW");
  int n = WideCharToMultiByte(CP_UTF8, 0, exe, -1, buf, (int)size, NULL, NULL);
  free(exe);
  return n > 0 ? 0 : mp__os_error("WideCharToMultiByte(executable path)");
}

/* argv[1] of exactly two arguments, as the CRT split the command line (not
 * CommandLineToArgvW: shell32 would bring USER32 into every program). */
int mp_plat_started_as_child(void) {
  return __argc == 2 && __argv != NULL && __argv[1] != NULL &&
         strncmp(__argv[1], MP_CHILD_MARKER, strlen(MP_CHILD_MARKER)) == 0;
}

void mp_plat_exit(int code) {
  mp_plat_flush_stdio();
  _exit(code);
}
