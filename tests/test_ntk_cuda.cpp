// The GPU NTK spectra against the CPU's, network by network, over a batch that mixes archs,
// activations, widths and both Gram paths (N <= P and N > P). Skips where no GPU is visible.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "cuda_backend.h"
#include "gpu_skip.h"
#include "gpusweep/analysis/ntk.h"
#include "gpusweep/model/data.h"
#include "ntk_cuda.h"

namespace gs {
namespace {

TEST(NtkCuda, SpectraMatchTheCpu) {
  SKIP_WITHOUT_GPU();
  const Dataset a = make_linear_problem(4, 30, 0.1, 1);
  const Dataset b = make_linear_problem(9, 60, 0.1, 2);
  Batch batch;
  batch.datasets = {&a, &b};
  int k = 0;
  for (int t = 0; t < 2; ++t)
    for (Arch arch : {Arch::kMlp, Arch::kGlu, Arch::kGqu})
      for (Act act : {Act::kRelu, Act::kSilu})
        for (int w : {2, 5, 40})  // width 2: P < N (J^T J); 40: P > N (J J^T)
          for (int seed = 0; seed < 3; ++seed) {
            const Shape s{arch, act, batch.datasets[t]->d, w};
            std::vector<double> th(num_params(s));
            init_lecun(s, 100 + k++, th.data());
            for (int i = 0; i < s.n; ++i) th[s.n * s.d + i] = 0.1 * i;  // nonzero gate biases
            batch.add(s, t, th.data());
          }
  // One network with a non-finite parameter fails alone.
  {
    const Shape s{Arch::kGlu, Act::kRelu, 4, 5};
    std::vector<double> th(num_params(s), 0.5);
    th[d_offset(s)] = NAN;  // an output weight, so that every row of its J is NaN
    batch.add(s, 0, th.data());
  }
  const auto cpu = ntk_spectra_cpu(batch, 2);
  std::string name;
  const auto gpu = ntk_spectra_cuda(batch, 0, &name);
  ASSERT_EQ(gpu.size(), cpu.size());
  int compared = 0, tight = 0;
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    ASSERT_EQ(gpu[i].ok, cpu[i].ok) << "network " << i << ": " << gpu[i].reason << " / " << cpu[i].reason;
    EXPECT_EQ(gpu[i].gram, cpu[i].gram) << i;
    if (!cpu[i].ok) continue;
    ASSERT_EQ(gpu[i].eig.size(), cpu[i].eig.size()) << i;
    const double scale = cpu[i].eig.back();
    int shown = 0;
    for (std::size_t q = 0; q < cpu[i].eig.size(); ++q)
      if (std::abs(gpu[i].eig[q] - cpu[i].eig[q]) > 1e-11 * scale && shown++ < 3)
        ADD_FAILURE() << "network " << i << " eigenvalue " << q << ": gpu " << gpu[i].eig[q] << " cpu "
                      << cpu[i].eig[q];
    const NetDesc& nd = batch.nets[i];
    const int n = batch.datasets[nd.dataset]->n_train(), p = num_params(nd.shape);
    const SpectrumSummary sg = summarize_spectrum(gpu[i].eig, n, p), sc = summarize_spectrum(cpu[i].eig, n, p);
    // Eigenvalues within 1e-11 of the largest (above) move the smallest, and so the condition
    // number, by up to 1e-11 cond relative: a 1e9-conditioned Gram matrix agrees to 1e-2.
    if (sc.below_floor == 0) {
      EXPECT_NEAR(sg.cond, sc.cond, (1e-8 + 1e-11 * sc.cond) * sc.cond) << i;
      if (sc.cond < 1e8) ++tight;  // checked to 1e-3 relative or better
    }
    ++compared;
  }
  EXPECT_FALSE(gpu.back().ok);
  EXPECT_GT(compared, 100);
  EXPECT_GE(tight, 50) << "too few condition numbers compared tightly";
}

TEST(NtkCuda, ReportsNoDeviceInOneLine) {
  if (gs_test::gpu_visible() && !gs_test::HiddenDevices::can_hide())
    GTEST_SKIP() << "a GPU is visible, and its runtime cannot hide it after start-up";
  gs_test::HiddenDevices hidden;
  const Dataset a = make_linear_problem(2, 5, 0.1, 1);
  Batch batch;
  batch.datasets = {&a};
  const Shape s{Arch::kMlp, Act::kRelu, 2, 3};
  std::vector<double> th(num_params(s), 0.1);
  batch.add(s, 0, th.data());
  try {
    ntk_spectra_cuda(batch, 0, nullptr);
    FAIL() << "no exception without a device";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no CUDA device"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace gs
