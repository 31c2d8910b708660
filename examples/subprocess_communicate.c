/* The tutorial's Popen + communicate example:
 *
 *   import subprocess
 *   print('$ nslookup')
 *   p = subprocess.Popen(['nslookup'], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
 *                        stderr=subprocess.PIPE)
 *   output, err = p.communicate(b'set q=mx\npython.org\nexit\n')
 *   print(output.decode('utf-8'))
 *   print('Exit code:', p.returncode)
 *
 * The network is not available here, so the command is nslookup_standin, an offline
 * stand-in built next to this program that answers with the tutorial's output. */
#include <stdio.h>
#include <string.h>

#include "multiproc.h"

static void sibling(char *out, size_t size, const char *self, const char *name) {
  const char *slash = strrchr(self, '/');
  const char *bslash = strrchr(self, '\\');
  if (bslash != NULL && (slash == NULL || bslash > slash))
    slash = bslash;
  int dir = slash ? (int)(slash - self) : 1;
  snprintf(out, size, "%.*s/%s", dir, slash ? self : ".", name);
}

static int fail(const char *what, int rc) {
  fprintf(stderr, "%s: %s: %s\n", what, mp_strerror(rc), mp_last_error());
  return 1;
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  char prog[4096];
  sibling(prog, sizeof prog, argv[0], "nslookup_standin");
  const char *cmd[] = {prog, NULL};

  printf("$ nslookup\n");
  mp_popen_opts opts = {0};
  opts.std_in.mode = MP_STDIO_PIPE;
  opts.std_out.mode = MP_STDIO_PIPE;
  opts.std_err.mode = MP_STDIO_PIPE;
  mp_popen *p;
  int rc = mp_popen_create(&p, cmd, &opts);
  if (rc != 0)
    return fail("mp_popen_create", rc);
  static const char input[] = "set q=mx\npython.org\nexit\n";
  char *output, *err;
  rc = mp_popen_communicate(p, input, sizeof input - 1, &output, NULL, &err, NULL, MP_FOREVER);
  if (rc != 0)
    return fail("mp_popen_communicate", rc);
  /* A Windows child writes "\r\n" and our text-mode stdout would add another '\r'. */
  char *w = output;
  for (const char *r = output; *r; r++)
    if (*r != '\r')
      *w++ = *r;
  *w = '\0';
  printf("%s\n", output);
  int code;
  mp_popen_returncode(p, &code);
  printf("Exit code: %d\n", code);
  mp_free(output);
  mp_free(err);
  mp_popen_free(p);
  return 0;
}
