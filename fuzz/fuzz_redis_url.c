/* Fuzzes the Redis URL parser (URLs come from command lines and configuration). The
 * property: any input is parsed or refused cleanly; a parsed URL has a host and a port in
 * range, and its shown form is made of the user, host, port and database alone. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  if (s == NULL)
    return 0;
  memcpy(s, data, size);
  s[size] = '\0';
  mp__redis_url u;
  if (mp__redis_url_parse(s, &u) == 0) {
    if (u.host == NULL || u.host[0] == '\0' || u.port < 1 || u.port > 65535 || u.db < 0)
      abort();
    /* The shown form is made of the other parts only (a password that happens to be a
     * substring of them proves nothing, so compare with what it must be). */
    char shown[MP_REDIS_URL_MAX + 64], want[MP_REDIS_URL_MAX + 64];
    mp__redis_url_show(&u, shown, sizeof shown);
    int v6 = strchr(u.host, ':') != NULL;
    snprintf(want, sizeof want, "%s://%s%s%s%s%s:%d/%d", u.tls ? "rediss" : "redis",
             u.user ? u.user : "", u.user ? "@" : "", v6 ? "[" : "", u.host, v6 ? "]" : "", u.port,
             u.db);
    if (strcmp(shown, want) != 0)
      abort();
  }
  mp__redis_url_clear(&u);
  free(s);
  return 0;
}
