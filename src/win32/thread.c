/* Win32 backend: threads, their names (SetThreadDescription), the CPU count, atomics. */
#include <windows.h>
#include <process.h>
#include <stdlib.h>

#include "../platform.h"

/* A thread's HANDLE is itself the "ended" event: a timed join is WaitForSingleObject. */
struct mp_plat_thread {
  HANDLE h;
};

struct start {
  void (*fn)(void *);
  void *arg;
};

static unsigned __stdcall trampoline(void *p) {
  struct start s = *(struct start *)p;
  free(p);
  s.fn(s.arg);
  return 0;
}

int mp_plat_thread_start(mp_plat_thread **out, void (*fn)(void *), void *arg) {
  mp_plat_thread *t = malloc(sizeof *t);
  struct start *s = malloc(sizeof *s);
  if (t == NULL || s == NULL) {
    free(t);
    free(s);
    return mp_set_error(MP_ENOMEM, "mp_thread_create: out of memory");
  }
  s->fn = fn;
  s->arg = arg;
  /* _beginthreadex rather than CreateThread: the C runtime sets up its per-thread state. */
  uintptr_t h = _beginthreadex(NULL, 0, trampoline, s, 0, NULL);
  if (h == 0) {
    int rc = mp__os_error("_beginthreadex");
    free(t);
    free(s);
    return rc;
  }
  t->h = (HANDLE)h;
  *out = t;
  return 0;
}

/* Milliseconds until the deadline, rounded up so that a wait never ends early. */
static DWORD ms_until(int64_t deadline_ns) {
  if (deadline_ns < 0)
    return INFINITE;
  int64_t left = deadline_ns - (int64_t)mp_plat_monotonic_ns();
  if (left <= 0)
    return 0;
  int64_t ms = (left + 999999) / 1000000;
  return ms >= (int64_t)INFINITE ? INFINITE - 1 : (DWORD)ms;
}

/* WaitForSingleObject until the deadline really passed: Windows timers may fire a little
 * early against the monotonic clock the deadline is measured on. */
static DWORD wait_until(HANDLE h, int64_t deadline_ns) {
  DWORD r;
  do
    r = WaitForSingleObject(h, ms_until(deadline_ns));
  while (r == WAIT_TIMEOUT && deadline_ns >= 0 && (int64_t)mp_plat_monotonic_ns() < deadline_ns);
  return r;
}

int mp_plat_thread_wait(mp_plat_thread *t, int64_t deadline_ns) {
  DWORD r = wait_until(t->h, deadline_ns);
  if (r == WAIT_OBJECT_0)
    return 0;
  return r == WAIT_TIMEOUT ? MP_ETIMEDOUT : mp__os_error("WaitForSingleObject(thread)");
}

void mp_plat_thread_reap(mp_plat_thread *t) {
  CloseHandle(t->h);
  free(t);
}

void mp_plat_thread_detach(mp_plat_thread *t) {
  CloseHandle(t->h);
  free(t);
}

uint64_t mp_plat_thread_id(void) { return (uint64_t)GetCurrentThreadId(); }

/* Windows has no "main thread" flag: remember the thread that ran the C runtime's start-up
 * (the initialiser runs before main, on the main thread). Nothing references the
 * initialiser, so link-time optimisation may drop it unless told not to: GCC and Clang keep
 * a `used` constructor; MSVC keeps the .CRT$XCU pointer only when it has external linkage
 * and the linker is told to /include it (x86 names carry a leading underscore). */
static DWORD main_thread_id;
static void remember_main_thread(void) { main_thread_id = GetCurrentThreadId(); }
#if defined(_MSC_VER) && !defined(__clang__)
#  pragma section(".CRT$XCU", read)
__declspec(allocate(".CRT$XCU")) void (*mp__remember_main_thread_ptr)(void) = remember_main_thread;
#  ifdef _M_IX86
#    pragma comment(linker, "/include:_mp__remember_main_thread_ptr")
#  else
#    pragma comment(linker, "/include:mp__remember_main_thread_ptr")
#  endif
#else
__attribute__((constructor, used)) static void remember_main_thread_ctor(void) {
  remember_main_thread();
}
#endif

int mp_plat_thread_is_main(void) { return GetCurrentThreadId() == main_thread_id; }

/* SetThreadDescription/GetThreadDescription arrived in Windows 10 1607 and are missing
 * from older systems and some Wine versions: look them up instead of linking them. */
typedef HRESULT(WINAPI *set_desc_fn)(HANDLE, PCWSTR);
typedef HRESULT(WINAPI *get_desc_fn)(HANDLE, PWSTR *);

static FARPROC kernel_proc(const char *name) {
  HMODULE k = GetModuleHandleW(L"kernelbase.dll");
  FARPROC p = k ? GetProcAddress(k, name) : NULL;
  if (p == NULL && (k = GetModuleHandleW(L"kernel32.dll")) != NULL)
    p = GetProcAddress(k, name);
  return p;
}

void mp_plat_thread_set_os_name(const char *name) {
  set_desc_fn set = (set_desc_fn)(void (*)(void))kernel_proc("SetThreadDescription");
  wchar_t wide[MP_THREAD_NAME_MAX + 1];
  if (set && MultiByteToWideChar(CP_UTF8, 0, name, -1, wide, MP_THREAD_NAME_MAX + 1) > 0)
    set(GetCurrentThread(), wide);
}

int mp_plat_thread_get_os_name(char *buf, size_t size) {
  get_desc_fn get = (get_desc_fn)(void (*)(void))kernel_proc("GetThreadDescription");
  PWSTR wide = NULL;
  if (get == NULL)
    return mp_set_error(MP_ENOTSUP, "GetThreadDescription is not available on this system");
  HRESULT hr = get(GetCurrentThread(), &wide);
  if (FAILED(hr))
    return mp_set_error(MP_EOS, "GetThreadDescription failed (HRESULT 0x%08lx)", (unsigned long)hr);
  int n = WideCharToMultiByte(CP_UTF8, 0, wide, -1, buf, (int)size, NULL, NULL);
  LocalFree(wide);
  return n > 0 ? 0 : mp__os_error("WideCharToMultiByte");
}

int mp_plat_cpu_count(void) {
  DWORD n = GetActiveProcessorCount(ALL_PROCESSOR_GROUPS);
  return n < 1 ? 1 : (int)n;
}

int64_t mp_plat_atomic_add(int64_t *p, int64_t v) {
  return InterlockedExchangeAdd64((volatile LONG64 *)p, v) + v;
}
