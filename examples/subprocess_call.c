/* The tutorial's subprocess.call example:
 *
 *   import subprocess
 *   print('$ nslookup www.python.org')
 *   r = subprocess.call(['nslookup', 'www.python.org'])
 *   print('Exit code:', r)
 *
 * The network is not available here, so the command is nslookup_standin, an offline
 * stand-in built next to this program that prints the tutorial's answer. */
#include <stdio.h>
#include <string.h>

#include "multiproc.h"

/* The stand-in lives in the directory of this program. */
static void sibling(char *out, size_t size, const char *self, const char *name) {
  const char *slash = strrchr(self, '/');
  const char *bslash = strrchr(self, '\\');
  if (bslash != NULL && (slash == NULL || bslash > slash))
    slash = bslash;
  int dir = slash ? (int)(slash - self) : 1;
  snprintf(out, size, "%.*s/%s", dir, slash ? self : ".", name);
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  char prog[4096];
  sibling(prog, sizeof prog, argv[0], "nslookup_standin");
  const char *cmd[] = {prog, "www.python.org", NULL};

  printf("$ nslookup www.python.org\n");
  fflush(stdout); /* the child writes to the same stdout */
  int code;
  int rc = mp_call(cmd, NULL, &code);
  if (rc != 0) {
    fprintf(stderr, "mp_call: %s: %s\n", mp_strerror(rc), mp_last_error());
    return 1;
  }
  printf("Exit code: %d\n", code);
  return 0;
}
