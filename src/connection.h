/* Connections over raw channels (connection.c). Not part of the public API. */
#ifndef MP_CONNECTION_H
#define MP_CONNECTION_H

#include "multiproc.h"
#include "platform.h"

/* Wraps a received duplex channel handle in a connection with default limits (the spawn
 * bootstrap's connection in a child). */
int mp__conn_wrap_handle(mp_plat_handle h, mp_conn **out);

/* The connection's channel (NULL once closed); for tests that inject raw bytes. */
mp_plat_chan *mp__conn_chan(mp_conn *c);

/* 1 if the last receive refused a frame longer than the maximum, which the connection now
 * skips (the stream is intact; the next receive reads the next frame). */
int mp__conn_skipping(const mp_conn *c);

/* A connection over an accepted or connected socket channel. */
int mp__conn_from_chan(mp_plat_chan *chan, mp_conn **out);

#endif /* MP_CONNECTION_H */
