/* Windows command lines in UTF-8, by pure code that is also tested on Linux (win32/cmdline.c). */
#ifndef MP_WIN32_CMDLINE_H
#define MP_WIN32_CMDLINE_H

#include <stddef.h>

/* 1 if path names a batch file, which CreateProcess would run through cmd.exe: ".bat" or
 * ".cmd" in any case, also behind trailing dots and spaces ("x.bat. ", CVE-2024-43402). */
int mp__cmdline_is_batch(const char *path);

/* The command line (malloc'd) for program argv[0] with arguments argv[1..], quoted so that the
 * MSVCRT / CommandLineToArgvW parse gives back exactly argv. MP_EINVAL if argv[0] holds '"'. */
int mp__cmdline_build(const char *const *argv, char **out);

/* The command line that runs batch file script (a full path) with arguments argv[1..]
 * safely: cmd.exe /e:ON /v:OFF /d /c ""script" args", each argument quoted and escaped so
 * that cmd.exe can neither run a second command nor expand a variable (CVE-2024-24576).
 * MP_EINVAL for a script name holding '"' or ending in '\', or an argument holding CR or LF. */
int mp__cmdline_build_batch(const char *script, const char *const *argv, char **out);

#endif /* MP_WIN32_CMDLINE_H */
