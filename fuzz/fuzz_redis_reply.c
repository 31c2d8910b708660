/* Fuzzes what the Redis queue reads from a server: the bytes go through hiredis' reply
 * parser (with the element bound the library sets) and every reply through the stream-entry
 * readers of redis_reply.c, as an XREADGROUP and as an XAUTOCLAIM answer. The property: any
 * input is read or refused cleanly, with no crash, leak or unbounded allocation, and every
 * entry read is a valid "ms-seq" id with its message within max_message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "redis.h"

enum { CAP = 64, MAX_MESSAGE = 4096 };

static void check(const mp__rentry *es, size_t n) {
  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(es[i].id);
    if (len == 0 || len >= MP_REDIS_ID_MAX || strchr(es[i].id, '-') == NULL)
      abort();
    if (!es[i].control && es[i].status == 0 && (es[i].data == NULL || es[i].len > MAX_MESSAGE))
      abort();
  }
}

static void read_reply(const redisReply *reply) {
  mp__rentry es[CAP];
  size_t n = 0;
  char cursor[MP_REDIS_ID_MAX];
  if (mp__redis_read_entries(reply, "mpq:{q}", "mpq:{q}:ctl", MAX_MESSAGE, es, CAP, &n) == 0)
    check(es, n);
  for (size_t i = 0; i < n; i++)
    mp__rentry_clear(&es[i]);
  n = 0;
  if (mp__redis_claim_entries(reply, MAX_MESSAGE, es, CAP, &n, cursor) == 0)
    check(es, n);
  for (size_t i = 0; i < n; i++)
    mp__rentry_clear(&es[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  redisReader *r = redisReaderCreate();
  if (r == NULL)
    return 0;
  r->maxelements = MP_REDIS_MAX_ELEMENTS;
  if (redisReaderFeed(r, (const char *)data, size) == REDIS_OK) {
    void *reply = NULL;
    while (redisReaderGetReply(r, &reply) == REDIS_OK && reply != NULL) {
      read_reply(reply);
      freeReplyObject(reply);
      reply = NULL;
    }
  }
  redisReaderFree(r);
  return 0;
}
