/* Win32 backend for processes: the program re-executes itself (CreateProcessW, suspended),
 * joins a kill-on-close job object so that children die with this process, receives the
 * handles its arguments name by DuplicateHandle (nothing is made inheritable for it except
 * private duplicates of the standard handles, named in a handle list), and reports exit
 * codes in the POSIX convention: terminate -15, kill -9, access violation -11. */
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <wchar.h>

#include "../platform.h"

/* Exit codes that TerminateProcess uses for our terminate and kill: "MP" plus the signal. */
#define MP_WIN_SIGNAL_BASE 0x4D500000u

/* ---- the job object ------------------------------------------------------------------- */

static INIT_ONCE job_once = INIT_ONCE_STATIC_INIT;
static HANDLE job;

static BOOL CALLBACK create_job(PINIT_ONCE once, PVOID param, PVOID *ctx) {
  (void)once, (void)param, (void)ctx;
  job = CreateJobObjectW(NULL, NULL);
  if (job == NULL)
    return TRUE; /* reported by assign_job */
  JOBOBJECT_EXTENDED_LIMIT_INFORMATION info;
  ZeroMemory(&info, sizeof info);
  info.BasicLimitInformation.LimitFlags =
      JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | JOB_OBJECT_LIMIT_BREAKAWAY_OK;
  SetInformationJobObject(job, JobObjectExtendedLimitInformation, &info, sizeof info);
  return TRUE;
}

static int assign_job(HANDLE process) {
  InitOnceExecuteOnce(&job_once, create_job, NULL, NULL);
  if (job == NULL)
    return mp__os_error("CreateJobObjectW");
  if (!AssignProcessToJobObject(job, process))
    return mp__os_error("AssignProcessToJobObject");
  return 0;
}

/* ---- spawn ---------------------------------------------------------------------------- */

/* The full path of this executable, however long. Caller frees. */
static wchar_t *self_exe_w(void) {
  DWORD cap = MAX_PATH;
  for (;;) {
    wchar_t *buf = malloc(cap * sizeof *buf);
    if (buf == NULL)
      return NULL;
    DWORD n = GetModuleFileNameW(NULL, buf, cap);
    if (n == 0) {
      free(buf);
      return NULL;
    }
    if (n < cap)
      return buf;
    free(buf);
    cap *= 2;
  }
}

/* Inheritable duplicates of the standard handles, private to one CreateProcessW call. */
typedef struct std_dups {
  HANDLE h[3];
  HANDLE list[3];
  DWORD n;
} std_dups;

static void dup_std_handles(std_dups *d) {
  static const DWORD which[3] = {STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE};
  HANDLE self = GetCurrentProcess();
  d->n = 0;
  for (int i = 0; i < 3; i++) {
    HANDLE s = GetStdHandle(which[i]);
    d->h[i] = NULL;
    if (s != NULL && s != INVALID_HANDLE_VALUE &&
        DuplicateHandle(self, s, self, &d->h[i], 0, TRUE, DUPLICATE_SAME_ACCESS))
      d->list[d->n++] = d->h[i];
  }
}

static void close_std_dups(std_dups *d) {
  for (int i = 0; i < 3; i++)
    if (d->h[i])
      CloseHandle(d->h[i]);
}

static int create_suspended(wchar_t *cmdline, const wchar_t *exe, PROCESS_INFORMATION *pi) {
  std_dups d;
  dup_std_handles(&d);
  SIZE_T size = 0;
  InitializeProcThreadAttributeList(NULL, 1, 0, &size);
  LPPROC_THREAD_ATTRIBUTE_LIST attrs = malloc(size);
  STARTUPINFOEXW si;
  ZeroMemory(&si, sizeof si);
  si.StartupInfo.cb = sizeof si;
  si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
  si.StartupInfo.hStdInput = d.h[0];
  si.StartupInfo.hStdOutput = d.h[1];
  si.StartupInfo.hStdError = d.h[2];
  BOOL ok = attrs != NULL && InitializeProcThreadAttributeList(attrs, 1, 0, &size);
  if (ok && d.n > 0)
    ok = UpdateProcThreadAttribute(attrs, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST, d.list,
                                   d.n * sizeof(HANDLE), NULL, NULL);
  si.lpAttributeList = attrs;
  int rc = 0;
  if (!ok)
    rc = mp__os_error("InitializeProcThreadAttributeList");
  else if (!CreateProcessW(exe, cmdline, NULL, NULL, d.n > 0,
                           CREATE_SUSPENDED | EXTENDED_STARTUPINFO_PRESENT, NULL, NULL,
                           &si.StartupInfo, pi))
    rc = mp__os_error_code(MP_ECHILD, (long)GetLastError(), "CreateProcessW(self)");
  if (attrs) {
    DeleteProcThreadAttributeList(attrs);
    free(attrs);
  }
  close_std_dups(&d);
  return rc;
}

static int give_handles(HANDLE child, mp_plat_spawn_req *req) {
  for (size_t i = 0; i < req->nhandles; i++) {
    HANDLE v = NULL;
    if (!DuplicateHandle(GetCurrentProcess(), (HANDLE)req->handles[i], child, &v, 0, FALSE,
                         DUPLICATE_SAME_ACCESS))
      return mp__os_error("DuplicateHandle(into child)");
    req->child_handles[i] = (mp_plat_handle)v;
  }
  return 0;
}

int mp_plat_spawn_self(mp_plat_proc *p, mp_plat_spawn_req *req) {
  wchar_t *exe = self_exe_w();
  if (exe == NULL)
    return mp__os_error("GetModuleFileNameW");
  size_t cap = wcslen(exe) + 128;
  wchar_t *cmdline = malloc(cap * sizeof *cmdline);
  if (cmdline == NULL) {
    free(exe);
    return mp_set_error(MP_ENOMEM, "spawn: out of memory");
  }
  /* The path is quoted; it cannot contain '"' on Windows. The marker has no spaces. */
  _snwprintf(cmdline, cap, L"\"%ls\" " MP_CHILD_MARKER_W L"%lu:%llu:%d", exe,
             (unsigned long)GetCurrentProcessId(), (unsigned long long)req->bootstrap, req->flags);
  cmdline[cap - 1] = L'\0';
  PROCESS_INFORMATION pi;
  int rc = create_suspended(cmdline, exe, &pi);
  free(cmdline);
  free(exe);
  if (rc)
    return rc;
  if (req->flags & MP_CHILD_DIE_WITH_PARENT)
    rc = assign_job(pi.hProcess);
  if (rc == 0)
    rc = give_handles(pi.hProcess, req);
  if (rc) {
    TerminateProcess(pi.hProcess, MP_WIN_SIGNAL_BASE | MP_SIG_KILL);
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
    return rc;
  }
  ResumeThread(pi.hThread);
  CloseHandle(pi.hThread);
  p->pid = pi.dwProcessId;
  p->wait_handle = (mp_plat_handle)pi.hProcess;
  p->reaped = 0;
  p->exit_code = 0;
  return 0;
}

int mp_plat_fork(mp_plat_proc *p, int die, int (*child_fn)(void *), void *ctx) {
  (void)p, (void)die, (void)child_fn, (void)ctx;
  return mp_set_error(MP_EINVAL, "the fork start method does not exist on Windows; use spawn");
}

void mp_plat_fork_child_close_fds(const mp_plat_handle *keep, size_t n) {
  (void)keep, (void)n; /* Windows never forks */
}

/* The child takes its bootstrap handle out of the parent, which closes its own copy once
 * the child has said hello: no handle is ever made inheritable for it. */
int mp_plat_bootstrap_handle(int64_t parent_pid, int64_t value, mp_plat_handle *out) {
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

/* Unhandled exceptions end the process with the exception code, which exit-code decoding
 * maps to a signal number, instead of a crash dialog or a debugger. */
static LONG WINAPI crash_filter(EXCEPTION_POINTERS *ep) {
  fflush(NULL);
  TerminateProcess(GetCurrentProcess(), ep->ExceptionRecord->ExceptionCode);
  return EXCEPTION_EXECUTE_HANDLER;
}

void mp_plat_child_setup(int64_t parent_pid, int die) {
  (void)parent_pid, (void)die; /* the job object, assigned by the parent, does this */
  SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX);
  SetUnhandledExceptionFilter(crash_filter);
}

/* ---- waiting and signalling ------------------------------------------------------------ */

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

int mp_plat_proc_wait(mp_plat_proc *p, int timeout_ms) {
  if (p->reaped)
    return 0;
  DWORD w =
      WaitForSingleObject((HANDLE)p->wait_handle, timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms);
  if (w == WAIT_TIMEOUT)
    return MP_ETIMEDOUT;
  if (w != WAIT_OBJECT_0)
    return mp__os_error("WaitForSingleObject(process)");
  DWORD code = 0;
  if (!GetExitCodeProcess((HANDLE)p->wait_handle, &code))
    return mp__os_error("GetExitCodeProcess");
  p->exit_code = decode_exit_code(code);
  p->reaped = 1; /* the handle stays open (and signalled) for mp_wait until release */
  return 0;
}

int mp_plat_proc_signal(mp_plat_proc *p, int sig) {
  if (p->reaped || p->wait_handle == MP_PLAT_INVALID)
    return 0;
  if (WaitForSingleObject((HANDLE)p->wait_handle, 0) == WAIT_OBJECT_0)
    return 0; /* already exited: nothing to do, and its exit code stays its own */
  if (!TerminateProcess((HANDLE)p->wait_handle, MP_WIN_SIGNAL_BASE | (DWORD)sig) &&
      WaitForSingleObject((HANDLE)p->wait_handle, 0) != WAIT_OBJECT_0)
    return mp__os_error("TerminateProcess");
  return 0;
}

void mp_plat_proc_release(mp_plat_proc *p) {
  if (p->wait_handle != MP_PLAT_INVALID)
    CloseHandle((HANDLE)p->wait_handle);
  p->wait_handle = MP_PLAT_INVALID;
}

/* ---- identity of this program ---------------------------------------------------------- */

int mp_plat_self_exe(char *buf, size_t size) {
  wchar_t *exe = self_exe_w();
  if (exe == NULL)
    return mp__os_error("GetModuleFileNameW");
  int n = WideCharToMultiByte(CP_UTF8, 0, exe, -1, buf, (int)size, NULL, NULL);
  free(exe);
  return n > 0 ? 0 : mp__os_error("WideCharToMultiByte(executable path)");
}

int mp_plat_started_as_child(void) { return wcsstr(GetCommandLineW(), MP_CHILD_MARKER_W) != NULL; }

void mp_plat_exit(int code) {
  fflush(NULL);
  _exit(code);
}
