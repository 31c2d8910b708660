/* Compiler differences, in one place. GCC and Clang (Linux, and mingw-w64 for Windows) are
 * built and tested in CI; the MSVC spellings are written for MSVC but not tested with it.
 * Only compiler headers here: no OS header, so core files may include this. */
#ifndef MP_COMPAT_H
#define MP_COMPAT_H

#include <stdlib.h>
#include <string.h>

/* MSVC accepts C11 but has no _Thread_local keyword in C; it spells it __declspec(thread). */
#if defined(_MSC_VER) && !defined(__clang__)
#  define MP_THREAD_LOCAL __declspec(thread)
#else
#  define MP_THREAD_LOCAL _Thread_local
#endif

/* <stdatomic.h> is used only for lock-free atomics on 32- and 64-bit integers, which MSVC
 * supports from Visual Studio 2022 17.5 with /experimental:c11atomics (CMake adds it). */
#if defined(_MSC_VER) && !defined(__clang__) && _MSC_VER < 1935
#  error "multiproc needs MSVC 19.35 (Visual Studio 2022 17.5) or newer for C11 atomics"
#endif

/* A spin-wait hint: x86's PAUSE, which GCC, Clang and MSVC all spell _mm_pause. */
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64) || defined(_M_IX86)
#  include <immintrin.h>
#  define mp__cpu_relax() _mm_pause()
#else
#  include <stdatomic.h>
#  define mp__cpu_relax() atomic_signal_fence(memory_order_seq_cst)
#endif

/* strdup is POSIX, not ISO C: Windows' CRT calls it _strdup and MSVC warns about the other
 * name. Core code copies strings with this instead. */
static inline char *mp__strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  return p ? memcpy(p, s, n) : NULL;
}

#endif
