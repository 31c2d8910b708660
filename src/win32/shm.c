/* Win32 backend: anonymous shared memory is a pagefile-backed section (CreateFileMappingW
 * with no name); a spawned child maps the duplicated section HANDLE. */
#include <windows.h>
#include <stdlib.h>

#include "../platform.h"

struct mp_plat_shm {
  HANDLE h;
  void *addr;
};

static int map_section(mp_plat_shm **out, HANDLE h, size_t size) {
  mp_plat_shm *m = malloc(sizeof *m);
  if (m == NULL)
    return mp_set_error(MP_ENOMEM, "shared memory: out of memory");
  m->addr = MapViewOfFile(h, FILE_MAP_READ | FILE_MAP_WRITE, 0, 0, size);
  if (m->addr == NULL) {
    int rc = mp__os_error("MapViewOfFile");
    free(m);
    return rc;
  }
  m->h = h;
  *out = m;
  return 0;
}

int mp_plat_shm_create(mp_plat_shm **out, size_t size) {
  uint64_t sz = size;
  /* No SECURITY_ATTRIBUTES: the handle is not inheritable. Sections are zero-filled. */
  HANDLE h = CreateFileMappingW(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, (DWORD)(sz >> 32),
                                (DWORD)sz, NULL);
  if (h == NULL)
    return mp__os_error_code(MP_ENOMEM, (long)GetLastError(), "CreateFileMappingW");
  int rc = map_section(out, h, size);
  if (rc != 0)
    CloseHandle(h);
  return rc;
}

int mp_plat_shm_import(mp_plat_shm **out, mp_plat_handle h, size_t size) {
  int rc = map_section(out, (HANDLE)h, size);
  if (rc != 0)
    CloseHandle((HANDLE)h);
  return rc;
}

void *mp_plat_shm_addr(const mp_plat_shm *m) { return m->addr; }

mp_plat_handle mp_plat_shm_handle(const mp_plat_shm *m) { return (mp_plat_handle)m->h; }

void mp_plat_shm_free(mp_plat_shm *m) {
  if (m == NULL)
    return;
  UnmapViewOfFile(m->addr);
  CloseHandle(m->h);
  free(m);
}

void mp_plat_shm_test_no_memfd(int on) { (void)on; /* sections are Windows' only kind */ }
