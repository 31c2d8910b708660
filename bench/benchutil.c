#include "benchutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double bench_median(double *v, size_t n) {
  if (n == 0)
    return 0;
  qsort(v, n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void bench_target(const char *name, double ratio, const char *op, double bound) {
  int pass = op[0] == '<' ? ratio <= bound : ratio >= bound;
  printf("target %s ratio=%.3f goal=%s%g %s\n", name, ratio, op, bound, pass ? "PASS" : "MISS");
}

char *bench_capture(const char *cmd) {
  FILE *f = popen(cmd, "r");
  if (!f)
    return NULL;
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  size_t n;
  while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
    len += n;
    if (cap - len < 1024) {
      char *nb = realloc(buf, cap *= 2);
      if (!nb) {
        free(buf);
        buf = NULL;
      }
      buf = nb;
    }
  }
  if (pclose(f) != 0 || !buf) {
    free(buf);
    return NULL;
  }
  buf[len] = '\0';
  return buf;
}

double bench_field(const char *text, const char *key) {
  size_t k = strlen(key);
  for (const char *p = text; (p = strstr(p, key)) != NULL; p += k) {
    if ((p == text || p[-1] == ' ' || p[-1] == '\n') && p[k] == '=')
      return atof(p + k + 1);
  }
  return -1;
}

uint64_t bench_stamp(uint32_t producer, uint32_t seq) {
  return (uint64_t)seq * UINT64_C(0x9E3779B97F4A7C15) ^
         (uint64_t)(producer + 1) * UINT64_C(0xC2B2AE3D27D4EB4F);
}
