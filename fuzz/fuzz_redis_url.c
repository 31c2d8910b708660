/* Fuzzes the Redis URL parser (URLs come from command lines and configuration). The
 * property: any input is parsed or refused cleanly; a parsed URL has a host and a port in
 * range, and its shown form never contains the password. */
#include <stdint.h>
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
    char shown[MP_REDIS_URL_MAX + 64];
    mp__redis_url_show(&u, shown, sizeof shown);
    if (u.password && u.password[0] && strlen(u.password) > 3 && strstr(shown, u.password) &&
        !strstr(u.host, u.password) && !(u.user && strstr(u.user, u.password)))
      abort();
  }
  mp__redis_url_clear(&u);
  free(s);
  return 0;
}
