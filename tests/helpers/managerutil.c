#include "managerutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "connection.h"
#include "manager.h"
#include "platform.h"
#include "testutil.h"
#include "value.h"

mp_conn *mp_test_mgr_connect(mp_manager *m) {
  char host[64];
  int port;
  mp_plat_chan *chan;
  mp_conn *c;
  assert_mp_ok(mp__split_address(mp_manager_address(m), host, sizeof host, &port));
  assert_mp_ok(mp_plat_tcp_connect(host, port, 10000, &chan));
  assert_mp_ok(mp__conn_from_chan(chan, &c));
  return c;
}

mp_conn *mp_test_mgr_authed(mp_manager *m, const void *key, size_t keylen) {
  mp_conn *c = mp_test_mgr_connect(m);
  assert_mp_ok(mp__auth_answer(c, key, keylen, 10000));
  assert_mp_ok(mp__auth_deliver(c, key, keylen, 10000));
  return c;
}

void mp_test_mgr_send(mp_conn *c, const char *ident, const char *method, mp_value *args,
                      mp_value *kwds) {
  mp_value *req = mp_value_tuple();
  mp_value_append(req, ident ? mp_value_str(ident) : mp_value_nil());
  mp_value_append(req, mp_value_str(method));
  mp_value_append(req, args ? args : mp_value_tuple());
  mp_value_append(req, kwds ? kwds : mp_value_dict());
  void *buf;
  size_t len;
  assert_mp_ok(mp__pickle_dumps(req, &buf, &len));
  mp_value_free(req);
  assert_mp_ok(mp_conn_send(c, buf, len));
  free(buf);
}

void mp_test_mgr_reply(mp_conn *c, char kind[16], mp__pk_exc *exc, mp_value **value) {
  void *buf;
  size_t len;
  mp_value *reply = NULL, *k;
  const char *s;
  assert_mp_ok(mp_conn_recv(c, &buf, &len, 30000));
  assert_mp_ok(mp__pickle_loads(buf, len, &reply, exc));
  free(buf);
  assert_mp_ok(mp_value_at(reply, 0, &k));
  assert_mp_ok(mp_value_get_str(k, &s, NULL));
  snprintf(kind, 16, "%s", s);
  if (value)
    assert_mp_ok(mp__value_take(reply, 1, value));
  mp_value_free(reply);
}

void mp_test_put_get(mp_queue *q, const char *text) {
  mp_value *v = mp_value_str(text), *got = NULL;
  assert_mp_ok(mp_queue_put_value(q, v, 5000));
  assert_mp_ok(mp_queue_get_value(q, &got, 5000));
  assert_true(mp_value_equal(v, got));
  mp_value_free(v);
  mp_value_free(got);
}
