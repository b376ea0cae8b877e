// CPU backend: OpenMP over networks, BLAS/LAPACK per network. See cpu_backend.h.
#include "backend/cpu_backend.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "gpusweep/model/relu1d.h"
#include "gpusweep/solver/solve.h"
#include "gpusweep/solver/tally.h"
#include "gpusweep/util/util.h"
#include "model/by_shape.h"
#include "solver/lapack.h"

namespace gs {
namespace {

constexpr int kTile = 256;  // points per dsyrk update

template <class F>
void for_each_net(const std::vector<int>& nets, int threads, std::vector<double>& seconds, F&& f) {
  parallel_for(static_cast<int>(nets.size()), threads, [&](int j, int) {
    const double t0 = omp_get_wtime();
    f(j, nets[j]);
    seconds[nets[j]] += omp_get_wtime() - t0;
  });
}

// The per-point work of assemble() on one tile of training points: Jacobian rows of the stage
// into w.tile, residuals into w.resid and, when second, the residual curvature moments of each
// neuron into w.local. Returns the tile's sum of squared residuals. kNf and kD, when nonzero,
// are the factor count and the input dimension fixed at compile time: the network math then
// unrolls, and that scalar work is most of a step. A neuron whose activation and its two
// derivatives vanish at a point (relu off) has no curvature there and is skipped; its
// Jacobian entries are still written, so a non-finite parameter still shows.
struct TileArgs {
  const Shape& shape;
  const double* theta;
  const double* x;  // first point of the tile
  const double* f;  // its targets
  int count, b, e;
  bool second;
  CpuBackend::Workspace* w;
};

template <int kNf, int kD>
double tile_points(const TileArgs& t, double sse) {
  const Shape s = fixed_shape<kNf, kD>(t.shape);
  CpuBackend::Workspace& w = *t.w;
  const int p = num_params(s);
  const int m = t.e - t.b;
  const int nf = num_factors(s.arch);
  const int per = s.d + 1;
  const int M = num_poly_terms(s);
  const int pair_len = per * per;
  const int acc_len = nf * nf * pair_len + nf * M * per;
  double* xt = w.xtilde.data();
  double mono[kMaxPolyTerms];
  for (int q = 0; q < t.count; ++q) {
    const double* x = t.x + static_cast<std::size_t>(q) * s.d;
    // Each neuron is evaluated once per point; its values serve the Jacobian row now and
    // the residual curvature once the residual is known.
    double y = t.theta[p - 1];
    for (int nu = 0; nu < s.n; ++nu) {
      w.evals[nu] = eval_neuron(s, t.theta, x, nu);
      y += neuron_jacobian(s, w.evals[nu], x, nu, w.row.data());
    }
    const double r = y - t.f[q];
    sse += r * r;
    w.resid[q] = r;
    std::copy(w.row.begin() + t.b, w.row.begin() + t.e,
              w.tile.begin() + static_cast<std::size_t>(q) * m);
    if (!t.second) continue;
    for (int u = 0; u < s.d; ++u) xt[u] = x[u];
    poly_terms(s, x, mono);
    for (int nu = 0; nu < s.n; ++nu) {
      const NeuronEval& ev = w.evals[nu];
      if (ev.g.s == 0.0 && ev.g.ds == 0.0 && ev.g.d2s == 0.0) continue;
      double hab[kMaxFactors][kMaxFactors], hbD[kMaxFactors];
      neuron_curvature(s, ev, hab, hbD);
      double* acc = w.local.data() + static_cast<std::size_t>(nu) * acc_len;
      for (int fb = 0; fb < nf; ++fb) {
        for (int fc = fb; fc < nf; ++fc) {
          const double v = r * hab[fb][fc];
          if (v == 0.0) continue;
          double* mb = acc + (fb * nf + fc) * pair_len;
          for (int u = 0; u < per; ++u)
            for (int z = 0; z < per; ++z) mb[u * per + z] += v * xt[u] * xt[z];
        }
        const double v = r * hbD[fb];
        for (int al = 0; al < M; ++al) {
          double* md = acc + nf * nf * pair_len + (fb * M + al) * per;
          const double va = v * mono[al];
          for (int u = 0; u < per; ++u) md[u] += va * xt[u];
        }
      }
    }
  }
  return sse;
}

// Sum of squared residuals over the training points of ds, and its gradient added into g (all
// parameters; row is scratch of num_params); kNf and kD as in tile_points.
template <int kNf, int kD>
double sse_gradient(const Shape& shape, const double* theta, const Dataset& ds, double* row, double* g) {
  const Shape s = fixed_shape<kNf, kD>(shape);
  const int p = num_params(s);
  double sse = 0.0;
  for (int q = 0; q < ds.n_train(); ++q) {
    const double r = jacobian_row(s, theta, ds.x_train.data() + static_cast<std::size_t>(q) * s.d, row) -
                     ds.y_train[q];
    sse += r * r;
    for (int k = 0; k < p; ++k) g[k] += 2.0 * r * row[k];
  }
  return sse;
}

}  // namespace

CpuBackend::CpuBackend(int threads, bool fast_relu1d) : fast_relu1d_(fast_relu1d) {
  threads_ = thread_count(threads);
  // Parallelism is over networks; each BLAS call runs on its caller's thread.
  openblas_set_num_threads(1);
  ws_.resize(threads_);
}

std::string CpuBackend::describe() const {
  return "cpu (" + std::to_string(threads_) + " thread" + (threads_ == 1 ? "" : "s") +
         ", OpenBLAS/LAPACK)";
}

std::size_t CpuBackend::bytes_per_network(int p, int num_points) const {
  // H, then g, step, scale, the trial's parameters and one more P; the two residual vectors of
  // a relu network on 1D inputs (num_points counts the test points too: an upper bound); and
  // HostVarPro's two kept QRs of the main linear columns (MainQr: the accepted trial's and the
  // last one's), rows x columns each: at most (c + 1)(n + 1) rows (a run of points between two
  // kinks gives c + 1) and fewer columns than the linear parameters, under P^2 each for every
  // arch (about P^2 / 6 for gqu).
  return sizeof(double) * (3 * static_cast<std::size_t>(p) * p + 5 * static_cast<std::size_t>(p) +
                           2 * static_cast<std::size_t>(num_points));
}

std::size_t CpuBackend::memory_budget() const { return std::size_t(768) << 20; }

CpuBackend::Workspace& CpuBackend::workspace() { return ws_[omp_get_thread_num()]; }

void CpuBackend::load(const Batch& batch) {
  nets_ = batch.nets;
  data_ = batch.datasets;
  theta_ = batch.params;
  const int n = batch.size();
  square_off_.assign(n + 1, 0);
  vec_off_.assign(n + 1, 0);
  for (int i = 0; i < n; ++i) {
    const std::size_t p = num_params(nets_[i].shape);
    square_off_[i + 1] = square_off_[i] + p * p;
    vec_off_[i + 1] = vec_off_[i] + p;
  }
  H_.assign(square_off_[n], 0.0);
  g_.assign(vec_off_[n], 0.0);
  step_.assign(vec_off_[n], 0.0);
  scale_.assign(vec_off_[n], 0.0);
  trial_theta_.assign(vec_off_[n], 0.0);
  stage_begin_.assign(n, 0);
  stage_end_.assign(n, 0);
  seconds_.assign(n, 0.0);
  diag_only_.assign(n, 0);
  var_pro_.load(n);
  host_.load(batch, fast_relu1d_);
}

// relu, d = 1: the assembly of relu1d.h in O(N n + m^2) instead of O(N m^2). Writes g and both
// triangles of H, scaled by 2/N; kDiagonal writes only H's diagonal, in O(N n + m).
void CpuBackend::assemble_relu1d(int i, Block stage, HessianKind kind, double* loss) {
  const NetDesc& nd = nets_[i];
  const Shape& s = nd.shape;
  const HostSolver::Sorted& so = host_.sorted(nd.dataset);
  const double* theta = theta_.data() + nd.offset;
  const int npts = static_cast<int>(so.x.size());
  const int b = stage_begin_[i], e = stage_end_[i];
  const int m = e - b;
  double* H = H_.data() + square_off_[i];
  double* g = g_.data() + vec_off_[i];
  Workspace& w = workspace();

  // Residuals on the sorted points, and the prefix sums of r x^j, j <= the column degree.
  const double* resid = var_pro_.residuals(host_, i, theta).data();
  double sse = 0.0;
  for (int k = 0; k < npts; ++k) sse += resid[k] * resid[k];
  *loss = sse / npts;
  const int nr = column_degree(s.arch) + 1;
  w.rpre.resize(static_cast<std::size_t>(nr) * (npts + 1) * 2);
  build_prefix(so.x.data(), resid, npts, nr, w.rpre.data());

  // Active ranges; the stage's columns grouped by neuron (neuron s.n stands for d0).
  const int k_loc = neuron_num_params(s);
  w.range.resize(2 * (s.n + 1));
  for (int nu = 0; nu < s.n; ++nu) {
    const NeuronLines L = neuron_lines(s, theta, nu);
    active_range(so.x.data(), npts, L.W[0], L.w[0], &w.range[2 * nu], &w.range[2 * nu + 1]);
  }
  w.range[2 * s.n] = 0;
  w.range[2 * s.n + 1] = npts;
  // neuron_cols[nu * (k_loc + 1)]: count, then the stage columns; cols: their polynomials.
  w.neuron_cols.assign(static_cast<std::size_t>(s.n + 1) * (k_loc + 1), 0);
  w.cols.assign(static_cast<std::size_t>(m) * kColCoef, 0.0);
  for (int q = b; q < e; ++q) {
    int nu, lk;
    double* c = &w.cols[static_cast<std::size_t>(q - b) * kColCoef];
    if (param_owner(s, q, &nu, &lk)) {
      column_poly(neuron_lines(s, theta, nu), lk, c);
    } else {
      nu = s.n;
      c[0] = 1.0;
    }
    int* list = &w.neuron_cols[static_cast<std::size_t>(nu) * (k_loc + 1)];
    list[1 + list[0]++] = q - b;
  }

  // Gradient: sum over the active range of r times the column polynomial.
  for (int nu = 0; nu <= s.n; ++nu) {
    const int* list = &w.neuron_cols[static_cast<std::size_t>(nu) * (k_loc + 1)];
    if (list[0] == 0) continue;
    double R[kColCoef] = {};
    for (int jm = 0; jm < nr; ++jm)
      R[jm] = prefix_moment(w.rpre.data(), npts, jm, w.range[2 * nu], w.range[2 * nu + 1]);
    for (int t = 0; t < list[0]; ++t) {
      const double* c = &w.cols[static_cast<std::size_t>(list[1 + t]) * kColCoef];
      double v = 0.0;
      for (int jm = 0; jm < nr; ++jm) v += c[jm] * R[jm];
      g[list[1 + t]] = v;
    }
  }

  const int nmom = 2 * column_degree(s.arch) + 1;
  const double scale = 2.0 / npts;
  // The moments of x over the points [lo, hi) (zero where the range is empty).
  auto moments = [&](int lo, int hi, double* M) {
    for (int jm = 0; jm < kNumMoments; ++jm) M[jm] = 0.0;
    if (lo < hi)
      for (int jm = 0; jm < nmom; ++jm) M[jm] = prefix_moment(so.pre.data(), npts, jm, lo, hi);
  };
  if (kind == HessianKind::kDiagonal) {
    // The diagonal of J^T J alone: each column against itself over its neuron's active range
    // (the same sums as the full assembly's diagonal). The rest of H is left as it was.
    for (int nu = 0; nu <= s.n; ++nu) {
      const int* list = &w.neuron_cols[static_cast<std::size_t>(nu) * (k_loc + 1)];
      if (list[0] == 0) continue;
      const int lo = w.range[2 * nu], hi = w.range[2 * nu + 1];
      double M[kNumMoments];
      moments(lo, hi, M);
      for (int t = 0; t < list[0]; ++t) {
        const int c = list[1 + t];
        const double* p = &w.cols[static_cast<std::size_t>(c) * kColCoef];
        const double v = lo < hi ? hankel_form(p, p, M) : 0.0;
        H[c + static_cast<std::size_t>(c) * m] = v * scale;
      }
    }
    for (int q = 0; q < m; ++q) g[q] *= scale;
    return;
  }

  // J^T J: for each pair of neurons (d0 included), the moments of x over the intersection
  // of their active ranges, then one Hankel form per pair of their columns.
  for (int n1 = 0; n1 <= s.n; ++n1) {
    const int* l1 = &w.neuron_cols[static_cast<std::size_t>(n1) * (k_loc + 1)];
    if (l1[0] == 0) continue;
    for (int n2 = 0; n2 <= n1; ++n2) {
      const int* l2 = &w.neuron_cols[static_cast<std::size_t>(n2) * (k_loc + 1)];
      if (l2[0] == 0) continue;
      const int lo = std::max(w.range[2 * n1], w.range[2 * n2]);
      const int hi = std::min(w.range[2 * n1 + 1], w.range[2 * n2 + 1]);
      double M[kNumMoments];
      moments(lo, hi, M);
      for (int t1 = 0; t1 < l1[0]; ++t1) {
        const int c1 = l1[1 + t1];
        const double* p1 = &w.cols[static_cast<std::size_t>(c1) * kColCoef];
        for (int t2 = 0; t2 < l2[0]; ++t2) {
          const int c2 = l2[1 + t2];
          const double v = lo < hi ? hankel_form(p1, &w.cols[static_cast<std::size_t>(c2) * kColCoef], M) : 0.0;
          H[c1 + static_cast<std::size_t>(c2) * m] = v;
          H[c2 + static_cast<std::size_t>(c1) * m] = v;
        }
      }
    }
  }

  // The residual curvature, neuron by neuron: polynomials against the moments of r x^j.
  if (kind == HessianKind::kExact && !stage_is_linear(s.arch, stage)) {
    for (int nu = 0; nu < s.n; ++nu) {
      const int lo = w.range[2 * nu], hi = w.range[2 * nu + 1];
      if (lo >= hi) continue;
      const NeuronLines L = neuron_lines(s, theta, nu);
      double R[kColCoef] = {};
      for (int jm = 0; jm < nr; ++jm) R[jm] = prefix_moment(w.rpre.data(), npts, jm, lo, hi);
      for (int pp = 0; pp < k_loc; ++pp) {
        const int gp = neuron_param_index(s, nu, pp);
        if (gp < b || gp >= e) continue;
        for (int qq = 0; qq <= pp; ++qq) {
          const int gq = neuron_param_index(s, nu, qq);
          if (gq < b || gq >= e) continue;
          double c[kColCoef];
          curvature_poly(L, pp, qq, c);
          double v = 0.0;
          for (int jm = 0; jm < nr; ++jm) v += c[jm] * R[jm];
          H[(gp - b) + static_cast<std::size_t>(gq - b) * m] += v;
          if (gp != gq) H[(gq - b) + static_cast<std::size_t>(gp - b) * m] += v;
        }
      }
    }
  }
  for (std::size_t q = 0; q < static_cast<std::size_t>(m) * m; ++q) H[q] *= scale;
  for (int q = 0; q < m; ++q) g[q] *= scale;
}

void CpuBackend::read_params(std::vector<double>& params) { params = theta_; }

void CpuBackend::assemble(const std::vector<int>& nets, Block stage, HessianKind kind,
                          double* loss, double* scaled_grad) {
  for_each_net(nets, threads_, seconds_, [&](int j, int i) {
    const NetDesc& nd = nets_[i];
    const Shape& s = nd.shape;
    const Dataset& ds = *data_[nd.dataset];
    const double* theta = theta_.data() + nd.offset;
    const int p = num_params(s);
    int b, e;
    stage_range(s, stage, &b, &e);
    stage_begin_[i] = b;
    stage_end_[i] = e;
    var_pro_.assembled(i);
    diag_only_[i] = 0;
    const int m = e - b;
    double* H = H_.data() + square_off_[i];
    double* g = g_.data() + vec_off_[i];
    if (relu1d_fast_path(s) && fast_relu1d_) {
      const TallyTimer timer;
      assemble_relu1d(i, stage, kind, &loss[j]);
      diag_only_[i] = kind == HessianKind::kDiagonal;
      scaled_grad[j] = jacobi_scale(m, H, g, scale_.data() + vec_off_[i]);
      if (timer.on() && m == p) {
        // The ALL stage (tally.h): residuals, loss, prefix sums of r x^j, gradient; then every
        // entry of J^T J (a Hankel form of two column polynomials, one moment set per pair of
        // neurons), where the target forms its diagonal only.
        const int npts = ds.n_train(), nr = column_degree(s.arch) + 1, nmom = 2 * nr - 1;
        double base = residual_flops(s, npts) + 2.0 * npts + 2.0 * m * m;
        for (int jm = 0; jm < nr; ++jm) base += static_cast<double>(npts) * (jm + 14);
        base += (s.n + 1.0) * nr * 8.0 + 2.0 * m * nr;
        const double entry = 2.0 * nr * nr + 2.0 * nr, pairs = (s.n + 1.0) * (s.n + 2.0) / 2.0;
        tally_add(Prim::kAssembly, base + pairs * nmom * 8.0 + m * (m + 1.0) / 2.0 * entry,
                  base - 2.0 * m * m + (s.n + 1.0) * nmom * 8.0 + m * entry, timer.seconds());
      }
      return;
    }
    std::fill(H, H + static_cast<std::size_t>(m) * m, 0.0);
    std::fill(g, g + m, 0.0);

    Workspace& w = workspace();
    w.tile.resize(static_cast<std::size_t>(m) * kTile);
    w.row.resize(p);
    w.row[p - 1] = 1.0;  // dy/dd0
    w.resid.resize(kTile);
    w.evals.resize(s.n);
    const int nf = num_factors(s.arch);
    const int per = s.d + 1;
    // Per neuron: for factor pairs b <= c the moments sum_k r_k hab[b][c] x~ x~^T (per x per),
    // then for each factor b and monomial alpha the moments sum_k r_k hbD[b] x^alpha x~ (per).
    const int M = num_poly_terms(s);
    const int pair_len = per * per;
    const int acc_len = nf * nf * pair_len + nf * M * per;
    // kDiagonal takes the Gauss-Newton assembly here: the full J^T J costs little more than
    // its diagonal once the Jacobian rows are made.
    const bool second = kind == HessianKind::kExact && !stage_is_linear(s.arch, stage);
    if (second) w.local.assign(static_cast<std::size_t>(s.n) * acc_len, 0.0);
    w.xtilde.resize(per);
    w.xtilde[s.d] = 1.0;  // (x, 1)

    const int npts = ds.n_train();
    double sse = 0.0;
    const double one = 1.0;
    const int inc = 1;
    for (int t0 = 0; t0 < npts; t0 += kTile) {
      const int nb = std::min(kTile, npts - t0);
      TileArgs a{s, theta, ds.x_train.data() + static_cast<std::size_t>(t0) * s.d,
                 ds.y_train.data() + t0, nb, b, e, second, &w};
      sse = by_shape(s, [&](auto nf, auto d) {
        return tile_points<decltype(nf)::value, decltype(d)::value>(a, sse);
      });
      dsyrk_("L", "N", &m, &nb, &one, w.tile.data(), &m, &one, H, &m);
      dgemv_("N", &m, &nb, &one, w.tile.data(), &m, w.resid.data(), &inc, &one, g, &inc);
    }
    if (second) {
      // Scatter sum_k r_k d2y_k into the lower triangle of the stage block.
      const int k = neuron_num_params(s);
      for (int nu = 0; nu < s.n; ++nu) {
        const double* acc = w.local.data() + static_cast<std::size_t>(nu) * acc_len;
        for (int pp = 0; pp < k; ++pp) {
          const int gp = neuron_param_index(s, nu, pp);
          if (gp < b || gp >= e) continue;
          const int bp = pp < nf * per ? pp / per : nf, jp = pp - bp * per;
          for (int qq = 0; qq < k; ++qq) {
            const int gq = neuron_param_index(s, nu, qq);
            if (gq < b || gq > gp) continue;
            const int bq = qq < nf * per ? qq / per : nf, jq = qq - bq * per;
            double v;
            if (bp == nf && bq == nf) v = 0.0;
            else if (bp == nf) v = acc[nf * nf * pair_len + (bq * M + jp) * per + jq];
            else if (bq == nf) v = acc[nf * nf * pair_len + (bp * M + jq) * per + jp];
            else if (bp <= bq) v = acc[(bp * nf + bq) * pair_len + jp * per + jq];
            else v = acc[(bq * nf + bp) * pair_len + jq * per + jp];
            H[(gp - b) + static_cast<std::size_t>(gq - b) * m] += v;
          }
        }
      }
    }
    const double c = 2.0 / npts;
    for (int col = 0; col < m; ++col) {
      for (int r = col; r < m; ++r) {
        double& lo = H[r + static_cast<std::size_t>(col) * m];
        lo *= c;
        H[col + static_cast<std::size_t>(r) * m] = lo;
      }
      g[col] *= c;
    }
    loss[j] = sse / npts;
    scaled_grad[j] = jacobi_scale(m, H, g, scale_.data() + vec_off_[i]);
  });
}

void CpuBackend::read_system(int i, std::vector<double>* H, std::vector<double>* g) {
  const std::size_t m = stage_end_[i] - stage_begin_[i];
  const double* h = H_.data() + square_off_[i];
  if (diag_only_[i]) {
    H->assign(m * m, 0.0);
    for (std::size_t q = 0; q < m; ++q) (*H)[q + q * m] = h[q + q * m];
  } else {
    H->assign(h, h + m * m);
  }
  g->assign(g_.data() + vec_off_[i], g_.data() + vec_off_[i] + m);
}

void CpuBackend::solve(const std::vector<int>& nets, const double* lambda, int* info, double* gdotp) {
  for (int i : nets)
    if (diag_only_[i]) throw std::logic_error("solve: the last assembly built only the Hessian's diagonal");
  for_each_net(nets, threads_, seconds_, [&](int j, int i) {
    const int m = stage_end_[i] - stage_begin_[i];
    Workspace& w = workspace();
    w.work.resize(static_cast<std::size_t>(m) * m);
    gdotp[j] = NAN;
    const TallyTimer timer;
    info[j] = damped_solve(m, H_.data() + square_off_[i], g_.data() + vec_off_[i],
                           scale_.data() + vec_off_[i], lambda[j], w.work.data(),
                           step_.data() + vec_off_[i], &gdotp[j]);
    if (timer.on() && m == num_params(nets_[i].shape)) {
      const double f = flops_potrf(m) + 2.0 * m * m;
      tally_add(Prim::kOther, f, f, timer.seconds());
    }
  });
}

void CpuBackend::least_squares(const std::vector<int>& nets, Block stage, int* rank, double* loss) {
  for_each_net(nets, threads_, seconds_, [&](int j, int i) {
    int b, e;
    stage_range(nets_[i].shape, stage, &b, &e);
    stage_begin_[i] = b;
    stage_end_[i] = e;
    rank[j] = host_.stage_step(i, theta_.data() + nets_[i].offset, b, e, step_.data() + vec_off_[i], &loss[j],
                               workspace().host);
  });
}

void CpuBackend::var_pro_solve(const std::vector<int>& nets, const double* lambda, int* info,
                               StepModel* model) {
  for (int i : nets)
    if (stage_begin_[i] != 0 || stage_end_[i] != num_params(nets_[i].shape))
      throw std::logic_error("var_pro_solve: the last assembly was not of the ALL stage");
  // The reduced system of a network is built once per assembly; a damping retry only solves
  // it again (HostVarPro).
  for_each_net(nets, threads_, seconds_, [&](int j, int i) {
    info[j] = var_pro_.solve(host_, i, theta_.data() + nets_[i].offset, H_.data() + square_off_[i],
                             scale_.data() + vec_off_[i], lambda[j], step_.data() + vec_off_[i], &model[j],
                             workspace().host);
  });
}

void CpuBackend::var_pro_trial(const std::vector<int>& nets, bool take_step, double* loss,
                               const double* alpha) {
  for_each_net(nets, threads_, seconds_, [&](int j, int i) {
    // The Jacobi scale of the last assembly, where it was of the ALL stage (indexed then by
    // parameter): its left-out linear columns go last in the trial's QR.
    const bool all = stage_begin_[i] == 0 && stage_end_[i] == num_params(nets_[i].shape);
    loss[j] = var_pro_.trial(host_, i, theta_.data() + nets_[i].offset, take_step ? step_.data() + vec_off_[i] : nullptr,
                             trial_theta_.data() + vec_off_[i], workspace().host, alpha != nullptr ? alpha[j] : 1.0,
                             all ? scale_.data() + vec_off_[i] : nullptr);
  });
}

void CpuBackend::var_pro_accept(const std::vector<int>& nets) {
  for_each_net(nets, threads_, seconds_, [&](int, int i) {
    const double* trial = trial_theta_.data() + vec_off_[i];
    std::copy(trial, trial + num_params(nets_[i].shape), theta_.data() + nets_[i].offset);
    var_pro_.accept(i);
  });
}

void CpuBackend::gradient(const std::vector<int>& nets, double* loss, double* grad) {
  const std::vector<std::size_t> off = packed_offsets(nets_, nets);
  for_each_net(nets, threads_, seconds_, [&](int j, int i) {
    const NetDesc& nd = nets_[i];
    const Shape& s = nd.shape;
    const Dataset& ds = *data_[nd.dataset];
    const int p = num_params(s);
    double* g = grad + off[j];
    std::fill(g, g + p, 0.0);
    Workspace& w = workspace();
    w.row.resize(p);
    const double* theta = theta_.data() + nd.offset;
    const double sse = by_shape(s, [&](auto nf, auto d) {
      return sse_gradient<decltype(nf)::value, decltype(d)::value>(s, theta, ds, w.row.data(), g);
    });
    const int npts = ds.n_train();
    for (int k = 0; k < p; ++k) g[k] /= npts;
    loss[j] = sse / npts;
  });
}

void CpuBackend::add_params(const std::vector<int>& nets, const double* delta) {
  const std::vector<std::size_t> off = packed_offsets(nets_, nets);
  for_each_net(nets, threads_, seconds_, [&](int j, int i) {
    double* theta = theta_.data() + nets_[i].offset;
    for (int k = 0, p = num_params(nets_[i].shape); k < p; ++k) theta[k] += delta[off[j] + k];
    var_pro_.moved(i);
  });
}

void CpuBackend::set_params(const std::vector<int>& nets, const double* values) {
  const std::vector<std::size_t> off = packed_offsets(nets_, nets);
  for (std::size_t j = 0; j < nets.size(); ++j) {
    std::copy(values + off[j], values + off[j + 1], theta_.data() + nets_[nets[j]].offset);
    var_pro_.moved(nets[j]);
  }
}

void CpuBackend::trial_losses(const std::vector<int>& nets, const double* alpha, int n_alpha,
                              double* loss) {
  for_each_net(nets, threads_, seconds_, [&](int j, int i) {
    const NetDesc& nd = nets_[i];
    const Shape& s = nd.shape;
    const Dataset& ds = *data_[nd.dataset];
    const int p = num_params(s);
    const double* theta = theta_.data() + nd.offset;
    const double* step = step_.data() + vec_off_[i];
    const int b = stage_begin_[i], e = stage_end_[i];
    Workspace& w = workspace();
    w.trial.resize(static_cast<std::size_t>(n_alpha) * p);
    for (int t = 0; t < n_alpha; ++t) {
      double* th = w.trial.data() + static_cast<std::size_t>(t) * p;
      std::copy(theta, theta + p, th);
      for (int q = b; q < e; ++q) th[q] += alpha[t] * step[q - b];
    }
    const int npts = ds.n_train();
    for (int t = 0; t < n_alpha; ++t) {
      const double* th = w.trial.data() + static_cast<std::size_t>(t) * p;
      loss[static_cast<std::size_t>(j) * n_alpha + t] = train_sse(s, th, ds) / npts;
    }
  });
}

void CpuBackend::apply_step(const std::vector<int>& nets, const double* alpha) {
  for_each_net(nets, threads_, seconds_, [&](int j, int i) {
    double* theta = theta_.data() + nets_[i].offset;
    const double* step = step_.data() + vec_off_[i];
    for (int q = stage_begin_[i]; q < stage_end_[i]; ++q) theta[q] += alpha[j] * step[q - stage_begin_[i]];
    var_pro_.moved(i);
  });
}

void CpuBackend::rmse(double* train, double* test) {
  std::vector<int> all(nets_.size());
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int>(i);
  for_each_net(all, threads_, seconds_, [&](int, int i) {
    const NetDesc& nd = nets_[i];
    const Dataset& ds = *data_[nd.dataset];
    const double* theta = theta_.data() + nd.offset;
    auto run = [&](const std::vector<double>& x, const std::vector<double>& y) {
      double sse = 0.0;
      for (std::size_t q = 0; q < y.size(); ++q) {
        const double r = evaluate(nd.shape, theta, x.data() + q * nd.shape.d) - y[q];
        sse += r * r;
      }
      return y.empty() ? NAN : std::sqrt(sse / y.size());
    };
    train[i] = run(ds.x_train, ds.y_train);
    test[i] = run(ds.x_test, ds.y_test);
  });
}

void CpuBackend::network_seconds(double* seconds) {
  std::copy(seconds_.begin(), seconds_.end(), seconds);
}

}  // namespace gs
