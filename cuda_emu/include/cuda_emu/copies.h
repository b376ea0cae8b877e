// What the emulated device's cudaMemcpy and cudaMemcpyAsync have copied between the host and
// the device since the process started, by direction: a count independent of the program's
// own, for tests. A copy counts when the call accepts it (its arguments checked), before its
// stream runs it; copies within the host or within the device do not count.
#pragma once

#include <cstdint>

namespace gs_emu {

struct CopiedBytes {
  std::uint64_t to_host = 0;
  std::uint64_t to_device = 0;
};

CopiedBytes bytes_copied();

}  // namespace gs_emu
