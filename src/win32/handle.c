/* Win32 backend: closing and duplicating handles. */
#include <windows.h>

#include "../platform.h"

void mp_plat_handle_close(mp_plat_handle h) {
  if (h == MP_PLAT_INVALID || h == 0)
    return;
  CloseHandle((HANDLE)h);
}

int mp_plat_handle_dup(mp_plat_handle h, mp_plat_handle *out) {
  HANDLE self = GetCurrentProcess(), copy;
  /* bInheritHandle FALSE: the copy reaches a child only when named explicitly. */
  if (!DuplicateHandle(self, (HANDLE)h, self, &copy, 0, FALSE, DUPLICATE_SAME_ACCESS))
    return mp__os_error("DuplicateHandle");
  *out = (mp_plat_handle)copy;
  return 0;
}
