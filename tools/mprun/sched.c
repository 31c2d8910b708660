/* Scheduling. One reader thread turns input into jobs on a bounded queue; up to -j slot
 * threads each take a job, run it to the end (retries included) and then, under the one
 * lock, print its output, log it, count it and check the halt policy. The main thread only
 * redraws the progress bar and waits for the end. Slots start lazily, when the queue holds
 * more jobs than there are slots waiting.
 *
 * Every job leads a process group of its own (new_process_group), so a tree kill reaches
 * its descendants on POSIX as the job object does on Windows; a terminal's Ctrl-C then
 * reaches mprun alone, which kills every running job's tree. Stopping is a level that only
 * rises: soon (start nothing new), now (also kill the running jobs), signal (now, then end
 * as the signal would). A job killed because mprun stops is neither printed nor logged, so
 * --resume runs it again. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mprun.h"

#define QUEUE_MAX 1024
#define STOP_GRACE_MS 5000 /* after a stop request, how long slots may take to finish */

typedef enum { STOP_NONE = 0, STOP_SOON, STOP_NOW, STOP_SIGNAL } stop_level;

typedef struct job {
  struct job *next;
  uint64_t seq;
  char **values; /* the input's values, in the same allocation */
} job;

typedef struct run run;

typedef struct slot {
  run *r;
  int index; /* {%}: 1 .. -j */
  mp_thread *thread;
  capture *cap;
  mp_popen *live; /* the running job, for stop_locked to kill */
  int stopped;    /* its job was killed because mprun stops */
  int exited;
} slot;

struct run {
  const options *opt;
  input *in;
  tmpl *tmpl;
  output *out;
  bar *bar;
  joblog *log;
  mp_lock *lock;
  mp_cond *work;  /* slots wait for jobs */
  mp_cond *space; /* the reader waits for room in the queue */
  mp_cond *ended; /* the main thread waits for slots and input to end */
  job *head, *tail;
  size_t queued;
  int input_done, reader_done;
  slot slots[MPRUN_MAX_SLOTS];
  int nstarted, nwaiting, nalive;
  stop_level stop;
  int stop_sig;
  int halted, halt_status;
  int error; /* mprun's own failure: exit 255 */
  uint64_t seq, skipped;
  counts n;
  mp_thread *reader;
};

/* What one job came to. */
typedef struct outcome {
  int exitval, signal;
  int stopped, linger;
  double start, runtime;
  uint64_t received;
} outcome;

static int failed(const outcome *o) { return o->exitval != 0 || o->signal != 0; }

/* ---- messages and stopping ----------------------------------------------------------- */

static void say_locked(run *r, const char *fmt, ...) MP_PRINTF(2, 3);

static void say_locked(run *r, const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  output_write_locked(r->out, 2, msg, strlen(msg));
}

/* Raises the stop level; from "now" on, every running job's tree is killed. */
static void stop_locked(run *r, stop_level level, int sig) {
  if (level <= r->stop)
    return;
  r->stop = level;
  if (level == STOP_SIGNAL)
    r->stop_sig = sig;
  for (int i = 0; level >= STOP_NOW && i < r->nstarted; i++) {
    slot *s = &r->slots[i];
    if (s->live != NULL && !s->stopped) {
      s->stopped = 1;
      mp_popen_kill_tree(s->live);
    }
  }
  mp_cond_notify_all(r->work);
  mp_cond_notify_all(r->space);
  mp_cond_notify_all(r->ended);
}

/* mprun's own failure (not a job's): say so once, exit 255, start nothing new. */
static void own_error_locked(run *r, const char *what) {
  if (!r->error)
    say_locked(r, "mprun: %s\n", what);
  r->error = 1;
  stop_locked(r, STOP_SOON, 0);
}

/* A failed write to our stdout or stderr: a closed pipe ends mprun as SIGPIPE would. */
static void output_failed_locked(run *r, int rc) {
  if (rc == MP_EBROKEN)
    stop_locked(r, STOP_SIGNAL, SYS_SIGPIPE);
  else if (rc != 0)
    own_error_locked(r, mp_last_error());
}

static void on_stop_request(int sig, void *arg) {
  run *r = arg;
  mp_lock_acquire(r->lock, MP_FOREVER);
  stop_locked(r, STOP_SIGNAL, sig);
  mp_lock_release(r->lock);
}

/* ---- the halt policy ----------------------------------------------------------------- */

static void halt_check_locked(run *r, const outcome *o, const command *c, uint64_t seq) {
  const halt_policy *h = &r->opt->halt;
  if (h->when == HALT_NEVER || r->stop != STOP_NONE)
    return;
  uint64_t count = h->why == HALT_FAIL      ? r->n.failed
                   : h->why == HALT_SUCCESS ? r->n.done - r->n.failed
                                            : r->n.done;
  if (h->percent && (!r->n.total_known || r->n.total == 0))
    return; /* a share of a total that is not known yet */
  double want = h->percent ? h->threshold * (double)r->n.total / 100.0 : h->threshold;
  if ((double)count < want)
    return;
  r->halted = 1;
  /* GNU parallel's rule: with fail=1 mprun exits with the failed job's own status. */
  r->halt_status = o->exitval > 0 && o->exitval < 256 ? o->exitval : 1;
  say_locked(r, "mprun: --halt %s: reached at job %llu (%s); %s\n", h->text,
             (unsigned long long)seq, c->display ? c->display : "?",
             h->when == HALT_NOW ? "killing the running jobs" : "waiting for the running jobs");
  stop_locked(r, h->when == HALT_NOW ? STOP_NOW : STOP_SOON, 0);
}

static int exit_status(const run *r) {
  const halt_policy *h = &r->opt->halt;
  uint64_t failed = r->n.failed;
  if (r->error)
    return MPRUN_EXIT_ERROR;
  if (h->when != HALT_NEVER && h->why == HALT_FAIL && h->percent)
    return r->n.total ? (int)(failed * 100 / r->n.total) : 0;
  if (r->halted && h->why == HALT_SUCCESS)
    return 0;
  if (r->halted && h->why == HALT_FAIL && h->threshold == 1)
    return r->halt_status;
  return failed > MPRUN_EXIT_MAX_FAILED ? MPRUN_EXIT_MAX_FAILED : (int)failed;
}

/* ---- running one job ----------------------------------------------------------------- */

/* Why a job could not start, in the shell's words: 127 not found, 126 not runnable. */
static int start_failure_status(int rc) {
  return rc == MP_ENOENT ? 127 : rc == MP_EPERM ? 126 : -1;
}

static int note_start_failure(slot *s, uint64_t seq, int rc, outcome *o) {
  char msg[1200];
  snprintf(msg, sizeof msg, "mprun: job %llu: %s\n", (unsigned long long)seq, mp_last_error());
  o->exitval = start_failure_status(rc);
  return capture_add(s->cap, s->r->out, 2, msg);
}

/* Registers p as the slot's live job so a stop can kill it; killed at once if mprun is
 * already stopping (the stop may have looked at this slot before p existed). */
static void go_live(slot *s, mp_popen *p) {
  run *r = s->r;
  mp_lock_acquire(r->lock, MP_FOREVER);
  s->live = p;
  s->stopped = r->stop >= STOP_NOW;
  if (s->stopped)
    mp_popen_kill_tree(p);
  mp_lock_release(r->lock);
}

static int go_dead(slot *s) {
  mp_lock_acquire(s->r->lock, MP_FOREVER);
  int stopped = s->stopped;
  s->live = NULL;
  s->stopped = 0;
  mp_lock_release(s->r->lock);
  return stopped;
}

/* Waits for the job (reading its lines with --line-buffer) until its timeout, when its
 * whole tree is killed. Returns 1 if it timed out, 0 if it ended, or mprun's own error. */
static int wait_job(slot *s, mp_popen *p, const char *tag) {
  const options *opt = s->r->opt;
  int timeout = opt->timeout_ms > 0 ? opt->timeout_ms : MP_FOREVER, rc = 0;
  uint64_t t0 = mp_monotonic_ns();
  if (opt->output == OUT_LINE) {
    if ((rc = capture_lines_start(s->cap, s->r->out, p, tag)) != 0) {
      /* Nobody would read its stderr, which could fill and block it: end it. */
      mp_popen_kill_tree(p);
      mp_popen_wait(p, MP_FOREVER);
      return rc;
    }
    rc = capture_lines_pump(s->cap, timeout);
    if (rc == 0 && timeout != MP_FOREVER) {
      uint64_t spent = (mp_monotonic_ns() - t0) / 1000000u;
      timeout = spent >= (uint64_t)timeout ? 0 : timeout - (int)spent;
    }
  }
  if (rc == 0 || opt->output != OUT_LINE)
    rc = mp_popen_wait(p, timeout);
  int timed_out = rc == MP_ETIMEDOUT;
  if (timed_out)
    mp_popen_kill_tree(p);
  if (opt->output == OUT_LINE) {
    if (timed_out)
      capture_lines_pump(s->cap, MP_FOREVER); /* the tree is dead: the pipes end */
    capture_lines_finish(s->cap);
  }
  if (rc != 0)
    mp_popen_wait(p, MP_FOREVER);
  return timed_out;
}

/* The status as the job log shows it: an exit code, or a signal with Exitval 0 (as GNU
 * parallel logs it); a Windows crash status stays a (negative) exit code. */
static void decode_status(int code, outcome *o) {
  if (code < 0 && code > -65) {
    o->signal = -code;
    o->exitval = 0;
  } else {
    o->exitval = code;
  }
}

static int run_attempt(slot *s, uint64_t seq, const command *c, const char *tag, outcome *o) {
  const options *opt = s->r->opt;
  mp_popen_opts po;
  mp_popen *p;
  memset(&po, 0, sizeof po);
  memset(o, 0, sizeof *o);
  po.std_in.mode = MP_STDIO_DEVNULL; /* mprun's own stdin may be the input */
  po.search_path = 1;
  po.new_process_group = 1;
  int rc = capture_prepare(s->cap, &po);
  if (rc != 0)
    return rc;
  o->start = sys_wall_time();
  uint64_t t0 = mp_monotonic_ns();
  if (opt->dry_run) {
    char *line = malloc(strlen(c->display) + 2);
    if (line == NULL)
      return mp_set_error(MP_ENOMEM, "out of memory");
    strcpy(line, c->display);
    strcat(line, "\n");
    rc = capture_add(s->cap, s->r->out, 1, line);
    free(line);
    return rc;
  }
  rc = opt->shell ? mp_popen_create_shell(&p, c->line, &po)
                  : mp_popen_create(&p, (const char *const *)c->argv, &po);
  if (rc != 0)
    return note_start_failure(s, seq, rc, o);
  go_live(s, p);
  int waited = wait_job(s, p, tag), code = -1;
  o->stopped = go_dead(s);
  mp_popen_returncode(p, &code);
  o->linger = sys_job_may_linger(mp_popen_pid(p));
  mp_popen_free(p);
  if (waited < 0)
    return waited;
  o->runtime = (double)(mp_monotonic_ns() - t0) / 1e9;
  o->received = capture_received(s->cap);
  if (waited == 1) {
    o->exitval = -1; /* GNU parallel's "killed by timeout" */
    o->signal = 9;
  } else {
    decode_status(code, o);
  }
  return 0;
}

/* Prints, logs and counts a finished job, under the lock. */
static void finish_locked(slot *s, const job *j, const command *c, const char *tag,
                          const outcome *o) {
  run *r = s->r;
  r->n.running--;
  if (o->stopped) {
    output_failed_locked(r, output_skip_locked(r->out, j->seq));
    capture_recycle(s->cap, o->linger);
    return;
  }
  r->n.done++;
  if (failed(o))
    r->n.failed++;
  output_failed_locked(r, output_job_locked(r->out, j->seq, s->cap, tag));
  if (capture_recycle(s->cap, o->linger) != 0)
    own_error_locked(r, mp_last_error());
  joblog_entry e = {j->seq,
                    o->start,
                    o->runtime,
                    o->received,
                    o->exitval,
                    o->signal,
                    c->display ? c->display : ""};
  if (!r->opt->dry_run && joblog_write_locked(r->log, &e) != 0)
    own_error_locked(r, mp_last_error());
  halt_check_locked(r, o, c, j->seq);
  bar_draw_locked(r->bar, &r->n, 0);
}

/* Runs a job, retrying a failure up to --retries times, and finishes it. Called without
 * the lock; returns with it held. */
static void run_job(slot *s, job *j) {
  run *r = s->r;
  const options *opt = r->opt;
  command c;
  outcome o;
  char *tag = opt->tag ? values_joined(j->values, input_width(r->in)) : NULL;
  int rc = tmpl_expand(r->tmpl, j->values, j->seq, s->index, &c);
  if (rc != 0) {
    memset(&o, 0, sizeof o);
    o.start = sys_wall_time();
    rc = note_start_failure(s, j->seq, rc, &o);
  }
  for (int attempt = 1; rc == 0 && c.display != NULL; attempt++) {
    rc = run_attempt(s, j->seq, &c, tag, &o);
    if (rc != 0 || o.stopped || !failed(&o) || attempt >= opt->attempts)
      break;
    mp_lock_acquire(r->lock, MP_FOREVER);
    int stopping = r->stop != STOP_NONE;
    mp_lock_release(r->lock);
    if (stopping || capture_recycle(s->cap, o.linger) != 0)
      break;
  }
  mp_lock_acquire(r->lock, MP_FOREVER);
  if (rc != 0) {
    own_error_locked(r, mp_last_error());
    memset(&o, 0, sizeof o);
    o.stopped = 1;
  }
  finish_locked(s, j, &c, tag, &o);
  command_free(&c);
  free(tag);
}

/* ---- the threads --------------------------------------------------------------------- */

static void slot_main(void *arg) {
  slot *s = arg;
  run *r = s->r;
  mp_lock_acquire(r->lock, MP_FOREVER);
  for (;;) {
    while (r->head == NULL && !r->input_done && r->stop == STOP_NONE) {
      r->nwaiting++;
      mp_cond_wait(r->work, MP_FOREVER);
      r->nwaiting--;
    }
    if (r->stop != STOP_NONE || r->head == NULL)
      break;
    job *j = r->head;
    if ((r->head = j->next) == NULL)
      r->tail = NULL;
    r->queued--;
    r->n.running++;
    mp_cond_notify(r->space, 1);
    mp_lock_release(r->lock);
    run_job(s, j);
    free(j);
  }
  s->exited = 1;
  r->nalive--;
  mp_cond_notify_all(r->ended);
  mp_lock_release(r->lock);
}

static void start_slot_locked(run *r) {
  slot *s = &r->slots[r->nstarted];
  s->r = r;
  s->index = r->nstarted + 1;
  char name[32];
  snprintf(name, sizeof name, "mprun-slot-%d", s->index);
  if (capture_create(&s->cap, (out_mode)r->opt->output) != 0 ||
      mp_thread_create(&s->thread, slot_main, s, name) != 0) {
    own_error_locked(r, mp_last_error());
    capture_free(s->cap);
    s->cap = NULL;
    return;
  }
  r->nstarted++;
  r->nalive++;
}

static job *job_new(char **values, size_t width) {
  size_t bytes = sizeof(job) + width * sizeof(char *);
  for (size_t i = 0; i < width; i++)
    bytes += strlen(values[i]) + 1;
  job *j = malloc(bytes);
  if (j == NULL)
    return NULL;
  j->next = NULL;
  j->values = (char **)(j + 1);
  char *p = (char *)(j->values + width);
  for (size_t i = 0; i < width; i++) {
    size_t n = strlen(values[i]) + 1;
    j->values[i] = memcpy(p, values[i], n);
    p += n;
  }
  return j;
}

static void input_ended_locked(run *r, int rc) {
  if (rc < 0)
    own_error_locked(r, mp_last_error());
  r->input_done = 1;
  r->n.total = r->seq - r->skipped;
  r->n.total_known = 1;
  mp_cond_notify_all(r->work);
  mp_cond_notify_all(r->ended);
}

/* Queues one job; 0 when the input should go on, 1 when mprun stops. */
static int enqueue_locked(run *r, job *j) {
  j->seq = ++r->seq;
  if (joblog_skip(r->log, j->seq)) {
    r->skipped++;
    output_failed_locked(r, output_skip_locked(r->out, j->seq));
    free(j);
    return 0;
  }
  while (r->queued >= QUEUE_MAX && r->stop == STOP_NONE)
    mp_cond_wait(r->space, MP_FOREVER);
  if (r->stop != STOP_NONE) {
    free(j);
    return 1;
  }
  if (r->tail)
    r->tail->next = j;
  else
    r->head = j;
  r->tail = j;
  r->queued++;
  if (r->nwaiting > 0)
    mp_cond_notify(r->work, 1);
  /* The waiting slots take one job each; more jobs than that need another slot. */
  if (r->queued > (size_t)r->nwaiting && r->nstarted < r->opt->jobs)
    start_slot_locked(r);
  return 0;
}

static void reader_main(void *arg) {
  run *r = arg;
  for (int done = 0; !done;) {
    char **values;
    job *j = NULL;
    int rc = input_next(r->in, &values);
    if (rc == 1 && (j = job_new(values, input_width(r->in))) == NULL)
      rc = mp_set_error(MP_ENOMEM, "out of memory for the job queue");
    mp_lock_acquire(r->lock, MP_FOREVER);
    if (rc != 1 || r->stop != STOP_NONE) {
      free(j);
      input_ended_locked(r, rc);
      done = 1;
    } else if (enqueue_locked(r, j) != 0) {
      input_ended_locked(r, 0);
      done = 1;
    }
    if (done)
      r->reader_done = 1;
    mp_lock_release(r->lock);
  }
}

/* ---- setting up and the main thread -------------------------------------------------- */

static int want_bar(const options *opt) {
  if (opt->bar >= 0)
    return opt->bar;
  return sys_isatty(1) && sys_isatty(2) && opt->output != OUT_UNGROUP && !opt->dry_run;
}

static int setup(run *r, const options *opt) {
  int rc;
  r->opt = opt;
  r->halt_status = 0;
  if (sys_isatty(1))
    sys_term_prepare(1); /* a Windows console learns UTF-8 */
  if ((rc = mp_lock_create(&r->lock)) != 0 || (rc = mp_cond_create(&r->work, r->lock)) != 0 ||
      (rc = mp_cond_create(&r->space, r->lock)) != 0 ||
      (rc = mp_cond_create(&r->ended, r->lock)) != 0)
    return rc;
  if ((rc = input_open(&r->in, opt)) != 0 ||
      (rc = tmpl_create(&r->tmpl, opt->command, opt->ncommand, input_width(r->in), opt->shell,
                        sys_is_windows())) != 0)
    return rc;
  if (opt->joblog && !opt->dry_run &&
      (rc = joblog_open(&r->log, opt->joblog, (resume_mode)opt->resume)) != 0)
    return rc;
  if (want_bar(opt) && (rc = bar_create(&r->bar, sys_term_prepare(2))) != 0)
    return rc;
  return output_create(&r->out, opt, r->lock, r->bar, &r->n);
}

/* Frees what only the threads of a run use; the lock and conditions stay. */
static void free_parts(run *r) {
  for (job *j = r->head, *next; j != NULL; j = next) {
    next = j->next;
    free(j);
  }
  r->head = r->tail = NULL;
  output_free(r->out);
  bar_free(r->bar);
  tmpl_free(r->tmpl);
  input_free(r->in);
  joblog_close(r->log);
  r->out = NULL;
  r->bar = NULL;
  r->tmpl = NULL;
  r->in = NULL;
  r->log = NULL;
}

static void free_run(run *r) {
  free_parts(r);
  mp_cond_free(r->work);
  mp_cond_free(r->space);
  mp_cond_free(r->ended);
  mp_lock_free(r->lock);
  free(r);
}

/* Everything goes but what a thread that never ended may still touch (a reader blocked on
 * standard input after a stop, a slot whose job's escaped descendants hold its pipes):
 * the process is about to exit, and they must not wake to freed memory. r itself, its lock
 * and its conditions stay for the stop watcher, which a late Ctrl-C may still run. */
static void teardown(run *r, int all_ended) {
  for (int i = 0; i < r->nstarted; i++) {
    if (!r->slots[i].exited)
      continue;
    mp_thread_join(r->slots[i].thread, MP_FOREVER);
    mp_thread_free(r->slots[i].thread);
    capture_free(r->slots[i].cap);
  }
  if (r->reader_done) {
    mp_thread_join(r->reader, MP_FOREVER);
    mp_thread_free(r->reader);
  }
  if (all_ended && r->reader_done)
    free_parts(r);
}

/* Waits until every slot ended and the input is done (or mprun stops); after a stop
 * request, at most STOP_GRACE_MS more. Returns 1 if every slot ended. */
static int wait_for_end_locked(run *r) {
  uint64_t grace_end = 0;
  while (r->nalive > 0 || (!r->input_done && r->stop == STOP_NONE)) {
    int wait = r->bar ? 250 : MP_FOREVER;
    if (r->stop == STOP_SIGNAL) {
      uint64_t now = mp_monotonic_ns();
      if (grace_end == 0)
        grace_end = now + (uint64_t)STOP_GRACE_MS * 1000000u;
      if (now >= grace_end)
        return 0;
      wait = (int)((grace_end - now) / 1000000u) + 1;
    }
    mp_cond_wait(r->ended, wait);
    bar_draw_locked(r->bar, &r->n, 0);
  }
  return 1;
}

int sched_run(const options *opt) {
  run *r = calloc(1, sizeof *r);
  if (r == NULL) {
    fprintf(stderr, "mprun: out of memory\n");
    return MPRUN_EXIT_ERROR;
  }
  int rc = setup(r, opt), watching = 0;
  if (rc == 0)
    watching = (rc = sys_signals_watch(on_stop_request, r)) == 0;
  r->n.start_ns = mp_monotonic_ns();
  if (rc == 0)
    rc = mp_thread_create(&r->reader, reader_main, r, "mprun-input");
  if (rc != 0) {
    fprintf(stderr, "mprun: %s\n", mp_last_error());
    if (watching)
      free_parts(r); /* the watcher keeps r */
    else
      free_run(r);
    return MPRUN_EXIT_ERROR; /* nothing ran */
  }
  mp_lock_acquire(r->lock, MP_FOREVER);
  bar_draw_locked(r->bar, &r->n, 1);
  int all_ended = wait_for_end_locked(r);
  output_failed_locked(r, output_flush_locked(r->out));
  bar_draw_locked(r->bar, &r->n, 1); /* the final count, then a clean line */
  bar_hide_locked(r->bar);
  stop_level stop = r->stop;
  int sig = r->stop_sig, status = exit_status(r);
  mp_lock_release(r->lock);
  if (joblog_close(r->log) != 0 && stop != STOP_SIGNAL) {
    fprintf(stderr, "mprun: %s\n", mp_last_error());
    status = MPRUN_EXIT_ERROR;
  }
  r->log = NULL;
  teardown(r, all_ended);
  if (stop == STOP_SIGNAL)
    sys_die_by_signal(sig);
  return status;
}
