/* Connections over raw channels (connection.c). Not part of the public API. */
#ifndef MP_CONNECTION_H
#define MP_CONNECTION_H

#include "multiproc.h"
#include "buf.h"
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

/* ---- for a connection with many small messages one way (the pool's worker connections) -- */

/* Switches c to read-ahead before its first receive: each read then takes whatever has
 * arrived, so a burst of messages costs one system call. mp_conn_recv, mp_conn_poll and
 * mp_wait serve buffered messages first. A connection with unread buffered bytes cannot be
 * passed to a child (MP_ESTATE). */
int mp__conn_set_readahead(mp_conn *c);
/* Read-ahead that also takes the handles another process sends along (POSIX; see
 * mp__conn_give_handles): only on a connection whose peer sends them, since taking them costs
 * every read a little. */
int mp__conn_accept_handles(mp_conn *c);
/* 1 if a whole message (or a malformed prefix, to report) waits in c's read-ahead buffer. */
int mp__conn_buffered(const mp_conn *c);
/* Receives the next message of a read-ahead connection without copying: *msg is borrowed
 * until the next receive on c. Errors and timeouts as mp_conn_recv. */
int mp__conn_recv_borrow(mp_conn *c, const unsigned char **msg, size_t *len, int timeout_ms);

/* Builds several messages in one buffer, framed as mp_conn_send frames them: begin
 * reserves a message's length prefix, end fills it in (MP_EINVAL, and the message undone,
 * beyond 2 GiB - 1); mp__conn_send_batch writes them all at once and empties b. */
int mp__conn_msg_begin(mp__buf *b, size_t *at);
int mp__conn_msg_end(mp__buf *b, size_t at);
int mp__conn_send_batch(mp_conn *c, mp__buf *b);

/* Hands n handles to the process at the other end of c, a running child whose process
 * handle is peer (mp__process_wait_handle), to go with c's next batch; this process keeps
 * h and must keep it open until the batch is sent. theirs[i] is what the message names
 * handle i by, for the receiver's mp__conn_take_handles (see platform.h: POSIX sends them
 * along the data, Windows duplicates them into the peer at once). */
int mp__conn_give_handles(mp_conn *c, mp_plat_handle peer, const mp_plat_handle *h, size_t n,
                          uint64_t *theirs);
/* In the receiver of a read-ahead connection: the handles (yours to close) of a message
 * that named n of them by theirs[]; MP_EPROTO if they did not come. */
int mp__conn_take_handles(mp_conn *c, const uint64_t *theirs, size_t n, mp_plat_handle *out);

#endif /* MP_CONNECTION_H */
