/* What the manager's server and client share besides authentication (auth.c): addresses,
 * and the authkey's copy, which is zeroed before its memory is given back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manager.h"

int mp__key_dup(const void *key, size_t len, char **out) {
  *out = malloc(len + 1);
  if (*out == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory copying an authkey");
  if (len)
    memcpy(*out, key, len);
  (*out)[len] = '\0';
  return 0;
}

void mp__key_free(char *key, size_t len) {
  if (key == NULL)
    return;
  volatile unsigned char *p = (volatile unsigned char *)key; /* not optimised away */
  for (size_t i = 0; i <= len; i++)
    p[i] = 0;
  free(key);
}

int mp__split_address(const char *address, char *host, size_t hostsize, int *port) {
  const char *colon = address ? strrchr(address, ':') : NULL;
  if (colon == NULL)
    return mp_set_error(MP_EINVAL, "manager address '%s' is not \"host:port\"",
                        address ? address : "(null)");
  size_t hl = (size_t)(colon - address);
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (hl >= hostsize || *end != '\0' || end == colon + 1 || p < 0 || p > 65535)
    return mp_set_error(MP_EINVAL, "manager address '%s': bad host or port", address);
  memcpy(host, address, hl);
  host[hl] = '\0';
  if (strcmp(host, "0.0.0.0") == 0)
    host[0] = '\0';
  *port = (int)p;
  return 0;
}
