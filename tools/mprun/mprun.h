/* mprun: a parallel command runner built on multiproc's public API. The pieces, one file
 * each: cli.c (options), input.c (input sources), replace.c (commands from templates and
 * replacement strings), sched.c (the job slots), output.c (captured output, grouping,
 * spill), bar.c (the progress bar), joblog.c (the job log and resume), main.c. Everything
 * that touches the OS beyond multiproc is behind sys.h. Functions that end in _locked run
 * with the scheduler's lock held. */
#ifndef MPRUN_H
#define MPRUN_H

#include <stddef.h>
#include <stdint.h>

#include "multiproc.h"
#include "sys.h"

#define MPRUN_VERSION "0.1.0"
#define MPRUN_EXIT_ERROR 255      /* mprun's own errors: bad options, unreadable input */
#define MPRUN_EXIT_MAX_FAILED 101 /* the exit status counts failed jobs up to this */
#define MPRUN_MAX_SLOTS 256       /* -j 0 and any larger -j */

/* ---- options (cli.c) ------------------------------------------------------------------ */

/* One input source: values given after ::: or a file (:::: FILE, -a FILE; "-" and the
 * default source are standard input, path NULL). */
typedef struct source {
  int is_file;
  const char *path;
  char **values; /* the ::: values (borrowed from argv) */
  size_t nvalues;
} source;

typedef enum { HALT_NEVER = 0, HALT_SOON, HALT_NOW } halt_when;
typedef enum { HALT_FAIL = 0, HALT_SUCCESS, HALT_DONE } halt_why;

typedef struct halt_policy {
  halt_when when;
  halt_why why;
  double threshold; /* a count, or a percentage of all jobs when percent is set */
  int percent;
  const char *text; /* as given, for messages */
} halt_policy;

typedef enum { OUT_GROUP = 0, OUT_LINE, OUT_UNGROUP } out_mode;
typedef enum { RESUME_NONE = 0, RESUME_ALL, RESUME_FAILED } resume_mode;

typedef struct options {
  int jobs;       /* slots, 1..MPRUN_MAX_SLOTS */
  int timeout_ms; /* per attempt; 0: none */
  int attempts;   /* --retries: runs of a failing job in all, at least 1 */
  halt_policy halt;
  int output; /* out_mode */
  int keep_order, tag, shell, dry_run, link, null_sep;
  int bar; /* -1: when stdout and stderr are terminals; 0: never; 1: always */
  const char *joblog;
  int resume;     /* resume_mode */
  char **command; /* the command template's words (borrowed from argv) */
  size_t ncommand;
  source *sources; /* owned array */
  size_t nsources;
} options;

/** Parses argv into o: 0 to run, 1 when --help or --version was printed, or an MP_E*
 * code with the message set. */
int cli_parse(options *o, int argc, char **argv);
/** Frees what cli_parse allocated. */
void cli_free(options *o);
/** Puts context before the calling thread's last error message ("context: message") and
 * returns its code. */
int error_context(const char *context);

/* ---- input (input.c) ------------------------------------------------------------------ */

typedef struct input input;

/** Opens every source; all but the first are read whole, the first streams (unless
 * --link, which needs every length first). */
int input_open(input **in, const options *o);
/** Gives the next job's values (one per source; valid until the next call): 1, 0 at the
 * end, or an error. */
int input_next(input *in, char ***values);
/** Returns the number of values each job gets (the number of sources). */
size_t input_width(const input *in);
/** Frees the input. */
void input_free(input *in);

/* ---- commands (replace.c) ------------------------------------------------------------- */

typedef struct tmpl tmpl;

/* One job's command: argv (no shell) or line (--shell), and how it is shown to people
 * (the job log, --dry-run, messages). */
typedef struct command {
  char **argv;
  char *line;
  char *display;
} command;

/** Parses the command template; {N} beyond nsources is an error. windows selects path
 * separators and cmd.exe quoting for --shell. */
int tmpl_create(tmpl **t, char *const *words, size_t n, size_t nsources, int shell, int windows);
/** Builds the command for one job (seq is {#}, slot is {%}). */
int tmpl_expand(const tmpl *t, char *const *values, uint64_t seq, int slot, command *c);
/** Frees what tmpl_expand built. */
void command_free(command *c);
/** Frees the template. */
void tmpl_free(tmpl *t);
/** Returns the values joined by spaces (the --tag text; malloc'd), or NULL. */
char *values_joined(char *const *values, size_t n);

/* A growable string; oom is set (and later appends ignored) when memory runs out. */
typedef struct strbuf {
  char *s;
  size_t len, cap;
  int oom;
} strbuf;
/** Appends n bytes (the string stays NUL-terminated). */
void sb_putn(strbuf *b, const char *s, size_t n);
/** Appends a NUL-terminated string. */
void sb_puts(strbuf *b, const char *s);
/** Appends s quoted for /bin/sh: as it is when it holds only safe characters, else in
 * single quotes. */
void quote_sh(strbuf *b, const char *s);
/** Appends s quoted for a cmd.exe command line with the rules that fixed CVE-2024-24576:
 * MP_EINVAL for a value holding CR or LF, which cmd.exe cannot take safely. */
int quote_cmd(strbuf *b, const char *s);

/* ---- shared counters ------------------------------------------------------------------ */

typedef struct counts {
  uint64_t total; /* jobs to run (known once input_done) */
  int total_known;
  uint64_t done, failed, running;
  uint64_t start_ns;
} counts;

/* ---- the progress bar (bar.c) --------------------------------------------------------- */

typedef struct bar bar;

/** Creates a bar drawn on stderr (ansi: use ESC [ K to erase). */
int bar_create(bar **b, int ansi);
/** Draws it now, or within 100 ms of the last draw only if force. */
void bar_draw_locked(bar *b, const counts *n, int force);
/** Erases it (before other output is written). */
void bar_hide_locked(bar *b);
/** Tells it the last byte that was written to stdout or stderr: after a line left
 * unfinished, the bar starts on a line of its own rather than overwrite the text. */
void bar_after_output_locked(bar *b, char last);
/** Frees it (NULL is ignored). */
void bar_free(bar *b);

/* ---- output (output.c) ---------------------------------------------------------------- */

typedef struct output output;
typedef struct capture capture; /* one slot's capture of its current job's output */

/** Creates the output side: the spill file and ordering window for --keep-order. lock,
 * b (may be NULL) and n are borrowed. */
int output_create(output **o, const options *opt, mp_lock *lock, bar *b, const counts *n);
/** Writes bytes to stream 1 or 2 with the bar out of the way (the lock is held). */
int output_write_locked(output *o, int stream, const void *buf, size_t len);
/** A job ended: prints its captured output now, or keeps it for its turn (keep-order). */
int output_job_locked(output *o, uint64_t seq, capture *c, const char *tag);
/** Seq will print nothing (skipped by --resume, or stopped): later jobs need not wait. */
int output_skip_locked(output *o, uint64_t seq);
/** Prints everything still kept, in order (at the end, whatever did not run). */
int output_flush_locked(output *o);
/** Frees the output side. */
void output_free(output *o);

/** Creates a slot's capture for the given mode. */
int capture_create(capture **c, out_mode mode);
/** Points the job's stdout and stderr at the capture (temporary files, pipes or ours). */
int capture_prepare(capture *c, mp_popen_opts *po);
/** Adds text to the job's stdout (stream 1) or stderr (2) as if the job wrote it: why it
 * could not start, or the command under --dry-run. */
int capture_add(capture *c, output *o, int stream, const char *text);
/** Bytes of stdout the job wrote (the job log's Receive). */
uint64_t capture_received(capture *c);
/** Readies the capture for the next job or attempt, dropping what is left in it; linger
 * says the finished job may have left processes that still write, whose files must then
 * not be reused. */
int capture_recycle(capture *c, int linger);
/** --line-buffer: starts reading the job's stderr on a thread of its own. */
int capture_lines_start(capture *c, output *o, mp_popen *p, const char *tag);
/** --line-buffer: prints stdout's lines until its end: 0, or MP_ETIMEDOUT. */
int capture_lines_pump(capture *c, int timeout_ms);
/** --line-buffer: waits for the stderr reader and prints unfinished lines. */
void capture_lines_finish(capture *c);
/** Frees the capture (NULL is ignored). */
void capture_free(capture *c);

/* ---- the job log (joblog.c) ----------------------------------------------------------- */

typedef struct joblog joblog;

typedef struct joblog_entry {
  uint64_t seq;
  double start;   /* wall clock, seconds since 1970 */
  double runtime; /* seconds */
  uint64_t received;
  int exitval, signal;
  const char *command;
} joblog_entry;

/** Opens the job log: with resume, reads what it holds and appends; without, starts it
 * afresh with GNU parallel's header. */
int joblog_open(joblog **j, const char *path, resume_mode resume);
/** Reads job log text from memory as --resume reads a file (a job log that writes
 * nowhere): for tests and the fuzzer. */
int joblog_parse(joblog **j, const void *data, size_t len, resume_mode resume);
/** Returns 1 if --resume / --resume-failed says job seq need not run again. */
int joblog_skip(const joblog *j, uint64_t seq);
/** Appends one line (flushed at once, so a killed mprun loses no finished job). */
int joblog_write_locked(joblog *j, const joblog_entry *e);
/** Closes the job log (NULL is ignored); 0 or the error of the final flush. */
int joblog_close(joblog *j);

/* ---- running (sched.c) ---------------------------------------------------------------- */

/** Runs every job as the options say and returns mprun's exit status; after a stop request
 * (Ctrl-C, SIGTERM) it ends the process the way that signal would. */
int sched_run(const options *opt);

/* ---- the program (main.c) ------------------------------------------------------------- */

/** mprun itself, called by the entry point with the arguments in UTF-8. */
int mprun_main(int argc, char **argv);

#endif
