/* Reads stream entries out of XREADGROUP and XAUTOCLAIM replies. hiredis has parsed the
 * bytes into a tree; everything about its shape is checked here, since a server (or
 * whatever answers on its port) may send anything. fuzz/fuzz_redis_reply.c feeds it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "redis.h"

static int is_array(const redisReply *r) {
  return r && (r->type == REDIS_REPLY_ARRAY) && (r->elements == 0 || r->element != NULL);
}

static int is_string(const redisReply *r) {
  return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) &&
         (r->len == 0 || r->str != NULL);
}

static int same(const redisReply *r, const char *s) {
  return is_string(r) && r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

static int bad_shape(const char *what) {
  return mp_set_error(MP_EPROTO, "redis: unexpected reply shape (%s)", what);
}

/* A stream id: decimal digits, '-', decimal digits. */
static int valid_id(const redisReply *r) {
  if (!is_string(r) || r->len == 0 || r->len >= MP_REDIS_ID_MAX)
    return 0;
  size_t dash = 0;
  for (size_t i = 0; i < r->len; i++) {
    char c = r->str[i];
    if (c == '-' && dash == 0 && i > 0 && i + 1 < r->len)
      dash = i;
    else if (c < '0' || c > '9')
      return 0;
  }
  return dash > 0;
}

/* One [id, fields] pair into e. */
static int read_entry(const redisReply *pair, size_t max_message, int control, mp__rentry *e) {
  memset(e, 0, sizeof *e);
  if (!is_array(pair) || pair->elements != 2 || !valid_id(pair->element[0]))
    return bad_shape("a stream entry is not [id, fields]");
  memcpy(e->id, pair->element[0]->str, pair->element[0]->len);
  e->control = control;
  const redisReply *f = pair->element[1];
  if (f == NULL || f->type == REDIS_REPLY_NIL) {
    e->status = MP_ENOENT;
    return 0;
  }
  if (!is_array(f) || f->elements % 2 != 0)
    return bad_shape("an entry's fields are not name/value pairs");
  if (control)
    return 0; /* a close marker carries nothing the getter needs */
  const redisReply *d = NULL;
  for (size_t i = 0; i + 1 < f->elements; i += 2)
    if (same(f->element[i], "d") && is_string(f->element[i + 1]))
      d = f->element[i + 1];
  if (d == NULL || d->len > max_message) {
    e->status = MP_EPROTO;
    if (d == NULL)
      snprintf(e->why, sizeof e->why, "message %s has no 'd' field", e->id);
    else
      snprintf(e->why, sizeof e->why, "message %s has %zu bytes, above max_message %zu", e->id,
               d->len, max_message);
    return 0;
  }
  e->data = malloc(d->len ? d->len : 1);
  if (e->data == NULL)
    return mp_set_error(MP_ENOMEM, "redis: out of memory for a %zu-byte message", d->len);
  if (d->len)
    memcpy(e->data, d->str, d->len);
  e->len = d->len;
  return 0;
}

/* Reads a list of entries; on failure frees what it appended and leaves *n as it was. */
static int read_list(const redisReply *list, size_t max_message, int control, mp__rentry *out,
                     size_t cap, size_t *n) {
  if (!is_array(list))
    return bad_shape("entries are not a list");
  size_t start = *n;
  int rc = 0;
  for (size_t i = 0; i < list->elements && rc == 0; i++) {
    if (*n >= cap)
      rc = bad_shape("more entries than asked for");
    else if ((rc = read_entry(list->element[i], max_message, control, &out[*n])) == 0)
      (*n)++;
  }
  if (rc < 0)
    while (*n > start)
      mp__rentry_clear(&out[--*n]);
  return rc;
}

int mp__redis_read_entries(const redisReply *reply, const char *data_key, const char *ctl_key,
                           size_t max_message, mp__rentry *out, size_t cap, size_t *n) {
  if (reply == NULL || reply->type == REDIS_REPLY_NIL)
    return 0;
  if (!is_array(reply))
    return bad_shape("XREADGROUP answered neither nil nor a list");
  size_t start = *n;
  int rc = 0;
  for (size_t i = 0; i < reply->elements && rc == 0; i++) {
    const redisReply *s = reply->element[i];
    if (!is_array(s) || s->elements != 2)
      rc = bad_shape("a stream's part is not [name, entries]");
    else if (same(s->element[0], data_key))
      rc = read_list(s->element[1], max_message, 0, out, cap, n);
    else if (ctl_key && same(s->element[0], ctl_key))
      rc = read_list(s->element[1], max_message, 1, out, cap, n);
    else
      rc = bad_shape("entries of a stream that was not asked for");
  }
  if (rc < 0)
    while (*n > start)
      mp__rentry_clear(&out[--*n]);
  return rc;
}

int mp__redis_claim_entries(const redisReply *reply, size_t max_message, mp__rentry *out,
                            size_t cap, size_t *n, char cursor[MP_REDIS_ID_MAX]) {
  /* Redis 7 adds a third element (ids that no longer exist); 6.2 sends two. */
  if (!is_array(reply) || reply->elements < 2 || reply->elements > 3 ||
      !valid_id(reply->element[0]))
    return bad_shape("XAUTOCLAIM answered something other than [cursor, entries, ...]");
  int rc = read_list(reply->element[1], max_message, 0, out, cap, n);
  if (rc == 0) {
    memcpy(cursor, reply->element[0]->str, reply->element[0]->len);
    cursor[reply->element[0]->len] = '\0';
  }
  return rc;
}

void mp__rentry_clear(mp__rentry *e) {
  free(e->data);
  e->data = NULL;
}
