// Names of the architectures of arch.h.
#include "gpusweep/model/arch.h"

#include <vector>

namespace gs {

std::string arch_family_name(Arch a) {
  return std::string(family_name(arch_family(a))) + ":" + std::to_string(arch_order(a));
}

const char* arch_name(Arch a) {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const ArchRow& r : kArchTable)
      v.push_back(r.alias[0] != '\0' ? std::string(r.alias) : arch_family_name(row_arch(r)));
    return v;
  }();
  for (int k = 0; k < kNumArchs; ++k)
    if (row_arch(kArchTable[k]) == a) return names[k].c_str();
  return "?";
}

bool parse_arch(const std::string& name, Arch* out) {
  for (const ArchRow& r : kArchTable) {
    const Arch a = row_arch(r);
    if (name == arch_name(a) || name == arch_family_name(a)) {
      *out = a;
      return true;
    }
  }
  return false;
}

}  // namespace gs
