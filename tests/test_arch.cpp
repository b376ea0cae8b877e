// The architecture descriptor (arch.h): every row's names, factors, stages, parameter layout,
// P and effective P, checked against counts written out by hand and against the layout's
// own inverse.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpusweep/model/arch.h"
#include "gpusweep/model/network.h"
#include "gpusweep/solver/baselines.h"
#include "gpusweep/train/driver.h"
#include "gpusweep/train/sweep.h"

namespace gs {
namespace {

TEST(ArchTable, NamesAreUniqueAndParseBack) {
  std::set<std::string> names;
  for (const ArchRow& r : kArchTable) {
    const Arch a = row_arch(r);
    EXPECT_EQ(arch_row(a), &r);
    EXPECT_EQ(arch_family(a), r.family);
    EXPECT_EQ(arch_order(a), r.order);
    EXPECT_TRUE(names.insert(arch_name(a)).second) << arch_name(a);
    EXPECT_TRUE(names.insert(arch_family_name(a)).second || r.alias[0] == '\0') << arch_family_name(a);
    Arch back;
    ASSERT_TRUE(parse_arch(arch_name(a), &back));
    EXPECT_EQ(back, a);
    ASSERT_TRUE(parse_arch(arch_family_name(a), &back));
    EXPECT_EQ(back, a);
  }
  Arch a;
  for (const char* bad : {"gated:", "gated", "gated:9", "gpoly:9", "gpoly", "Gated:1", "mlp ", ""})
    EXPECT_FALSE(parse_arch(bad, &a)) << bad;
}

TEST(ArchTable, ThePapersArchitecturesKeepTheirValuesAndNames) {
  EXPECT_EQ(make_arch(Family::kGated, 0), Arch::kMlp);
  EXPECT_EQ(make_arch(Family::kGated, 1), Arch::kGlu);
  EXPECT_EQ(make_arch(Family::kGated, 2), Arch::kGqu);
  EXPECT_STREQ(arch_name(Arch::kMlp), "mlp");
  EXPECT_STREQ(arch_name(Arch::kGqu), "gqu");
  EXPECT_EQ(arch_family_name(Arch::kGqu), "gated:2");
  EXPECT_STREQ(arch_name(make_arch(Family::kGated, 3)), "gated:3");
  EXPECT_GE(kMaxFactors, 5);  // gated:4
  EXPECT_STREQ(arch_name(make_arch(Family::kGpoly, 2)), "gpoly:2");
  Arch a;
  ASSERT_TRUE(parse_arch("gpoly:4", &a));
  EXPECT_EQ(arch_family(a), Family::kGpoly);
  EXPECT_EQ(poly_degree(a), 4);
  EXPECT_EQ(num_factors(a), 1);
}

// C(d + K, K) written out as the count of exponent tuples, and the monomials at a point
// against a brute-force enumeration of the tuples: the same values, each once, in graded
// order.
TEST(ArchTable, PolynomialTermsAreEveryMonomialOnceInGradedOrder) {
  const double x[4] = {1.3, -0.7, 2.1, 0.45};
  for (int K = 0; K <= 4; ++K)
    for (int d = 1; d <= 4; ++d) {
      const Shape s{make_arch(Family::kGpoly, K), Act::kRelu, d, 1};
      std::vector<std::pair<int, double>> want;  // (degree, value)
      std::vector<int> e(d, 0);
      for (;;) {
        int deg = 0;
        double v = 1.0;
        for (int j = 0; j < d; ++j) {
          deg += e[j];
          for (int t = 0; t < e[j]; ++t) v *= x[j];
        }
        if (deg <= K) want.push_back({deg, v});
        int j = 0;
        while (j < d && ++e[j] > K) e[j++] = 0;
        if (j == d) break;
      }
      if (static_cast<long long>(want.size()) > kMaxPolyTerms) {
        EXPECT_GT(poly_term_count(d, K), kMaxPolyTerms);
        continue;
      }
      ASSERT_EQ(num_poly_terms(s), static_cast<int>(want.size())) << "K=" << K << " d=" << d;
      double got[kMaxPolyTerms];
      ASSERT_EQ(poly_terms(s, x, got), num_poly_terms(s));
      std::vector<bool> used(want.size(), false);
      int prev_deg = 0;
      for (int a = 0; a < num_poly_terms(s); ++a) {
        EXPECT_DOUBLE_EQ(poly_term(s, x, a), got[a]);
        int hit = -1;
        for (std::size_t w = 0; w < want.size(); ++w)
          if (!used[w] && std::fabs(want[w].second - got[a]) <= 1e-12 * std::fabs(got[a])) {
            hit = static_cast<int>(w);
            break;
          }
        ASSERT_GE(hit, 0) << "K=" << K << " d=" << d << " term " << a;
        used[hit] = true;
        EXPECT_GE(want[hit].first, prev_deg);
        prev_deg = want[hit].first;
      }
    }
}

TEST(ArchTable, ParameterCountsAsWrittenOut) {
  for (const ArchRow& r : kArchTable) {
    const Arch a = row_arch(r);
    const int K = r.order;
    if (r.family == Family::kGpoly) {
      EXPECT_EQ(num_factors(a), 1);
      for (int n : {1, 3, 40}) {
        const Shape relu{a, Act::kRelu, 1, n}, smooth{a, Act::kGelu, 1, n};
        // The gate (2) and K + 1 coefficients per neuron, and d0.
        EXPECT_EQ(num_params(relu), (K + 3) * n + 1);
        EXPECT_EQ(effective_params(relu), (K + 2) * n + 1);  // relu's homogeneity only
        EXPECT_EQ(effective_params(smooth), (K + 3) * n + 1);
        // d = 2: the gate (3) and the (K + 1)(K + 2) / 2 monomials of degree <= K in 2 inputs.
        const Shape two{a, Act::kRelu, 2, n};
        EXPECT_EQ(num_params(two), (3 + (K + 1) * (K + 2) / 2) * n + 1);
      }
      continue;
    }
    EXPECT_EQ(num_factors(a), K + 1);
    for (int d : {1, 2, 7})
      for (int n : {1, 3, 40}) {
        const Shape relu{a, Act::kRelu, d, n}, smooth{a, Act::kSilu, d, n};
        // K + 1 factors of d + 1 parameters, D, and d0.
        EXPECT_EQ(num_params(relu), (K + 1) * (d + 1) * n + n + 1);
        // Each neuron loses one parameter per linear factor (its scale against D), and one
        // more for relu's positive homogeneity.
        EXPECT_EQ(effective_params(smooth), num_params(smooth) - K * n);
        EXPECT_EQ(effective_params(relu), num_params(relu) - (K + 1) * n);
        if (d == 1) EXPECT_EQ(effective_params(relu), (K + 2) * n + 1);
      }
  }
  EXPECT_EQ(effective_params(Shape{Arch::kMlp, Act::kRelu, 1, 10}), 21);
  EXPECT_EQ(effective_params(Shape{Arch::kGlu, Act::kRelu, 1, 10}), 31);
  EXPECT_EQ(effective_params(Shape{Arch::kGqu, Act::kRelu, 1, 10}), 41);
  EXPECT_EQ(model_effective_params(Model(Method::kSpline, Arch::kMlp, 3), 1, 10, Act::kRelu), 13);
  EXPECT_EQ(model_effective_params(Model(Method::kConstruct, Arch::kGqu, 0), 1, 10, Act::kSilu), 41);
  EXPECT_EQ(model_effective_params(Model(Arch::kGqu), 1, 10, Act::kSilu), 51);
  // gpoly:1 holds the glu's functions with one parameter fewer per neuron, and as many
  // effective ones.
  const Shape gp1{make_arch(Family::kGpoly, 1), Act::kRelu, 1, 10};
  EXPECT_EQ(num_params(gp1), 41);
  EXPECT_EQ(effective_params(gp1), effective_params(Shape{Arch::kGlu, Act::kRelu, 1, 10}));
}

TEST(ArchTable, LayoutIsContiguousAndOwnsEveryParameterOnce) {
  for (const ArchRow& r : kArchTable) {
    const Arch a = row_arch(r);
    for (int d : {1, 3}) {
      const Shape s{a, Act::kRelu, d, 4};
      const int p = num_params(s);
      std::vector<int> seen(p, 0);
      for (int i = 0; i < s.n; ++i)
        for (int k = 0; k < neuron_num_params(s); ++k) {
          const int q = neuron_param_index(s, i, k);
          ASSERT_GE(q, 0);
          ASSERT_LT(q, p - 1);
          ++seen[q];
          int i2, k2;
          ASSERT_TRUE(param_owner(s, q, &i2, &k2));
          EXPECT_EQ(i2, i);
          EXPECT_EQ(k2, k);
        }
      int i2, k2;
      EXPECT_FALSE(param_owner(s, p - 1, &i2, &k2));  // d0
      for (int q = 0; q < p - 1; ++q) EXPECT_EQ(seen[q], 1) << arch_name(a) << " q=" << q;
      // Every stage is a contiguous range; the factor stages tile [0, D), and D ends at P.
      int end_prev = 0;
      for (int b = 0; b < num_factors(a); ++b) {
        int lo, hi;
        ASSERT_TRUE(has_block(a, factor_block(b)));
        stage_range(s, factor_block(b), &lo, &hi);
        EXPECT_EQ(lo, end_prev);
        EXPECT_EQ(hi - lo, s.n * (d + 1));
        EXPECT_EQ(stage_is_linear(a, factor_block(b)), b > 0);
        end_prev = hi;
      }
      EXPECT_EQ(end_prev, d_offset(s));
      EXPECT_EQ(p - 1 - d_offset(s), s.n * num_poly_terms(s));  // D: every neuron's coefficients
      for (int b = num_factors(a); b < kMaxFactors; ++b) EXPECT_FALSE(has_block(a, factor_block(b)));
    }
  }
}

// A polynomial whose coefficients would not fit the per-neuron arrays is refused up front,
// with its count.
TEST(ArchTable, TooManyPolynomialTermsAreRefused) {
  const Arch g4 = make_arch(Family::kGpoly, 4);
  EXPECT_NO_THROW(check_poly_terms(g4, 3));  // 35
  try {
    check_poly_terms(g4, 4);
    ADD_FAILURE() << "gpoly:4 in 4 inputs accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("gpoly:4"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("70 coefficients"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(check_poly_terms(make_arch(Family::kGated, 4), 500));
  SweepSpec spec;
  Dataset ds;
  ds.d = 4;
  ds.name = "four";
  spec.datasets.push_back(ds);
  spec.archs = {Model(g4)};
  spec.acts = {Act::kRelu};
  spec.widths = {2};
  EXPECT_THROW(make_jobs(spec), std::invalid_argument);
}

TEST(Stages, EveryFactorHasANameThatParsesBack) {
  std::set<std::string> names;
  for (int k = 0; k <= static_cast<int>(Block::kAll); ++k) {
    const Block b = static_cast<Block>(k);
    const std::string name = block_name(b);
    EXPECT_TRUE(names.insert(name).second) << name;
    const auto st = parse_schedule(name + "*3");
    ASSERT_EQ(st.size(), 1u);
    EXPECT_EQ(st[0].block, b);
    EXPECT_EQ(st[0].steps, 3);
  }
  EXPECT_EQ(block_name(Block::kG), "G");
  EXPECT_EQ(block_name(Block::kU), "U");
  EXPECT_EQ(block_name(Block::kQ), "Q");
  EXPECT_EQ(block_name(factor_block(3)), "R");
  EXPECT_EQ(block_name(factor_block(4)), "S");
  EXPECT_EQ(block_name(Block::kD), "D");
  EXPECT_EQ(block_name(Block::kAll), "ALL");
  EXPECT_THROW(parse_schedule("D,X"), std::invalid_argument);
}

}  // namespace
}  // namespace gs
