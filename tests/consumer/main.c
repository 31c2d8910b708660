/* Links against the installed library and calls into it. */
#include <multiproc.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  unsigned char r[8];
  if (mp_random_bytes(r, sizeof r) != 0)
    return 1;
  if (strcmp(mp_strerror(MP_ETIMEDOUT), "timed out") != 0)
    return 2;
  /* The installed header's generated version matches the library it was installed with. */
  if (strcmp(mp_version(), MP_VERSION_STRING) != 0)
    return 3;
  printf("consumer ok: multiproc %s, pid %lld\n", mp_version(), (long long)mp_getpid());
  return 0;
}
