/* Shared by the Redis tests: the fixture's server, and producer and consumer processes
 * that share nothing with the test but a URL and queue names. */
#ifndef MP_REDISUTIL_H
#define MP_REDISUTIL_H

#include "multiproc.h"

/* The URL of the server the ctest fixture started (MP_REDIS_DIR/url). */
const char *mp_test_redis_url(void);
/* The URL in DIR/url of a server started with redis-fixture.sh (a private one). */
const char *mp_test_redis_url_of(const char *dir, char *buf, size_t size);

/* Spawns a producer: `count` verified messages (tests/helpers/testutil.h) of producer `id`
 * into the joinable queue `name`, pipelined, then flushed. Exit code 0 on success. */
mp_process *mp_test_redis_producer(const char *url, const char *name, int id, int count);
/* Spawns a consumer of the joinable queue `name` until it is closed: checks each message,
 * puts (producer, seq) as two uint32 on the plain queue `results`, then marks it done.
 * lease_ms 0: the default. Exit code 0 on success. */
mp_process *mp_test_redis_consumer(const char *url, const char *name, const char *results,
                                   int lease_ms);
/* Gets the next message from q within timeout_ms and checks it is the string want. */
void mp_test_get_str(mp_queue *q, const char *want, int timeout_ms);
/* Joins p (two minutes at most), checks it exited with 0, frees it. */
void mp_test_join_ok(mp_process *p);
/* Reads the (producer, seq) reports from `results` and checks each of producers x
 * per_producer messages was reported exactly once and nothing else was. midway (may be
 * NULL) runs once after `after` reports were read (e.g. to restart the server). */
void mp_test_redis_check_results(const char *url, const char *results, int producers,
                                 int per_producer, void (*midway)(void), int after);

#endif
