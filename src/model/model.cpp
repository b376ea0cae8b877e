// The names of what a sweep trains (model.h): activations, widths, models and their lists.
#include "gpusweep/model/model.h"

#include <algorithm>
#include <stdexcept>

#include "gpusweep/model/network.h"
#include "gpusweep/util/text.h"

namespace gs {

// ---- activations and widths -----------------------------------------------------------------

const char* act_name(Act a) {
  switch (a) {
    case Act::kRelu: return "relu";
    case Act::kGelu: return "gelu";
    case Act::kSilu: return "silu";
    case Act::kSigmoid: return "sigmoid";
  }
  return "?";
}

namespace {
long parse_width_number(const std::string& text, const std::string& part) {
  std::size_t used = 0;
  long v = 0;
  bool ok = !part.empty() && part.find_first_not_of("0123456789") == std::string::npos;
  if (ok) {
    try {
      v = std::stol(part, &used);
    } catch (const std::exception&) {
      ok = false;
    }
  }
  if (!ok || used != part.size())
    throw std::invalid_argument("--widths '" + text + "': '" + part +
                                "' is not a whole number (use A:B, A:B:S or a list like 4,8,16)");
  if (v < 1 || v > kMaxWidth)
    throw std::invalid_argument("--widths '" + text + "': width " + part + " is out of range 1.." +
                                std::to_string(kMaxWidth));
  return v;
}
}  // namespace

std::vector<int> parse_widths(const std::string& text) {
  std::vector<int> w;
  if (text.find(':') != std::string::npos) {
    const auto parts = split_list(text, ':');
    if (parts.size() > 3)
      throw std::invalid_argument("--widths '" + text + "': use A:B, A:B:S or a list like 4,8,16");
    const long a = parse_width_number(text, parts[0]);
    const long b = parse_width_number(text, parts[1]);
    const long s = parts.size() == 3 ? parse_width_number(text, parts[2]) : 1;
    if (b < a)
      throw std::invalid_argument("--widths '" + text + "': the range is empty (" +
                                  std::to_string(b) + " < " + std::to_string(a) + ")");
    for (long v = a; v <= b; v += s) w.push_back(static_cast<int>(v));
  } else {
    for (const auto& part : split_list(text, ',')) w.push_back(static_cast<int>(parse_width_number(text, part)));
  }
  std::sort(w.begin(), w.end());
  w.erase(std::unique(w.begin(), w.end()), w.end());
  return w;
}

std::vector<Model> parse_archs(const std::string& text) {
  std::vector<Model> out;
  for (const auto& s : split_list(text, ',')) {
    Model a;
    if (!parse_model(s, &a)) {
      std::string names;
      for (const auto& n : model_names()) names += (names.empty() ? "" : ", ") + n;
      throw std::invalid_argument("--arch: unknown architecture '" + s + "' (choose from " + names + ")");
    }
    if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
  }
  return out;
}

std::vector<Act> parse_acts(const std::string& text) {
  std::vector<Act> out;
  for (const auto& s : split_list(text, ',')) {
    Act a;
    if (s == "relu") a = Act::kRelu;
    else if (s == "gelu") a = Act::kGelu;
    else if (s == "silu") a = Act::kSilu;
    else if (s == "sigmoid") a = Act::kSigmoid;
    else throw std::invalid_argument("--activation: unknown activation '" + s + "' (choose from relu, gelu, silu, sigmoid)");
    if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
  }
  return out;
}
// ---- models ---------------------------------------------------------------------------------

namespace {
std::vector<Model> all_models() {
  std::vector<Model> v;
  for (const ArchRow& r : kArchTable) v.push_back(Model(row_arch(r)));
  for (const ArchRow& r : kArchTable) v.push_back(Model(Method::kConstruct, row_arch(r), 0));
  v.push_back(Model(Method::kPaper, Arch::kMlp, 0));
  v.push_back(Model(Method::kPaper, Arch::kGlu, 0));
  for (int deg = 1; deg <= kMaxSplineDegree; ++deg) v.push_back(Model(Method::kSpline, Arch::kMlp, deg));
  return v;
}
}  // namespace

std::string model_name(const Model& m) {
  switch (m.method) {
    case Method::kTrain: return arch_name(m.arch);
    case Method::kConstruct: return std::string(arch_name(m.arch)) + "-construct";
    case Method::kPaper: return std::string(arch_name(m.arch)) + "-paper";
    case Method::kSpline: return "spline" + std::to_string(m.degree);
  }
  return "?";
}

bool parse_model(const std::string& name, Model* out) {
  for (const Model& m : all_models()) {
    // A network's model also answers to its family name: gated:2, gated:2-construct.
    const std::string family = m.method == Method::kSpline ? std::string() : arch_family_name(m.arch);
    const std::string alt = m.method == Method::kTrain ? family
                            : m.method == Method::kConstruct ? family + "-construct"
                            : m.method == Method::kPaper ? family + "-paper"
                                                         : std::string();
    if (model_name(m) == name || (!alt.empty() && alt == name)) {
      *out = m;
      return true;
    }
  }
  return false;
}

std::vector<std::string> model_names() {
  std::vector<std::string> v;
  for (const Model& m : all_models()) v.push_back(model_name(m));
  return v;
}

int model_num_params(const Model& m, int d, int width) {
  if (m.method == Method::kSpline) return width + m.degree;
  return num_params(Shape{m.arch, Act::kRelu, d, width});
}

int model_effective_params(const Model& m, int d, int width, Act trained_act) {
  if (m.method == Method::kSpline) return width + m.degree;
  return effective_params(Shape{m.arch, m.method == Method::kTrain ? trained_act : Act::kRelu, d, width});
}

const char* model_act_name(const Model& m, Act trained_act) {
  switch (m.method) {
    case Method::kTrain: return act_name(trained_act);
    case Method::kConstruct:
    case Method::kPaper: return "relu";
    case Method::kSpline: return "none";
  }
  return "?";
}

}  // namespace gs
