/* POSIX backend: HMAC for the manager's authentication, from OpenSSL's libcrypto. */
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "../platform.h"

int mp_plat_hmac(int alg, const void *key, size_t keylen, const void *msg, size_t len,
                 unsigned char *out, size_t *outlen) {
  const EVP_MD *md = alg == MP_HMAC_MD5 ? EVP_md5() : alg == MP_HMAC_SHA256 ? EVP_sha256() : NULL;
  if (md == NULL)
    return mp_set_error(MP_EINVAL, "unknown HMAC algorithm %d", alg);
  unsigned int n = 0;
  static const unsigned char empty[1];
  if (HMAC(md, keylen ? key : empty, (int)keylen, msg ? msg : empty, len, out, &n) == NULL)
    return mp_set_error(MP_EOS, "HMAC failed in libcrypto (is MD5 disabled by FIPS mode?)");
  *outlen = n;
  return 0;
}
