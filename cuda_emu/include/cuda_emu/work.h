// What the emulated device's streams have been given since the process started, by name: each
// kernel launch under its kernel's name, each cuBLAS and cuSOLVER call under its routine's,
// each asynchronous copy and memset under its API's. A count independent of the program's own,
// for tests and for counting a run's launches (GPUSWEEP_EMU_WORK: README, "The emulated CUDA
// device"). A call counts when it is enqueued, whether or not its stream has run it yet.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace gs_emu {

std::map<std::string, std::uint64_t> work_counts();

}  // namespace gs_emu
