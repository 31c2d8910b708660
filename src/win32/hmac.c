/* Win32 backend: HMAC for the manager's authentication, from BCrypt. */
#include <windows.h>

#include <bcrypt.h>

#include "../platform.h"

int mp_plat_hmac(int alg, const void *key, size_t keylen, const void *msg, size_t len,
                 unsigned char *out, size_t *outlen) {
  BCRYPT_ALG_HANDLE ah = NULL;
  BCRYPT_HASH_HANDLE hh = NULL;
  const wchar_t *name = alg == MP_HMAC_MD5      ? BCRYPT_MD5_ALGORITHM
                        : alg == MP_HMAC_SHA256 ? BCRYPT_SHA256_ALGORITHM
                                                : NULL;
  if (name == NULL)
    return mp_set_error(MP_EINVAL, "unknown HMAC algorithm %d", alg);
  static UCHAR empty[1];
  ULONG n = alg == MP_HMAC_MD5 ? 16 : 32;
  NTSTATUS st = BCryptOpenAlgorithmProvider(&ah, name, NULL, BCRYPT_ALG_HANDLE_HMAC_FLAG);
  if (BCRYPT_SUCCESS(st))
    st = BCryptCreateHash(ah, &hh, NULL, 0, keylen ? (PUCHAR)key : empty, (ULONG)keylen, 0);
  if (BCRYPT_SUCCESS(st))
    st = BCryptHashData(hh, len ? (PUCHAR)msg : empty, (ULONG)len, 0);
  if (BCRYPT_SUCCESS(st))
    st = BCryptFinishHash(hh, out, n, 0);
  if (hh)
    BCryptDestroyHash(hh);
  if (ah)
    BCryptCloseAlgorithmProvider(ah, 0);
  if (!BCRYPT_SUCCESS(st))
    return mp__os_error_code(MP_EOS, (long)st, "BCrypt HMAC");
  *outlen = n;
  return 0;
}
