// params.bin and params_index.csv: writing them after a sweep and reading them back; the CSV
// reader that the plots and the tests use for results.csv too.
#include "gpusweep/io/params_io.h"

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "gpusweep/io/output.h"
#include "gpusweep/model/model.h"

namespace fs = std::filesystem;

namespace gs {

void write_params(const std::string& dir, const SweepSpec& spec, const std::vector<Job>& jobs,
                  const std::vector<NetResult>& results) {
  std::size_t total = 0;
  for (const auto& r : results) total += r.params.size();
  // Little-endian whatever the host: each value's bit pattern, low byte first.
  std::string bin;
  bin.reserve(total * 8);
  std::ostringstream idx;
  idx << "arch,activation,target,width,seed,d,n,factors,poly_terms,offset,count\n";
  std::size_t offset = 0;
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    const Job& job = jobs[j];
    const Dataset& ds = spec.datasets[job.target];
    const auto& p = results[j].params;
    for (double v : p) {
      std::uint64_t u;
      std::memcpy(&u, &v, 8);
      for (int b = 0; b < 8; ++b) bin.push_back(static_cast<char>((u >> (8 * b)) & 0xff));
    }
    // The names of results.csv; a spline's row holds its B-spline coefficients (factors 0).
    const Model model = job.model();
    const bool net = model.method != Method::kSpline;
    idx << model_name(model) << ',' << model_act_name(model, job.act) << ',' << csv_quote(ds.name) << ','
        << job.width << ',' << job.seed << ',' << ds.d << ',' << job.width << ','
        << (net ? num_factors(job.arch) : 0) << ','
        << (net ? num_poly_terms(Shape{job.arch, job.act, ds.d, job.width}) : 0) << ',' << offset << ','
        << p.size() << '\n';
    offset += p.size();
  }
  write_file_atomic((fs::path(dir) / "params.bin").string(), bin);
  write_file_atomic((fs::path(dir) / "params_index.csv").string(), idx.str());
}

std::vector<ParamsEntry> read_params_index(const std::string& dir) {
  const std::string path = (fs::path(dir) / "params_index.csv").string();
  const CsvTable t = read_csv_table(path);
  const int c_arch = t.column("arch"), c_act = t.column("activation"), c_target = t.column("target"),
            c_width = t.column("width"), c_seed = t.column("seed"), c_d = t.column("d"),
            c_n = t.column("n"), c_f = t.column("factors"), c_off = t.column("offset"),
            c_count = t.column("count");
  // Indexes written before gpoly:K have no poly_terms column: their D holds one value per neuron.
  int c_m = -1;
  for (std::size_t c = 0; c < t.header.size(); ++c)
    if (t.header[c] == "poly_terms") c_m = static_cast<int>(c);
  std::vector<ParamsEntry> out;
  for (std::size_t r = 0; r < t.rows.size(); ++r) {
    const auto& row = t.rows[r];
    const std::string where = path + ": row " + std::to_string(r + 2);
    ParamsEntry e;
    e.arch = row[c_arch];
    e.activation = row[c_act];
    e.target = row[c_target];
    e.width = parse_int_field(row[c_width], where, 1, INT_MAX);
    e.seed = parse_int_field(row[c_seed], where, 0, kMaxSeed);
    // Bounds that keep num_params (an int) from overflowing for any arch.
    e.d = parse_int_field(row[c_d], where, 1, 1000);
    e.n = parse_int_field(row[c_n], where, 0, kMaxWidth);
    e.factors = parse_int_field(row[c_f], where, 0, INT_MAX);
    e.poly_terms = c_m >= 0 ? parse_int_field(row[c_m], where, 0, INT_MAX) : (e.factors > 0 ? 1 : 0);
    const long long off = parse_int_field(row[c_off], where), cnt = parse_int_field(row[c_count], where);
    if (off < 0 || cnt < 0) throw std::invalid_argument(where + ": negative offset or count");
    e.offset = static_cast<std::size_t>(off);
    e.count = static_cast<std::size_t>(cnt);
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<double> read_params(const std::string& dir, const ParamsEntry& e) {
  const std::string path = (fs::path(dir) / "params.bin").string();
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument(path + ": cannot open the file");
  // Checked against the file's size first, so a bad index never asks for a huge buffer.
  std::error_code ec;
  const std::size_t values = static_cast<std::size_t>(fs::file_size(path, ec)) / 8;
  if (ec || e.offset > values || e.count > values - e.offset)
    throw std::invalid_argument(path + ": too short for " + std::to_string(e.count) + " values at offset " +
                                std::to_string(e.offset) + " (does it belong to params_index.csv?)");
  in.seekg(static_cast<std::streamoff>(e.offset * 8));
  std::string bytes(e.count * 8, '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (static_cast<std::size_t>(in.gcount()) != bytes.size())
    throw std::invalid_argument(path + ": too short for " + std::to_string(e.count) +
                                " values at offset " + std::to_string(e.offset) +
                                " (does it belong to params_index.csv?)");
  std::vector<double> v(e.count);
  for (std::size_t k = 0; k < e.count; ++k) {
    std::uint64_t u = 0;
    for (int b = 0; b < 8; ++b) u |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[k * 8 + b])) << (8 * b);
    std::memcpy(&v[k], &u, 8);
  }
  return v;
}

bool entry_shape(const ParamsEntry& e, Shape* s) {
  try {
    const auto models = parse_archs(e.arch);
    const auto acts = parse_acts(e.activation);
    // Trained and constructed models are networks; a spline's coefficients are not.
    if (models.size() != 1 || acts.size() != 1 || models[0].method == Method::kSpline) return false;
    *s = Shape{models[0].arch, acts[0], e.d, e.n};
    if (poly_term_count(e.d, poly_degree(s->arch)) > kMaxPolyTerms) return false;
    if (model_name(models[0]) != e.arch) return false;
  } catch (const std::exception&) {
    return false;
  }
  return num_factors(s->arch) == e.factors && num_poly_terms(*s) == e.poly_terms &&
         static_cast<std::size_t>(num_params(*s)) == e.count;
}

}  // namespace gs
