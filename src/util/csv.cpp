// CSV quoting and reading for the files gpu-sweep writes. See csv.h.
#include "gpusweep/util/csv.h"

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace gs {

std::string csv_quote(const std::string& field) {
  if (field.find_first_of(",\"\n\r") == std::string::npos) return field;
  std::string q = "\"";
  for (char c : field) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

double parse_double_field(const std::string& s, const std::string& where) {
  char* end = nullptr;
  errno = 0;
  const double v = s.empty() ? 0.0 : std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size())
    throw std::invalid_argument(where + ": '" + s + "' is not a number");
  return v;
}

long long parse_int_field(const std::string& s, const std::string& where) {
  char* end = nullptr;
  errno = 0;
  const long long v = s.empty() ? 0 : std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || end != s.c_str() + s.size() || errno == ERANGE)
    throw std::invalid_argument(where + ": '" + s + "' is not an integer");
  return v;
}

int parse_int_field(const std::string& s, const std::string& where, int lo, int hi) {
  const long long v = parse_int_field(s, where);
  if (v < lo || v > hi)
    throw std::invalid_argument(where + ": " + s + " is out of range " + std::to_string(lo) + ".." +
                                std::to_string(hi));
  return static_cast<int>(v);
}

int CsvTable::column(const std::string& name) const {
  for (std::size_t c = 0; c < header.size(); ++c)
    if (header[c] == name) return static_cast<int>(c);
  throw std::invalid_argument(path + ": no column '" + name + "' in the header");
}

CsvTable read_csv_table(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument(path + ": cannot open the file");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_csv_table(ss.str(), path);
}

CsvTable parse_csv_table(const std::string& text, const std::string& path) {
  CsvTable t;
  t.path = path;
  std::vector<std::vector<std::string>> records;
  std::vector<std::string> rec;
  std::string field;
  bool quoted = false, any = false;
  int line = 1;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        if (c == '\n') ++line;
        field += c;
      }
    } else if (c == '"') {
      quoted = true;
      any = true;
    } else if (c == ',') {
      rec.push_back(field);
      field.clear();
      any = true;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      if (any || !field.empty()) {
        rec.push_back(field);
        records.push_back(rec);
      }
      rec.clear();
      field.clear();
      any = false;
      ++line;
    } else {
      field += c;
      any = true;
    }
  }
  if (quoted) throw std::invalid_argument(path + ": line " + std::to_string(line) + ": unterminated quote");
  if (any || !field.empty()) {
    rec.push_back(field);
    records.push_back(rec);
  }
  if (records.empty()) throw std::invalid_argument(path + ": the file is empty");
  t.header = records[0];
  for (std::size_t r = 1; r < records.size(); ++r) {
    if (records[r].size() != t.header.size())
      throw std::invalid_argument(path + ": row " + std::to_string(r + 1) + " has " +
                                  std::to_string(records[r].size()) + " fields, while the header has " +
                                  std::to_string(t.header.size()));
    t.rows.push_back(std::move(records[r]));
  }
  return t;
}

}  // namespace gs
