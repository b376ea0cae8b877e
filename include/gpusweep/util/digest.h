// Checksums of input files, for the provenance that manifest.json and summary.json record.
#pragma once

#include <string>

namespace gs {

// The SHA-256 of bytes, as 64 lowercase hex digits (OpenSSL's EVP interface).
std::string sha256_hex(const std::string& bytes);

}  // namespace gs
