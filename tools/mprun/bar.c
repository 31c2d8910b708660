/* The progress bar: one line on stderr, redrawn in place with a carriage return and erased
 * before any job output is written, so output never lands inside it and the terminal is
 * left clean at the end:
 *   [########............]  42% 420/1000 done, 3 failed, 2 running, 85.3/s, ETA 0:07
 * Redraws are at most every 100 ms unless forced (after output erased it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mprun.h"

#define REDRAW_NS 100000000ULL
#define LINE_MAX_COLS 512

struct bar {
  int ansi; /* ESC [ K erases; else spaces over the old text */
  int visible;
  int mid_line; /* the last output did not end its line */
  size_t shown; /* columns of the line on screen */
  uint64_t last_ns;
};

int bar_create(bar **out, int ansi) {
  bar *b = calloc(1, sizeof *b);
  if (b == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory");
  b->ansi = ansi;
  *out = b;
  return 0;
}

void bar_free(bar *b) { free(b); }

static void format_eta(char *buf, size_t cap, double secs) {
  if (!(secs >= 0) || secs > 359999) {
    snprintf(buf, cap, "?");
    return;
  }
  unsigned s = (unsigned)(secs + 0.5);
  if (s >= 3600)
    snprintf(buf, cap, "%u:%02u:%02u", s / 3600, s / 60 % 60, s % 60);
  else
    snprintf(buf, cap, "%u:%02u", s / 60, s % 60);
}

/* The counters as text, and the fraction done (negative while the total is unknown). */
static double describe(const counts *n, char *text, size_t cap) {
  double elapsed = (double)(mp_monotonic_ns() - n->start_ns) / 1e9;
  double rate = elapsed > 0 ? (double)n->done / elapsed : 0;
  double frac = -1;
  char eta[32] = "?", total[32] = "?";
  if (n->total_known) {
    snprintf(total, sizeof total, "%llu", (unsigned long long)n->total);
    frac = n->total ? (double)n->done / (double)n->total : 1;
    if (rate > 0)
      format_eta(eta, sizeof eta, (double)(n->total - n->done) / rate);
    else if (n->done == n->total)
      format_eta(eta, sizeof eta, 0);
  }
  char pct[8] = "  ?%";
  if (frac >= 0)
    snprintf(pct, sizeof pct, "%3d%%", (int)(frac * 100));
  snprintf(text, cap, "%s %llu/%s done, %llu failed, %llu running, %.1f/s, ETA %s", pct,
           (unsigned long long)n->done, total, (unsigned long long)n->failed,
           (unsigned long long)n->running, rate, eta);
  return frac;
}

/* The whole line for a terminal `cols` wide (one column is left free: writing the last
 * one makes some terminals wrap). */
static size_t compose(const counts *n, char *line, int cols) {
  char text[256];
  double frac = describe(n, text, sizeof text);
  size_t room = (size_t)(cols > 1 ? cols - 1 : 79), tlen = strlen(text), len = 0;
  if (room > LINE_MAX_COLS - 1)
    room = LINE_MAX_COLS - 1;
  if (room >= tlen + 13) {
    size_t inner = room - tlen - 3, filled = frac > 0 ? (size_t)(frac * (double)inner) : 0;
    line[len++] = '[';
    for (size_t i = 0; i < inner; i++)
      line[len++] = i < filled ? '#' : '.';
    line[len++] = ']';
    line[len++] = ' ';
  }
  if (tlen > room - len)
    tlen = room - len;
  memcpy(line + len, text, tlen);
  len += tlen;
  line[len] = '\0';
  return len;
}

void bar_draw_locked(bar *b, const counts *n, int force) {
  uint64_t now = mp_monotonic_ns();
  if (b == NULL || (!force && b->visible && now - b->last_ns < REDRAW_NS))
    return;
  char out[LINE_MAX_COLS * 2 + 16], line[LINE_MAX_COLS];
  size_t len = compose(n, line, sys_term_width(2)), o = 0;
  if (b->mid_line && !b->visible)
    out[o++] = '\n';
  b->mid_line = 0;
  out[o++] = '\r';
  memcpy(out + o, line, len);
  o += len;
  if (b->ansi) {
    memcpy(out + o, "\033[K", 3);
    o += 3;
  } else {
    for (size_t i = len; i < b->shown; i++)
      out[o++] = ' ';
  }
  (void)sys_write_all(2, out, o);
  b->visible = 1;
  b->shown = len;
  b->last_ns = now;
}

void bar_hide_locked(bar *b) {
  if (b == NULL || !b->visible)
    return;
  char out[LINE_MAX_COLS + 8];
  size_t o = 0;
  out[o++] = '\r';
  if (b->ansi) {
    memcpy(out + o, "\033[K", 3);
    o += 3;
  } else {
    memset(out + o, ' ', b->shown);
    o += b->shown;
    out[o++] = '\r';
  }
  (void)sys_write_all(2, out, o);
  b->visible = 0;
  b->shown = 0;
}

void bar_after_output_locked(bar *b, char last) {
  if (b != NULL)
    b->mid_line = last != '\n';
}
