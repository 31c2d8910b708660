/* Fuzzes the manager's request dispatcher end to end: request bytes in, reply bytes out,
 * with a real manager and real queues behind it (no sockets). The input is what a client
 * sends after authentication: frames (cut into pieces of random sizes and put together
 * again by the frame decoder), each a request; when the dispatcher ends a connection (a
 * server-level call answered, or a client gone), the next frames start a new one. A call
 * that would block finds its client gone at the first look. The property: every request
 * gets exactly one reply that Python could read, a pickled (kind, value) with kind
 * '#RETURN', '#ERROR' (with an exception) or '#TRACEBACK'; nothing crashes or leaks.
 *
 * Input: byte 0 seeds the piece sizes, the rest is the stream. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "manager.h"
#include "pickle.h"

#define MAX_MESSAGE 4096

typedef struct client {
  int replies;     /* replies to the current request */
  int alive_calls; /* looks at the client during the current request */
} client;

static int check_reply(void *io, const void *buf, size_t len) {
  client *c = io;
  mp__pk_exc exc;
  mp_value *reply = NULL, *kind = NULL;
  const char *k = NULL;
  size_t n = 0;
  if (mp__pickle_loads(buf, len, &reply, &exc) != 0 || mp_value_len(reply, &n) != 0 || n != 2 ||
      mp_value_at(reply, 0, &kind) != 0 || mp_value_get_str(kind, &k, NULL) != 0)
    abort();
  if (strcmp(k, "#RETURN") != 0 && strcmp(k, "#TRACEBACK") != 0 &&
      !(strcmp(k, "#ERROR") == 0 && exc.kind != MP_PK_EXC_NONE))
    abort();
  mp_value_free(reply);
  c->replies++;
  return 0;
}

/* The client is there when a call first looks, gone when it looks again (a wait). */
static int client_alive(void *io) {
  client *c = io;
  return c->alive_calls++ == 0;
}

static mp_manager *make_manager(void) {
  mp_manager_opts o;
  memset(&o, 0, sizeof o);
  o.allow_remote_shutdown = 1;
  o.max_message = MAX_MESSAGE;
  o.max_values = 1 << 14;
  mp_manager *m = NULL;
  if (mp__manager_create_unbound(&m, "key", 3, &o) != 0 ||
      mp_manager_register_queue(m, "get_task_queue", 0) != 0 ||
      mp_manager_register_queue(m, "small", 1) != 0)
    abort();
  return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  uint32_t seed = data[0];
  mp_manager *m = make_manager();
  client c = {0, 0};
  mp__session s = {m, 0, check_reply, &c, {client_alive, &c, 0}};
  mp__frame_rx rx;
  mp__frame_init(&rx, MAX_MESSAGE);
  size_t pos = 1;
  while (pos < size && !rx.desync) {
    seed = seed * 1103515245u + 12345u;
    size_t piece = 1 + (seed >> 16) % 97, used = 0;
    if (piece > size - pos)
      piece = size - pos;
    int rc = mp__frame_push(&rx, data + pos, piece, &used);
    pos += used;
    c.replies = c.alive_calls = 0;
    if (rc == MP_FRAME_DONE) {
      void *body;
      size_t len;
      mp__frame_take(&rx, &body, &len);
      rc = mp__dispatch(&s, body, len);
      free(body);
    } else if (rc == MP_EPROTO && !rx.desync) {
      rc = mp__dispatch_oversized(&s);
    } else {
      continue;
    }
    if (c.replies > 1 || (c.replies == 0 && rc >= 0))
      abort(); /* one reply per request, unless the client is gone */
    if (rc != MP__KEEP)
      s.accepted = 0; /* the connection ends: the next frames are a new one */
  }
  mp__frame_reset(&rx);
  mp_manager_free(m);
  return 0;
}
