/* What the manager tests that reach into the library share (test_manager,
 * test_manager_hostile): raw clients that speak the protocol by hand (a TCP connection,
 * authenticated or not, requests built from values, replies read back), and a put/get
 * round trip through a queue. */
#ifndef MP_MANAGERUTIL_H
#define MP_MANAGERUTIL_H

#include <stddef.h>

#include "multiproc.h"
#include "pickle.h"

/* A raw TCP connection to the manager (no handshake yet). */
mp_conn *mp_test_mgr_connect(mp_manager *m);
/* The same after both directions of the handshake with key. */
mp_conn *mp_test_mgr_authed(mp_manager *m, const void *key, size_t keylen);
/* Sends (ident, method, args, kwds); takes args and kwds (NULL: empty). */
void mp_test_mgr_send(mp_conn *c, const char *ident, const char *method, mp_value *args,
                      mp_value *kwds);
/* Reads one reply: its kind ("#RETURN", "#ERROR", "#TRACEBACK") into kind, an '#ERROR''s
 * exception into *exc (may be NULL), and its value into *value (may be NULL: dropped). */
void mp_test_mgr_reply(mp_conn *c, char kind[16], mp__pk_exc *exc, mp_value **value);
/* Puts the text on q and gets it back, equal. */
void mp_test_put_get(mp_queue *q, const char *text);

#endif
