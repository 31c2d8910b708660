/* mprun's own seam to the operating system: what the multiproc public API does not offer
 * and a command runner needs (catching Ctrl-C, asking about the terminal, temporary files
 * for captured output, raw reads of its input). Implemented once in posix/ and once in
 * win32/, like the library's backends, which also hold the process's entry point (entry.c:
 * the arguments in UTF-8, read as UTF-16 on Windows); everything else in mprun is portable C
 * on top of multiproc.h. Failures set mp_set_error and return its code. */
#ifndef MPRUN_SYS_H
#define MPRUN_SYS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- stop requests (signal.c) --------------------------------------------------------- */

/* The stop requests mprun understands, numbered as the POSIX signals. */
enum { SYS_SIGHUP = 1, SYS_SIGINT = 2, SYS_SIGPIPE = 13, SYS_SIGTERM = 15 };

/* Called on a thread of its own (never in a signal handler) for each stop request. */
typedef void (*sys_stop_fn)(int sig, void *arg);

/** Prepares stop handling; call before any thread starts (POSIX blocks SIGINT, SIGTERM and
 * SIGHUP in every later thread, which children do not inherit, and ignores SIGPIPE). */
int sys_signals_prepare(void);
/** Starts delivering stop requests to fn (POSIX: a sigwait thread; Windows: the console
 * control handler for Ctrl-C, Ctrl-Break and close). */
int sys_signals_watch(sys_stop_fn fn, void *arg);
/** Ends the process as a stop request would have without mprun: POSIX re-raises the signal
 * with its default action (so a calling shell sees "killed by SIGINT"), Windows exits with
 * STATUS_CONTROL_C_EXIT. Never returns. */
void sys_die_by_signal(int sig);

/* ---- the terminal (term.c) ------------------------------------------------------------ */

/** Returns 1 if stream 1 (stdout) or 2 (stderr) is a terminal. */
int sys_isatty(int stream);
/** Returns the terminal's width in columns for stream 1 or 2, or 0 if unknown. */
int sys_term_width(int stream);
/** Gets the terminal on stream 1 or 2 ready for the progress bar and UTF-8 text; returns 1
 * if it understands ANSI "erase line" (ESC [ K), 0 if only carriage returns work. */
int sys_term_prepare(int stream);

/* ---- input and output (io.c) ---------------------------------------------------------- */

/** Writes all len bytes to stream 1 or 2: 0, MP_EBROKEN if the reader is gone, MP_EOS. */
int sys_write_all(int stream, const void *buf, size_t len);

typedef struct sys_in sys_in; /* a file or standard input, read raw (no stdio locks) */
/** Opens a UTF-8 path for reading, or standard input when path is NULL. */
int sys_in_open(sys_in **in, const char *path);
/** Reads up to cap bytes: 0 with *n > 0, 0 with *n == 0 at end of input, or an error. */
int sys_in_read(sys_in *in, void *buf, size_t cap, size_t *n);
/** Closes the input (standard input itself stays open). */
void sys_in_close(sys_in *in);
/** fopen for a UTF-8 path (binary mode: the job log has LF line ends on both systems). */
FILE *sys_fopen(const char *path, const char *mode);

/* A temporary file deleted by the system when the last handle to it closes, so nothing is
 * left behind even if mprun is killed. Children write to it through MP_STDIO_HANDLE. */
typedef struct sys_tmp sys_tmp;
/** Creates an empty temporary file in TMPDIR (POSIX) or GetTempPath (Windows). */
int sys_tmp_create(sys_tmp **t);
/** Returns the OS handle to give mp_popen_opts as an MP_STDIO_HANDLE. */
intptr_t sys_tmp_handle(const sys_tmp *t);
/** Stores the file's size (what children wrote to it). */
int sys_tmp_size(sys_tmp *t, uint64_t *size);
/** Reads up to cap bytes at offset off; *n is 0 only at the end of the file. */
int sys_tmp_read_at(sys_tmp *t, uint64_t off, void *buf, size_t cap, size_t *n);
/** Appends len bytes at the end of the file. */
int sys_tmp_append(sys_tmp *t, const void *buf, size_t len);
/** Empties the file and rewinds it for the next child. */
int sys_tmp_reset(sys_tmp *t);
/** Closes the handle (the file goes when no child holds it any more); NULL is ignored. */
void sys_tmp_free(sys_tmp *t);

/* ---- the process (proc.c) ------------------------------------------------------------- */

/** Returns the wall-clock time in seconds since 1970 (for the job log's Starttime). */
double sys_wall_time(void);
/** Returns 0 if nothing of the finished job started with pid is left (so its temporary
 * files may be reused), 1 if something may be (POSIX: its process group still has members;
 * Windows cannot tell through the public API, so always 1). */
int sys_job_may_linger(int64_t pid);
/** Returns 1 on Windows (the shell is cmd.exe, both / and \ separate paths, input lines
 * may end in CR LF), 0 on POSIX. */
int sys_is_windows(void);

#endif
