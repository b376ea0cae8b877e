// The architecture descriptor (arch.h): every row's names, factors, stages, parameter layout,
// P and effective P, checked against counts written out by hand and against the layout's
// own inverse.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "gpusweep/arch.h"
#include "gpusweep/baselines.h"
#include "gpusweep/driver.h"
#include "gpusweep/network.h"

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
  for (const char* bad : {"gated:", "gated", "gated:9", "gpoly:1", "Gated:1", "mlp ", ""})
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
}

TEST(ArchTable, ParameterCountsAsWrittenOut) {
  for (const ArchRow& r : kArchTable) {
    const Arch a = row_arch(r);
    const int K = r.order;
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
      for (int b = num_factors(a); b < kMaxFactors; ++b) EXPECT_FALSE(has_block(a, factor_block(b)));
    }
  }
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
