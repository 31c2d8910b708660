/* Win32 backend: clock, randomness, identity, OS error text. */
#include <windows.h>
#include <bcrypt.h>
#include <tlhelp32.h>

#include <stdio.h>

#include "../platform.h"

uint64_t mp_plat_monotonic_ns(void) {
  static LARGE_INTEGER freq; /* constant after boot; a benign race writes the same value */
  LARGE_INTEGER now;
  if (freq.QuadPart == 0)
    QueryPerformanceFrequency(&freq);
  QueryPerformanceCounter(&now);
  uint64_t sec = (uint64_t)(now.QuadPart / freq.QuadPart);
  uint64_t rem = (uint64_t)(now.QuadPart % freq.QuadPart);
  return sec * 1000000000u + rem * 1000000000u / (uint64_t)freq.QuadPart;
}

int mp_plat_random_bytes(void *buf, size_t len) {
  unsigned char *p = buf;
  while (len > 0) {
    ULONG chunk = len > 0x7fffffffu ? 0x7fffffffu : (ULONG)len;
    NTSTATUS st = BCryptGenRandom(NULL, p, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG);
    if (st != 0)
      return mp_set_error(MP_EOS, "BCryptGenRandom failed (NTSTATUS 0x%08lx)", (unsigned long)st);
    p += chunk;
    len -= chunk;
  }
  return 0;
}

int64_t mp_plat_getpid(void) { return (int64_t)GetCurrentProcessId(); }

int64_t mp_plat_getppid(void) {
  /* Windows keeps no parent link beyond the creator's id recorded in the snapshot. */
  DWORD self = GetCurrentProcessId();
  int64_t parent = 0;
  HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);
  if (snap == INVALID_HANDLE_VALUE)
    return 0;
  PROCESSENTRY32W pe;
  pe.dwSize = sizeof pe;
  for (BOOL ok = Process32FirstW(snap, &pe); ok; ok = Process32NextW(snap, &pe)) {
    if (pe.th32ProcessID == self) {
      parent = (int64_t)pe.th32ParentProcessID;
      break;
    }
  }
  CloseHandle(snap);
  return parent;
}

long mp_plat_last_os_error(void) { return (long)GetLastError(); }

void mp_plat_os_error_text(long err, char *buf, size_t size) {
  wchar_t wide[256];
  if (size == 0)
    return;
  DWORD n = FormatMessageW(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL,
                           (DWORD)err, 0, wide, (DWORD)(sizeof wide / sizeof wide[0]), NULL);
  while (n > 0 && (wide[n - 1] == L'\r' || wide[n - 1] == L'\n' || wide[n - 1] == L'.'))
    wide[--n] = L'\0';
  if (n == 0 || WideCharToMultiByte(CP_UTF8, 0, wide, -1, buf, (int)size, NULL, NULL) == 0) {
    buf[0] = '\0';
    if (size > 24)
      snprintf(buf, size, "Windows error %lu", (unsigned long)err);
  }
}

static SRWLOCK global_lock = SRWLOCK_INIT;

void mp_plat_global_lock(void) { AcquireSRWLockExclusive(&global_lock); }

void mp_plat_global_unlock(void) { ReleaseSRWLockExclusive(&global_lock); }

void mp_plat_sleep_ms(int ms) { Sleep((DWORD)ms); }
