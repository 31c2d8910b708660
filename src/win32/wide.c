/* UTF-8 <-> UTF-16 conversions and the user-only security descriptor of named pipes, shared
 * by the connection pipes (channel.c) and a child's standard-stream pipes (stdio.c). */
#include <windows.h>

#include <stdlib.h>
#include <string.h>

#include "../platform.h"
#include "wide.h"

wchar_t *mp__to_wide(const char *s) {
  int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, NULL, 0);
  if (n <= 0)
    return NULL;
  wchar_t *w = malloc((size_t)n * sizeof *w);
  if (w != NULL)
    MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, w, n);
  return w;
}

char *mp__to_utf8(const wchar_t *w, int wlen) {
  int n = WideCharToMultiByte(CP_UTF8, 0, w, wlen, NULL, 0, NULL, NULL);
  char *s = malloc((size_t)n + 1);
  if (s != NULL) {
    WideCharToMultiByte(CP_UTF8, 0, w, wlen, s, n, NULL, NULL);
    s[n] = '\0';
  }
  return s;
}

void mp__user_sd_free(mp__user_sd *s) {
  free(s->user);
  free(s->acl);
}

int mp__user_sd_init(mp__user_sd *s) {
  HANDLE tok;
  DWORD len = 0;
  memset(s, 0, sizeof *s);
  if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &tok))
    return mp__os_error("OpenProcessToken");
  GetTokenInformation(tok, TokenUser, NULL, 0, &len);
  s->user = malloc(len ? len : 1);
  BOOL ok = s->user && GetTokenInformation(tok, TokenUser, s->user, len, &len);
  int rc = ok ? 0 : (s->user ? mp__os_error("GetTokenInformation(TokenUser)") : MP_ENOMEM);
  CloseHandle(tok);
  if (rc < 0)
    return rc == MP_ENOMEM ? mp_set_error(MP_ENOMEM, "out of memory") : rc;
  PSID sid = s->user->User.Sid;
  DWORD acl_len = sizeof(ACL) + sizeof(ACCESS_ALLOWED_ACE) + GetLengthSid(sid);
  s->acl = malloc(acl_len);
  if (s->acl == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory");
  if (!InitializeAcl(s->acl, acl_len, ACL_REVISION) ||
      !AddAccessAllowedAce(s->acl, ACL_REVISION, FILE_ALL_ACCESS, sid) ||
      !InitializeSecurityDescriptor(&s->sd, SECURITY_DESCRIPTOR_REVISION) ||
      !SetSecurityDescriptorDacl(&s->sd, TRUE, s->acl, FALSE))
    return mp__os_error("building a pipe's security descriptor");
  s->sa.nLength = sizeof s->sa;
  s->sa.lpSecurityDescriptor = &s->sd;
  s->sa.bInheritHandle = FALSE;
  return 0;
}
