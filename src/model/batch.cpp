// The ragged batch of batch.h: adding a network, and packed offsets of a list of networks.
#include "gpusweep/model/batch.h"

#include <stdexcept>
#include <string>

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

}  // namespace gs
