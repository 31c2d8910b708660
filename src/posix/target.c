/* POSIX backend for target references: a function is named by its ELF module, its offset
 * from the module's load address, and the module's GNU build-id (or, lacking one, a hash of
 * its executable segments), found with dl_iterate_phdr. */
#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <string.h>

#include "../platform.h"

typedef struct find_ctx {
  uintptr_t addr;   /* in: an address to locate (0: match by name) */
  const char *name; /* in: a module name ("" for the main program) */
  int first;        /* the first callback is the main program */
  int found;
  mp_plat_target *t; /* out: module, offset, fingerprint */
  uintptr_t bias;    /* out: load bias */
} find_ctx;

static uint64_t fnv1a(uint64_t h, const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

/* The build-id note if there is one; else FNV-1a over the executable segments (bounded). */
static void fingerprint(struct dl_phdr_info *info, mp_plat_target *t) {
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_NOTE)
      continue;
    const unsigned char *p = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
    const unsigned char *end = p + ph->p_memsz;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
      const unsigned char *name = p + sizeof *nh;
      const unsigned char *desc = name + ((nh->n_namesz + 3) & ~3u);
      if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
        size_t n = nh->n_descsz < MP_FINGERPRINT_MAX - 1 ? nh->n_descsz : MP_FINGERPRINT_MAX - 1;
        t->fingerprint[0] = 'B';
        memcpy(t->fingerprint + 1, desc, n);
        t->fingerprint_len = n + 1;
        return;
      }
      p = desc + ((nh->n_descsz + 3) & ~3u);
    }
  }
  uint64_t h = 0xcbf29ce484222325ull;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
      size_t n = ph->p_filesz < (1u << 20) ? ph->p_filesz : (1u << 20);
      h = fnv1a(h, (const unsigned char *)(info->dlpi_addr + ph->p_vaddr), n);
    }
  }
  t->fingerprint[0] = 'H';
  memcpy(t->fingerprint + 1, &h, sizeof h);
  t->fingerprint_len = 1 + sizeof h;
}

static int in_exec_segment(struct dl_phdr_info *info, uintptr_t addr) {
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
    if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && addr >= lo && addr < lo + ph->p_memsz)
      return 1;
  }
  return 0;
}

static int visit(struct dl_phdr_info *info, size_t size, void *data) {
  (void)size;
  find_ctx *c = data;
  const char *name = c->first ? "" : (info->dlpi_name ? info->dlpi_name : "");
  c->first = 0;
  int match = c->addr ? in_exec_segment(info, c->addr) : strcmp(name, c->name) == 0;
  if (!match)
    return 0;
  snprintf(c->t->module, sizeof c->t->module, "%s", name);
  c->bias = info->dlpi_addr;
  fingerprint(info, c->t);
  c->found = 1;
  return 1;
}

int mp_plat_target_ref(void (*fn)(void), mp_plat_target *out) {
  memset(out, 0, sizeof *out);
  find_ctx c = {.addr = (uintptr_t)fn, .first = 1, .t = out};
  if (fn == NULL || !dl_iterate_phdr(visit, &c) || !c.found)
    return mp_set_error(MP_EINVAL, "target %p is not code in a loaded module",
                        (void *)(uintptr_t)fn);
  out->offset = (uint64_t)((uintptr_t)fn - c.bias);
  return 0;
}

int mp_plat_target_resolve(const mp_plat_target *t, void (**fn)(void)) {
  mp_plat_target here;
  memset(&here, 0, sizeof here);
  if (t->module[0] != '\0' && dlopen(t->module, RTLD_NOW | RTLD_NOLOAD) == NULL &&
      dlopen(t->module, RTLD_NOW) == NULL)
    return mp_set_error(MP_ECHILD, "target module %s cannot be loaded: %s", t->module, dlerror());
  find_ctx c = {.name = t->module, .first = 1, .t = &here};
  dl_iterate_phdr(visit, &c);
  if (!c.found)
    return mp_set_error(MP_ECHILD, "target module %s is not loaded in the child",
                        t->module[0] ? t->module : "(main program)");
  if (here.fingerprint_len != t->fingerprint_len ||
      memcmp(here.fingerprint, t->fingerprint, t->fingerprint_len) != 0)
    return mp_set_error(MP_ECHILD,
                        "target module %s differs from the parent's build (fingerprint "
                        "mismatch): was it rebuilt while the parent ran?",
                        t->module[0] ? t->module : "(main program)");
  uintptr_t addr = c.bias + (uintptr_t)t->offset;
  c.addr = addr;
  c.first = 1;
  c.found = 0;
  mp_plat_target check;
  memset(&check, 0, sizeof check);
  c.t = &check;
  if (!dl_iterate_phdr(visit, &c) || strcmp(check.module, t->module) != 0)
    return mp_set_error(MP_ECHILD, "target offset 0x%llx lies outside the code of %s",
                        (unsigned long long)t->offset, t->module[0] ? t->module : "the program");
  *fn = (void (*)(void))addr;
  return 0;
}
