// The gnuplot plumbing that the figure files (plots.cpp, ntk_plots.cpp) share: the line colours,
// quoting for gnuplot strings and file names, numbers and strings read out of JSON, and the
// figures of one gnuplot run with render, which draws them. gnuplot.cpp also defines
// find_gnuplot (plots.h).
#pragma once

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace gs {

// The line colours of the figures, in order; past the last, they start over.
constexpr const char* kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
                                    "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"};

// A string inside a gnuplot single-quoted string: a quote is written twice.
std::string gq(const std::string& s);

// A string inside a gnuplot double-quoted string, where "\\n" is a line break.
std::string gqq(const std::string& s);

// A file-name-safe form of a name; a hash keeps names that differ only in odd characters apart.
std::string slug(const std::string& s);

// j[key] when j is an object with a number (json_string: a string) under key, else fallback.
double json_number(const nlohmann::json& j, const char* key, double fallback);
std::string json_string(const nlohmann::json& j, const char* key, const std::string& fallback);

struct Figure {
  std::string name;  // file name without extension
  int width, height;
  std::string body;  // gnuplot commands after the terminal and output are set
};

// The figures to draw and the data files their plot commands read.
struct Work {
  std::map<std::string, std::string> data;  // data file name -> contents
  std::vector<Figure> figures;
};

// Runs gnuplot over the work in a temporary folder inside plots_dir, then renames the images
// into plots_dir. Returns their paths.
std::vector<std::string> render(const Work& w, const std::filesystem::path& plots_dir,
                                const std::string& gnuplot);

}  // namespace gs
