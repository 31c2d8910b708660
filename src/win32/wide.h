/* UTF-8 <-> UTF-16 at the Win32 boundary, and the user-only security descriptor that every
 * named pipe gets (win32/wide.c). Shared by the Win32 backend files. */
#ifndef MP_WIN32_WIDE_H
#define MP_WIN32_WIDE_H

#include <windows.h>

/* malloc'd conversions; NULL on invalid UTF-8 (to_wide) or out of memory. */
wchar_t *mp__to_wide(const char *s);
char *mp__to_utf8(const wchar_t *w, int wlen);

/* A security descriptor whose DACL grants full access to the current user only. */
typedef struct mp__user_sd {
  SECURITY_ATTRIBUTES sa;
  SECURITY_DESCRIPTOR sd;
  TOKEN_USER *user;
  ACL *acl;
} mp__user_sd;

int mp__user_sd_init(mp__user_sd *s);
void mp__user_sd_free(mp__user_sd *s);

#endif /* MP_WIN32_WIDE_H */
