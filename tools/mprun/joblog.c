/* The job log in GNU parallel's format, one tab-separated line per finished job:
 *   Seq Host Starttime JobRuntime Send Receive Exitval Signal Command
 * Host is ":" (this machine), Send is 0 (jobs get no input). Each line is flushed as soon
 * as it is written. --resume reads the Seq column back (every listed job is done);
 * --resume-failed also reads Exitval and Signal (only jobs with both 0 are done). Lines
 * that do not parse, the header among them, are skipped; a long Command is skipped over,
 * never held in memory. A line break in a command is written as \n so a line stays a job. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mprun.h"

#define FIELD_MAX 32 /* longer than any number the first eight columns hold */
#define NUMERIC_FIELDS 8

typedef struct seqset {
  uint64_t *v;
  size_t n, cap;
} seqset;

struct joblog {
  FILE *f;
  const char *path;
  resume_mode resume;
  seqset logged, succeeded;
};

static int set_add(seqset *s, uint64_t seq) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 256;
    uint64_t *nv = realloc(s->v, cap * sizeof *nv);
    if (nv == NULL)
      return mp_set_error(MP_ENOMEM, "out of memory reading the job log");
    s->v = nv;
    s->cap = cap;
  }
  s->v[s->n++] = seq;
  return 0;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

static int set_has(const seqset *s, uint64_t seq) {
  return s->n > 0 && bsearch(&seq, s->v, s->n, sizeof seq, cmp_u64) != NULL;
}

/* ---- reading it back ----------------------------------------------------------------- */

/* A whole non-negative number, or -1 if the text is not one; signed for Exitval. */
static int parse_num(const char *s, int allow_minus, long long *out) {
  int neg = allow_minus && *s == '-';
  const char *p = s + neg;
  unsigned long long v = 0;
  if (*p == '\0')
    return -1;
  for (; *p; p++) {
    if (*p < '0' || *p > '9' || v > 100000000000000000ULL)
      return -1;
    v = v * 10 + (unsigned long long)(*p - '0');
  }
  *out = neg ? -(long long)v : (long long)v;
  return 0;
}

/* Where the text comes from: a file, or memory (joblog_parse, the fuzzer). */
typedef struct text_in {
  FILE *f;
  const unsigned char *data;
  size_t len, at;
} text_in;

static int next_byte(text_in *src) {
  if (src->f != NULL)
    return fgetc(src->f);
  return src->at < src->len ? src->data[src->at++] : EOF;
}

/* Reads one line's first eight columns into fields; skips the rest. 1 = a line, 0 = end. */
static int read_fields(text_in *src, char fields[NUMERIC_FIELDS][FIELD_MAX], int *nfields) {
  int c, k = 0;
  size_t len = 0;
  *nfields = 0;
  fields[0][0] = '\0';
  while ((c = next_byte(src)) != EOF && c != '\n') {
    if (k >= NUMERIC_FIELDS)
      continue; /* the command */
    if (c == '\t') {
      fields[k++][len] = '\0';
      len = 0;
      if (k < NUMERIC_FIELDS)
        fields[k][0] = '\0';
    } else if (len + 1 < FIELD_MAX && c != '\r') {
      fields[k][len++] = (char)c;
    }
  }
  if (k < NUMERIC_FIELDS)
    fields[k][len] = '\0';
  *nfields = k;
  return c != EOF || k > 0 || len > 0;
}

static int load(joblog *j, text_in *src) {
  char fields[NUMERIC_FIELDS][FIELD_MAX];
  int n, rc = 0;
  while (rc == 0 && read_fields(src, fields, &n)) {
    long long seq, exitval, sig;
    if (n < NUMERIC_FIELDS || parse_num(fields[0], 0, &seq) != 0 || seq == 0 ||
        parse_num(fields[6], 1, &exitval) != 0 || parse_num(fields[7], 0, &sig) != 0)
      continue;
    rc = set_add(&j->logged, (uint64_t)seq);
    if (rc == 0 && exitval == 0 && sig == 0)
      rc = set_add(&j->succeeded, (uint64_t)seq);
  }
  if (rc == 0 && src->f != NULL && ferror(src->f))
    rc = mp_set_error(MP_EOS, "cannot read the job log '%s'", j->path);
  seqset *sets[2] = {&j->logged, &j->succeeded};
  for (int i = 0; i < 2; i++)
    if (sets[i]->n > 0) /* an empty set has no array, and qsort wants one */
      qsort(sets[i]->v, sets[i]->n, sizeof(uint64_t), cmp_u64);
  return rc;
}

/* ---- opening and writing ------------------------------------------------------------- */

static const char header[] =
    "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n";

int joblog_open(joblog **out, const char *path, resume_mode resume) {
  joblog *j = calloc(1, sizeof *j);
  int rc = 0, fresh = 1;
  if (j == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory");
  j->path = path;
  j->resume = resume;
  if (resume != RESUME_NONE) {
    text_in old = {sys_fopen(path, "rb"), NULL, 0, 0};
    if (old.f != NULL) {
      fresh = 0;
      rc = load(j, &old);
      fclose(old.f);
    } else if (mp_last_error_code() != MP_ENOENT) {
      rc = error_context("cannot read the job log");
    }
  }
  if (rc == 0 && (j->f = sys_fopen(path, fresh ? "wb" : "ab")) == NULL)
    rc = error_context("cannot write the job log");
  /* A new log, or an empty one being resumed, starts with the header. */
  if (rc == 0 && !fresh && fseek(j->f, 0, SEEK_END) == 0 && ftell(j->f) == 0)
    fresh = 1;
  if (rc == 0 && fresh && (fputs(header, j->f) < 0 || fflush(j->f) != 0))
    rc = mp_set_error(MP_EOS, "cannot write the job log '%s'", path);
  if (rc != 0) {
    joblog_close(j);
    return rc;
  }
  *out = j;
  return 0;
}

int joblog_parse(joblog **out, const void *data, size_t len, resume_mode resume) {
  joblog *j = calloc(1, sizeof *j);
  if (j == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory");
  j->path = "(memory)";
  j->resume = resume;
  text_in src = {NULL, data, len, 0};
  int rc = load(j, &src);
  if (rc != 0) {
    joblog_close(j);
    return rc;
  }
  *out = j;
  return 0;
}

int joblog_skip(const joblog *j, uint64_t seq) {
  if (j == NULL || j->resume == RESUME_NONE)
    return 0;
  return set_has(j->resume == RESUME_ALL ? &j->logged : &j->succeeded, seq);
}

/* The command column, one line whatever the command holds. */
static void put_command(FILE *f, const char *s) {
  for (; *s; s++) {
    if (*s == '\n')
      fputs("\\n", f);
    else if (*s == '\r')
      fputs("\\r", f);
    else
      fputc(*s, f);
  }
}

int joblog_write_locked(joblog *j, const joblog_entry *e) {
  if (j == NULL || j->f == NULL)
    return 0;
  fprintf(j->f, "%llu\t:\t%.3f\t%10.3f\t0\t%llu\t%d\t%d\t", (unsigned long long)e->seq, e->start,
          e->runtime, (unsigned long long)e->received, e->exitval, e->signal);
  put_command(j->f, e->command);
  fputc('\n', j->f);
  if (ferror(j->f) || fflush(j->f) != 0)
    return mp_set_error(MP_EOS, "cannot write the job log '%s'", j->path);
  return 0;
}

int joblog_close(joblog *j) {
  int rc = 0;
  if (j == NULL)
    return 0;
  if (j->f != NULL && fclose(j->f) != 0)
    rc = mp_set_error(MP_EOS, "cannot write the job log '%s'", j->path);
  free(j->logged.v);
  free(j->succeeded.v);
  free(j);
  return rc;
}
