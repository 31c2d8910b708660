/* Win32 backend: thread-local slots are fiber-local storage, whose callback runs at every
 * thread's exit (TLS slots have no destructor at all), whoever started the thread. */
#include <windows.h>

#include "../platform.h"

int mp_plat_tls_create(uint64_t *key, void (*dtor)(void *)) {
  /* PFLS_CALLBACK_FUNCTION is void WINAPI (PVOID): on x64 and ARM64 WINAPI is the one
   * calling convention, so the destructor can be registered as it is. */
#if defined(_M_IX86) || defined(__i386__)
#  error "32-bit x86 needs a WINAPI trampoline for FLS callbacks"
#endif
  DWORD k = FlsAlloc((PFLS_CALLBACK_FUNCTION)(void (*)(void))dtor);
  if (k == FLS_OUT_OF_INDEXES)
    return mp__os_error_code(MP_ENOMEM, (long)GetLastError(), "FlsAlloc");
  *key = (uint64_t)k;
  return 0;
}

void mp_plat_tls_free(uint64_t key) { FlsFree((DWORD)key); }

int mp_plat_tls_set(uint64_t key, void *value) {
  return FlsSetValue((DWORD)key, value) ? 0 : mp__os_error("FlsSetValue");
}

void *mp_plat_tls_get(uint64_t key) { return FlsGetValue((DWORD)key); }
