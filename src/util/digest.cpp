// SHA-256 through OpenSSL's EVP interface. See digest.h.
#include "gpusweep/util/digest.h"

#include <openssl/evp.h>

#include <memory>
#include <stdexcept>

namespace gs {

std::string sha256_hex(const std::string& bytes) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), bytes.data(), bytes.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), md, &len) != 1)
    throw std::runtime_error("SHA-256: OpenSSL's digest failed");
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int k = 0; k < len; ++k) {
    out += kHex[md[k] >> 4];
    out += kHex[md[k] & 15];
  }
  return out;
}

}  // namespace gs
