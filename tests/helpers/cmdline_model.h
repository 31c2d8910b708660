/* Models of how Windows reads a command line, for checking win32/cmdline.c on any system:
 * the MSVCRT / CommandLineToArgvW split, and cmd.exe's view of a batch line (which text is
 * outside quotes, where a %VAR% could expand). Shared by tests/test_cmdline.c and
 * fuzz/fuzz_cmdline.c. */
#ifndef MP_CMDLINE_MODEL_H
#define MP_CMDLINE_MODEL_H

#include <stddef.h>

/* Splits line as the MSVCRT does (the program name up to the next quote or blank, then the
 * 2n / 2n+1 backslash rules): a malloc'd NULL-terminated array of malloc'd strings. */
char **mp_model_msvcrt_split(const char *line);
void mp_model_free(char **argv);

/* 0 if cmd.exe, reading line (a "cmd.exe ... /c "..."" batch line), would see no command
 * separator, redirection, escape or group outside quotes after the script, and no %...% or
 * !...! that could expand; else the offset of the first offending character plus one. */
size_t mp_model_cmd_breakout(const char *line);

#endif
