// Text helpers shared by the parsers, the messages and the files: splitting lists, making user
// text printable, and the command line's checks of numbers and paths.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace gs {

std::vector<std::string> split_list(const std::string& text, char sep);
// Splits --target at the commas outside parentheses, so "max(x,0),sin4" is two targets.
std::vector<std::string> split_targets(const std::string& text);
// User text made safe for a one-line message: control bytes (a newline, a CR, a NUL) become
// \xNN, and text past max_chars is cut with "...".
std::string printable(const std::string& text, std::size_t max_chars = 200);
// CLI11 validators: "" when the text is good, else why not. An unsigned 64-bit number
// written in digits (CLI11 itself wraps "-1" and saturates past 2^64 - 1), and a path that
// is not empty (an empty --out or --data is a mistake, not a request for the default).
std::string check_uint64_text(const std::string& text);
std::string check_path_text(const std::string& text);

}  // namespace gs
