/* Win32 backend: an SRW lock and a condition variable held by value. */
#include <windows.h>

#include "../platform.h"

_Static_assert(sizeof(SRWLOCK) <= sizeof(mp_plat_mutex), "mp_plat_mutex too small");
_Static_assert(sizeof(CONDITION_VARIABLE) <= sizeof(mp_plat_cond), "mp_plat_cond too small");

#define SRW(m) ((SRWLOCK *)(void *)(m)->bytes)
#define CV(c) ((CONDITION_VARIABLE *)(void *)(c)->bytes)

int mp_plat_mutex_init(mp_plat_mutex *m) {
  InitializeSRWLock(SRW(m));
  return 0;
}

void mp_plat_mutex_destroy(mp_plat_mutex *m) { (void)m; }

void mp_plat_mutex_lock(mp_plat_mutex *m) { AcquireSRWLockExclusive(SRW(m)); }

void mp_plat_mutex_unlock(mp_plat_mutex *m) { ReleaseSRWLockExclusive(SRW(m)); }

int mp_plat_cond_init(mp_plat_cond *c) {
  InitializeConditionVariable(CV(c));
  return 0;
}

void mp_plat_cond_destroy(mp_plat_cond *c) { (void)c; }

int mp_plat_cond_wait(mp_plat_cond *c, mp_plat_mutex *m, int64_t deadline_ns) {
  DWORD ms = INFINITE;
  if (deadline_ns >= 0) {
    int64_t left = deadline_ns - (int64_t)mp_plat_monotonic_ns();
    if (left <= 0)
      return MP_ETIMEDOUT;
    /* Rounded up: the caller re-checks its deadline, so an early wake-up never counts. */
    int64_t rounded = (left + 999999) / 1000000;
    ms = rounded >= (int64_t)INFINITE ? INFINITE - 1 : (DWORD)rounded;
  }
  if (SleepConditionVariableSRW(CV(c), SRW(m), ms, 0) || GetLastError() != ERROR_TIMEOUT)
    return 0;
  /* Windows timers may fire a little early: before the deadline this is a spurious wake-up
   * and the caller simply waits again. */
  return deadline_ns >= 0 && (int64_t)mp_plat_monotonic_ns() < deadline_ns ? 0 : MP_ETIMEDOUT;
}

void mp_plat_cond_signal(mp_plat_cond *c) { WakeConditionVariable(CV(c)); }

void mp_plat_cond_broadcast(mp_plat_cond *c) { WakeAllConditionVariable(CV(c)); }
