// Backend::create: picks the CPU or the CUDA backend from the options.
#include <stdexcept>
#include <string>

#include "cpu_backend.h"
#include "gpusweep/backend.h"
#ifdef GPUSWEEP_HAVE_CUDA
#include "cuda_loader.h"
#endif

namespace gs {

int Batch::add(const Shape& s, int dataset, const double* theta) {
  // The network math keeps a neuron's monomials in arrays of kMaxPolyTerms (the sweep and
  // ntk refuse larger ones with check_poly_terms, naming the option).
  if (poly_term_count(s.d, poly_degree(s.arch)) > kMaxPolyTerms)
    throw std::logic_error(std::string("Batch::add: ") + arch_name(s.arch) + " in " + std::to_string(s.d) +
                           " inputs has more than " + std::to_string(kMaxPolyTerms) + " polynomial terms");
  NetDesc nd{s, dataset, params.size()};
  params.insert(params.end(), theta, theta + num_params(s));
  nets.push_back(nd);
  return size() - 1;
}

std::vector<std::size_t> packed_offsets(const std::vector<NetDesc>& nets, const std::vector<int>& list) {
  std::vector<std::size_t> off(list.size() + 1, 0);
  for (std::size_t j = 0; j < list.size(); ++j) off[j + 1] = off[j] + num_params(nets[list[j]].shape);
  return off;
}

void Backend::least_squares(const std::vector<int>&, Block, int*, double*) {
  throw std::logic_error("least_squares: this backend has no least-squares solve");
}

void Backend::var_pro_solve(const std::vector<int>&, const double*, int*, StepModel*) {
  throw std::logic_error("var_pro_solve: this backend has no variable projection");
}

void Backend::var_pro_trial(const std::vector<int>&, bool, double*, const double*) {
  throw std::logic_error("var_pro_trial: this backend has no variable projection");
}

void Backend::var_pro_accept(const std::vector<int>&) {
  throw std::logic_error("var_pro_accept: this backend has no variable projection");
}

void Backend::gradient(const std::vector<int>&, double*, double*) {
  throw std::logic_error("gradient: this backend has no gradient-only pass");
}

void Backend::add_params(const std::vector<int>&, const double*) {
  throw std::logic_error("add_params: this backend has no gradient-only pass");
}

void Backend::set_params(const std::vector<int>&, const double*) {
  throw std::logic_error("set_params: this backend has no gradient-only pass");
}

bool use_cuda(DeviceKind device, std::string* why) {
  switch (device) {
    case DeviceKind::kCuda: {
      // A missing GPU is the user's to fix, like any bad input: std::invalid_argument.
#ifdef GPUSWEEP_HAVE_CUDA
      std::string why;
      const CudaPlugin* plugin = cuda_plugin(&why);
      if (!plugin) throw std::invalid_argument("--device cuda: " + why);
      if (plugin->device_count(&why) == 0)
        throw std::invalid_argument("--device cuda: no CUDA device is visible (" + why + "); use --device cpu");
      if (!plugin->kernel_image(0, &why)) throw std::invalid_argument("--device cuda: " + why);
      return true;
#else
      throw std::invalid_argument(
          "--device cuda: this build has no CUDA backend (nvcc was not found when it was "
          "configured); use --device cpu");
#endif
    }
    case DeviceKind::kAuto: {
#ifdef GPUSWEEP_HAVE_CUDA
      // The driver alone decides whether there is a GPU, so that a machine without one loads
      // neither the plugin nor the CUDA libraries behind it.
      if (cuda_driver_device_count(nullptr) == 0) return false;
      std::string error;
      const CudaPlugin* plugin = cuda_plugin(&error);
      if (!plugin) {
        if (why) *why = "a GPU is visible, but " + error + "; using the CPU";
        return false;
      }
      if (plugin->device_count(&error) == 0) {
        if (why) *why = "a GPU is visible, but the CUDA runtime finds none (" + error + "); using the CPU";
        return false;
      }
      return plugin->kernel_image(0, why);
#else
      (void)why;
      return false;
#endif
    }
    case DeviceKind::kCpu:
      break;
  }
  return false;
}

std::unique_ptr<Backend> Backend::create(const BackendOptions& options) {
#ifdef GPUSWEEP_HAVE_CUDA
  if (use_cuda(options.device)) {
    CudaOptions co;
    co.cholesky = parse_cholesky(options.cholesky);
    co.host_threads = options.threads;
    return cuda_plugin(nullptr)->create_backend(co);  // loaded by use_cuda
  }
#else
  use_cuda(options.device);  // throws for --device cuda
#endif
  return std::make_unique<CpuBackend>(options.threads);
}

}  // namespace gs
