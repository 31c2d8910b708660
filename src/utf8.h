/* UTF-8 validation (utf8.c). Not part of the public API. */
#ifndef MP_UTF8_H
#define MP_UTF8_H

#include <stddef.h>

/* 1 if s[0..n) is well-formed UTF-8 (no overlongs, surrogates or values past U+10FFFF). */
int mp__utf8_valid(const char *s, size_t n);

#endif /* MP_UTF8_H */
