// The CSV files gpu-sweep writes and reads back (results.csv, params_index.csv): quoting,
// a reader of quoted fields with a header, and whole-field number parsing.
#pragma once

#include <string>
#include <vector>

namespace gs {

// A CSV field, quoted when it holds a comma, a quote or a newline (as results.csv does).
std::string csv_quote(const std::string& field);

// A CSV table read with its header: rows of fields, column() finds a header name.
struct CsvTable {
  std::string path;
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  // Index of a column; throws std::invalid_argument naming the file when it is missing.
  int column(const std::string& name) const;
};
// Parses CSV text with quoted fields ("" for a quote inside; CRLF or LF line ends), naming
// path in errors. Throws std::invalid_argument (empty text, a row whose field count differs
// from the header's, an unterminated quote).
CsvTable parse_csv_table(const std::string& text, const std::string& path);
// The same for a file; a file that cannot be read is an std::invalid_argument too.
CsvTable read_csv_table(const std::string& path);

// Number parsing for the readers: the whole field must be a number, else
// std::invalid_argument naming where.
double parse_double_field(const std::string& s, const std::string& where);
// An integer field within [lo, hi]: widths, seeds and sizes become ints, so a value past
// them is refused, not wrapped.
int parse_int_field(const std::string& s, const std::string& where, int lo, int hi);
// The largest seed a run writes (--seeds is at most 1000000).
constexpr int kMaxSeed = 999999;
long long parse_int_field(const std::string& s, const std::string& where);

}  // namespace gs
