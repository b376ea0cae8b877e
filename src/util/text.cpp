// Parsing of the list-valued options (--widths, --arch, --activation).
#include "gpusweep/util/text.h"

#include <algorithm>
#include <stdexcept>

namespace gs {

std::vector<std::string> split_list(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (true) {
    const std::size_t next = text.find(sep, pos);
    out.push_back(text.substr(pos, next == std::string::npos ? std::string::npos : next - pos));
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  return out;
}

std::vector<std::string> split_targets(const std::string& text) {
  std::vector<std::string> out(1);
  int depth = 0;
  for (char c : text) {
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (c == ',' && depth == 0)
      out.emplace_back();
    else
      out.back() += c;
  }
  return out;
}

std::string printable(const std::string& text, std::size_t max_chars) {
  std::string out;
  for (std::size_t k = 0; k < text.size(); ++k) {
    if (k == max_chars) return out + "...";
    const unsigned char c = static_cast<unsigned char>(text[k]);
    if (c < 0x20 || c == 0x7F) {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string check_uint64_text(const std::string& text) {
  const bool digits = !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
  if (digits && (text.size() < 20 || (text.size() == 20 && text <= "18446744073709551615"))) return "";
  return "want a whole number from 0 to 18446744073709551615, not '" + printable(text, 40) + "'";
}

std::string check_path_text(const std::string& text) { return text.empty() ? "the path is empty" : ""; }

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

}  // namespace gs
