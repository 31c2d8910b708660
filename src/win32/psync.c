/* Win32 backend: process-shared lock, semaphore and event are unnamed kernel objects
 * (mutex, semaphore, manual-reset event); a spawned child receives a duplicated HANDLE.
 * A mutex whose owning thread ends is "abandoned": the next wait gets WAIT_ABANDONED and
 * owns it, which is exactly MP_EOWNERDEAD. */
#include <windows.h>
#include <limits.h>
#include <stdlib.h>

#include "../platform.h"

/* Every object is one HANDLE. */
struct pobj {
  HANDLE h;
};
struct mp_plat_plock {
  struct pobj o;
};
struct mp_plat_psem {
  struct pobj o;
};
struct mp_plat_pevent {
  struct pobj o;
};

/* Wraps h (closed on failure) into a new record. */
static int pobj_new(void **out, HANDLE h, const char *what) {
  if (h == NULL)
    return mp__os_error(what);
  struct pobj *o = malloc(sizeof *o);
  if (o == NULL) {
    CloseHandle(h);
    return mp_set_error(MP_ENOMEM, "%s: out of memory", what);
  }
  o->h = h;
  *out = o;
  return 0;
}

static void pobj_free(struct pobj *o) {
  if (o == NULL)
    return;
  CloseHandle(o->h);
  free(o);
}

static DWORD ms_until(int64_t deadline_ns) {
  if (deadline_ns < 0)
    return INFINITE;
  int64_t left = deadline_ns - (int64_t)mp_plat_monotonic_ns();
  if (left <= 0)
    return 0;
  int64_t ms = (left + 999999) / 1000000; /* rounded up: never end a wait early */
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

/* NtQueryMutant and NtQuerySemaphore share one shape; both are in ntdll on every Windows
 * since NT and in Wine. Looked up once (a benign race: every thread finds the same address). */
typedef LONG(NTAPI *nt_query_fn)(HANDLE, int, void *, ULONG, ULONG *);

static nt_query_fn nt_query(const char *name) {
  HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
  return ntdll ? (nt_query_fn)(void (*)(void))GetProcAddress(ntdll, name) : NULL;
}

/* ---- lock ------------------------------------------------------------------------- */

/* Windows mutexes are recursive; multiproc's lock is not. NtQueryMutant tells whether the
 * caller already held the mutex before this wait: its count is 1 when free and drops by
 * one per acquisition, so below 0 means twice (measured under Wine 8: 1, 0, -1). Without
 * it re-entry is simply allowed. */
typedef struct {
  LONG current_count;
  BOOLEAN owned_by_caller;
  BOOLEAN abandoned;
} mutant_info;

static int held_recursively(HANDLE h) {
  static nt_query_fn query;
  static int looked_up;
  if (!looked_up) {
    query = nt_query("NtQueryMutant");
    looked_up = 1;
  }
  mutant_info info;
  return query && query(h, 0 /* MutantBasicInformation */, &info, sizeof info, NULL) >= 0 &&
         info.current_count < 0;
}

int mp_plat_plock_create(mp_plat_plock **out) {
  void *p = NULL;
  int rc = pobj_new(&p, CreateMutexW(NULL, FALSE, NULL), "CreateMutexW");
  if (rc == 0)
    *out = p;
  return rc;
}

int mp_plat_plock_import(mp_plat_plock **out, mp_plat_handle h) {
  void *p = NULL;
  int rc = pobj_new(&p, (HANDLE)h, "mp_plock import");
  if (rc == 0)
    *out = p;
  return rc;
}

mp_plat_handle mp_plat_plock_handle(const mp_plat_plock *l) { return (mp_plat_handle)l->o.h; }

int mp_plat_plock_acquire(mp_plat_plock *l, int64_t deadline_ns) {
  DWORD r = wait_until(l->o.h, deadline_ns);
  switch (r) {
  case WAIT_OBJECT_0:
    if (held_recursively(l->o.h)) {
      ReleaseMutex(l->o.h);
      return mp_set_error(MP_EDEADLK, "the calling thread already holds this lock");
    }
    return 0;
  case WAIT_ABANDONED:
    return mp_set_error(MP_EOWNERDEAD, "the previous holder of the lock died holding it");
  case WAIT_TIMEOUT: return MP_ETIMEDOUT;
  default: return mp__os_error("WaitForSingleObject(mutex)");
  }
}

int mp_plat_plock_release(mp_plat_plock *l) {
  if (ReleaseMutex(l->o.h))
    return 0;
  if (GetLastError() == ERROR_NOT_OWNER)
    return mp_set_error(MP_EPERM, "the calling thread does not hold this lock");
  return mp__os_error("ReleaseMutex");
}

void mp_plat_plock_free(mp_plat_plock *l) { pobj_free(l ? &l->o : NULL); }

/* ---- semaphore -------------------------------------------------------------------- */

int mp_plat_psem_create(mp_plat_psem **out, unsigned initial, unsigned maxvalue) {
  if (initial > LONG_MAX || maxvalue > LONG_MAX)
    return mp_set_error(MP_EINVAL, "mp_psem_create: values above %ld are not supported",
                        (long)LONG_MAX);
  LONG max = maxvalue == 0 ? LONG_MAX : (LONG)maxvalue;
  void *p = NULL;
  int rc = pobj_new(&p, CreateSemaphoreW(NULL, (LONG)initial, max, NULL), "CreateSemaphoreW");
  if (rc == 0)
    *out = p;
  return rc;
}

int mp_plat_psem_import(mp_plat_psem **out, mp_plat_handle h) {
  void *p = NULL;
  int rc = pobj_new(&p, (HANDLE)h, "mp_psem import");
  if (rc == 0)
    *out = p;
  return rc;
}

mp_plat_handle mp_plat_psem_handle(const mp_plat_psem *s) { return (mp_plat_handle)s->o.h; }

int mp_plat_psem_acquire(mp_plat_psem *s, int64_t deadline_ns) {
  DWORD r = wait_until(s->o.h, deadline_ns);
  if (r == WAIT_OBJECT_0)
    return 0;
  return r == WAIT_TIMEOUT ? MP_ETIMEDOUT : mp__os_error("WaitForSingleObject(semaphore)");
}

int mp_plat_psem_release(mp_plat_psem *s) {
  if (ReleaseSemaphore(s->o.h, 1, NULL))
    return 0;
  if (GetLastError() == ERROR_TOO_MANY_POSTS)
    return mp_set_error(MP_EINVAL, "mp_psem_release: released too many times");
  return mp__os_error("ReleaseSemaphore");
}

typedef struct {
  LONG current_count, maximum_count;
} semaphore_info;

int mp_plat_psem_value(mp_plat_psem *s, unsigned *value) {
  static nt_query_fn query;
  static int looked_up;
  if (!looked_up) {
    query = nt_query("NtQuerySemaphore");
    looked_up = 1;
  }
  if (query == NULL)
    return mp_set_error(MP_ENOTSUP, "mp_psem_get_value: ntdll has no NtQuerySemaphore");
  semaphore_info info;
  LONG status = query(s->o.h, 0 /* SemaphoreBasicInformation */, &info, sizeof info, NULL);
  if (status < 0)
    return mp_set_error(MP_EOS, "mp_psem_get_value: NtQuerySemaphore failed (NTSTATUS 0x%08lx)",
                        (unsigned long)status);
  *value = (unsigned)info.current_count;
  return 0;
}

void mp_plat_psem_free(mp_plat_psem *s) { pobj_free(s ? &s->o : NULL); }

/* ---- event ------------------------------------------------------------------------ */

int mp_plat_pevent_create(mp_plat_pevent **out) {
  void *p = NULL;
  int rc = pobj_new(&p, CreateEventW(NULL, TRUE, FALSE, NULL), "CreateEventW");
  if (rc == 0)
    *out = p;
  return rc;
}

int mp_plat_pevent_import(mp_plat_pevent **out, mp_plat_handle h) {
  void *p = NULL;
  int rc = pobj_new(&p, (HANDLE)h, "mp_pevent import");
  if (rc == 0)
    *out = p;
  return rc;
}

mp_plat_handle mp_plat_pevent_handle(const mp_plat_pevent *e) { return (mp_plat_handle)e->o.h; }

int mp_plat_pevent_set(mp_plat_pevent *e) {
  return SetEvent(e->o.h) ? 0 : mp__os_error("SetEvent");
}

int mp_plat_pevent_clear(mp_plat_pevent *e) {
  return ResetEvent(e->o.h) ? 0 : mp__os_error("ResetEvent");
}

int mp_plat_pevent_is_set(mp_plat_pevent *e) {
  return WaitForSingleObject(e->o.h, 0) == WAIT_OBJECT_0;
}

int mp_plat_pevent_wait(mp_plat_pevent *e, int64_t deadline_ns) {
  DWORD r = wait_until(e->o.h, deadline_ns);
  if (r == WAIT_OBJECT_0)
    return 0;
  return r == WAIT_TIMEOUT ? MP_ETIMEDOUT : mp__os_error("WaitForSingleObject(event)");
}

/* A manual-reset event releases every thread waiting when it is set, however soon it is
 * reset; the kernel does not say whether anyone waits. */
int mp_plat_pevent_sleepers(mp_plat_pevent *e) {
  (void)e;
  return MP_ENOTSUP;
}

void mp_plat_pevent_free(mp_plat_pevent *e) { pobj_free(e ? &e->o : NULL); }
