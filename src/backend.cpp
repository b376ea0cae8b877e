// Backend::create: picks the CPU or the CUDA backend from the options.
#include <stdexcept>

#include "cpu_backend.h"
#include "gpusweep/backend.h"

namespace gs {

int Batch::add(const Shape& s, int dataset, const double* theta) {
  NetDesc nd{s, dataset, params.size()};
  params.insert(params.end(), theta, theta + num_params(s));
  nets.push_back(nd);
  return size() - 1;
}

std::unique_ptr<Backend> Backend::create(const BackendOptions& options) {
  switch (options.device) {
    case DeviceKind::kCuda:
      throw std::runtime_error(
          "--device cuda: the CUDA backend is not built yet in this version; use --device cpu");
    case DeviceKind::kAuto:
    case DeviceKind::kCpu:
      break;
  }
  return std::make_unique<CpuBackend>(options.threads);
}

}  // namespace gs
