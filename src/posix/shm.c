/* POSIX backend: anonymous shared memory, a memfd (or an shm_open name unlinked at once)
 * mapped MAP_SHARED, so that fork children share it and spawn children map the same fd. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../platform.h"
#include "features.h"

#if MP_LINUX && !defined(MFD_NOEXEC_SEAL)
#  define MFD_NOEXEC_SEAL 0x0008U /* Linux 6.3; older headers lack it */
#endif

struct mp_plat_shm {
  int fd;
  void *addr;
  size_t size;
};

static int no_memfd_for_tests;
void mp_plat_shm_test_no_memfd(int on) { no_memfd_for_tests = on; }

static int anon_fd(void) {
#if MP_LINUX
  /* Not executable, and sealed so: where vm.memfd_noexec=2 a memfd without this flag is
   * refused. Kernels before 6.3 do not know the flag (EINVAL): ask again without it. Any
   * other refusal (ENOSYS, a sandbox's EPERM) falls through to shm_open. */
  if (!no_memfd_for_tests) {
    int fd = memfd_create("multiproc-shm", MFD_CLOEXEC | MFD_NOEXEC_SEAL);
    if (fd < 0 && errno == EINVAL)
      fd = memfd_create("multiproc-shm", MFD_CLOEXEC);
    if (fd >= 0)
      return fd;
  }
#endif
  /* No memfd: a random name that nobody else can guess, gone from the namespace at once. */
  for (int tries = 0; tries < 8; tries++) {
    unsigned char r[8];
    char name[40];
    if (mp_plat_random_bytes(r, sizeof r) != 0)
      return -1;
    snprintf(name, sizeof name, "/multiproc-%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2],
             r[3], r[4], r[5], r[6], r[7]);
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
      shm_unlink(name);
      return fd;
    }
    if (errno != EEXIST)
      return -1;
  }
  return -1;
}

static int map_fd(mp_plat_shm **out, int fd, size_t size) {
  mp_plat_shm *m = malloc(sizeof *m);
  if (m == NULL)
    return mp_set_error(MP_ENOMEM, "shared memory: out of memory");
  m->addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m->addr == MAP_FAILED) {
    int rc = mp__os_error("mmap(MAP_SHARED)");
    free(m);
    return rc;
  }
  m->fd = fd;
  m->size = size;
  *out = m;
  return 0;
}

int mp_plat_shm_create(mp_plat_shm **out, size_t size) {
  int fd = anon_fd();
  if (fd < 0)
    return mp__os_error("memfd_create / shm_open");
  if (ftruncate(fd, (off_t)size) != 0) {
    int rc = mp__os_error_code(errno == EFBIG || errno == EINVAL ? MP_EINVAL : MP_ENOMEM, errno,
                               "ftruncate(shared memory)");
    close(fd);
    return rc;
  }
  int rc = map_fd(out, fd, size);
  if (rc != 0)
    close(fd);
  return rc;
}

int mp_plat_shm_import(mp_plat_shm **out, mp_plat_handle h, size_t size) {
  struct stat st;
  int rc;
  if (fstat((int)h, &st) != 0)
    rc = mp__os_error("fstat(shared memory)");
  else if (st.st_size < 0 || (uint64_t)st.st_size < (uint64_t)size)
    rc = mp_set_error(MP_EPROTO, "shared memory: the fd holds %lld bytes, %zu expected",
                      (long long)st.st_size, size);
  else
    rc = map_fd(out, (int)h, size);
  if (rc != 0)
    mp_plat_handle_close(h);
  return rc;
}

void *mp_plat_shm_addr(const mp_plat_shm *m) { return m->addr; }

mp_plat_handle mp_plat_shm_handle(const mp_plat_shm *m) { return (mp_plat_handle)m->fd; }

void mp_plat_shm_free(mp_plat_shm *m) {
  if (m == NULL)
    return;
  munmap(m->addr, m->size);
  close(m->fd);
  free(m);
}
