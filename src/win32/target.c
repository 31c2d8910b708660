/* Win32 backend for target references: a function is named by its module (empty for the
 * executable), its offset from the module's base, and the PE header's build stamp
 * (TimeDateStamp, SizeOfImage, CheckSum, SizeOfCode, AddressOfEntryPoint). */
#include <windows.h>
#include <string.h>

#include "../platform.h"

static const IMAGE_NT_HEADERS *nt_headers(HMODULE m) {
  const IMAGE_DOS_HEADER *dos = (const IMAGE_DOS_HEADER *)m;
  return (const IMAGE_NT_HEADERS *)((const char *)m + dos->e_lfanew);
}

static void fingerprint(HMODULE m, mp_plat_target *t) {
  const IMAGE_NT_HEADERS *nt = nt_headers(m);
  uint32_t v[5] = {nt->FileHeader.TimeDateStamp, nt->OptionalHeader.SizeOfImage,
                   nt->OptionalHeader.CheckSum, nt->OptionalHeader.SizeOfCode,
                   nt->OptionalHeader.AddressOfEntryPoint};
  t->fingerprint[0] = 'P';
  memcpy(t->fingerprint + 1, v, sizeof v);
  t->fingerprint_len = 1 + sizeof v;
}

/* 1 if offset lies inside an executable section of m. */
static int in_code(HMODULE m, uint64_t offset) {
  const IMAGE_NT_HEADERS *nt = nt_headers(m);
  const IMAGE_SECTION_HEADER *s = IMAGE_FIRST_SECTION(nt);
  for (WORD i = 0; i < nt->FileHeader.NumberOfSections; i++, s++) {
    if ((s->Characteristics & IMAGE_SCN_MEM_EXECUTE) && offset >= s->VirtualAddress &&
        offset < (uint64_t)s->VirtualAddress + s->Misc.VirtualSize)
      return 1;
  }
  return 0;
}

int mp_plat_target_ref(void (*fn)(void), mp_plat_target *out) {
  memset(out, 0, sizeof *out);
  HMODULE m = NULL;
  if (fn == NULL || !GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS |
                                            GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                                        (LPCWSTR)(uintptr_t)fn, &m))
    return mp_set_error(MP_EINVAL, "target %p is not code in a loaded module",
                        (void *)(uintptr_t)fn);
  out->offset = (uint64_t)((uintptr_t)fn - (uintptr_t)m);
  if (!in_code(m, out->offset))
    return mp_set_error(MP_EINVAL, "target %p is not in a code section", (void *)(uintptr_t)fn);
  if (m != GetModuleHandleW(NULL)) {
    wchar_t path[1024];
    DWORD n = GetModuleFileNameW(m, path, 1024);
    if (n == 0 || n >= 1024 ||
        !WideCharToMultiByte(CP_UTF8, 0, path, -1, out->module, sizeof out->module, NULL, NULL))
      return mp__os_error("GetModuleFileNameW(target module)");
  }
  fingerprint(m, out);
  return 0;
}

int mp_plat_target_resolve(const mp_plat_target *t, void (**fn)(void)) {
  HMODULE m = GetModuleHandleW(NULL);
  if (t->module[0] != '\0') {
    wchar_t path[1024];
    if (!MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, t->module, -1, path, 1024))
      return mp_set_error(MP_ECHILD, "target module path is not valid UTF-8");
    m = LoadLibraryW(path);
    if (m == NULL)
      return mp__os_error_code(MP_ECHILD, (long)GetLastError(), "LoadLibraryW(target module)");
  }
  mp_plat_target here;
  memset(&here, 0, sizeof here);
  fingerprint(m, &here);
  if (here.fingerprint_len != t->fingerprint_len ||
      memcmp(here.fingerprint, t->fingerprint, t->fingerprint_len) != 0)
    return mp_set_error(MP_ECHILD,
                        "target module %s differs from the parent's build (fingerprint "
                        "mismatch): was it rebuilt while the parent ran?",
                        t->module[0] ? t->module : "(main program)");
  if (!in_code(m, t->offset))
    return mp_set_error(MP_ECHILD, "target offset 0x%llx lies outside the code of %s",
                        (unsigned long long)t->offset, t->module[0] ? t->module : "the program");
  *fn = (void (*)(void))((uintptr_t)m + (uintptr_t)t->offset);
  return 0;
}
