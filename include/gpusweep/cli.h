// Command-line parsing helpers shared by the program and its tests.
#pragma once

#include <string>
#include <vector>

#include "gpusweep/sweep.h"

namespace gs {

// "A:B" (inclusive), "A:B:S" or a list "4,8,16"; widths from 1 to kMaxWidth, sorted, unique.
// Throws std::invalid_argument with a one-line message naming --widths.
constexpr int kMaxWidth = 100000;
std::vector<int> parse_widths(const std::string& text);
// Trained archs (mlp, glu, gqu) and baselines (mlp-construct, glu-construct, spline1..3).
std::vector<Model> parse_archs(const std::string& text);
std::vector<Act> parse_acts(const std::string& text);
std::vector<std::string> split_list(const std::string& text, char sep);
// Splits --target at the commas outside parentheses, so "max(x,0),sin4" is two targets.
std::vector<std::string> split_targets(const std::string& text);

}  // namespace gs
