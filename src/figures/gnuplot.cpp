// The gnuplot plumbing of the figures (see gnuplot.h). render writes the data files and one
// gnuplot script into a temporary folder inside DIR/plots, runs gnuplot once over it and renames
// the images into place.
#include "figures/gnuplot.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include "gpusweep/figures/plots.h"
#include "gpusweep/model/data.h"
#include "gpusweep/util/text.h"

namespace fs = std::filesystem;

namespace gs {

std::string gq(const std::string& s) {
  std::string r = "'";
  for (char c : s) {
    if (c == '\'') r += "''";
    else if (c == '\n' || c == '\r') r += ' ';
    else r += c;
  }
  return r + "'";
}

std::string gqq(const std::string& s) {
  std::string r = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') r += '\\', r += c;
    else if (c == '\n') r += "\\n";
    else if (c != '\r') r += c;
  }
  return r + "\"";
}

std::string slug(const std::string& s) {
  std::string r;
  bool changed = false;
  for (char c : s) {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.') {
      r += c;
    } else {
      r += '_';
      changed = c != '_';
    }
  }
  if (r.size() > 40) {
    r.resize(40);
    changed = true;
  }
  if (changed || r.empty()) {
    char h[16];
    std::snprintf(h, sizeof h, "%08x", static_cast<unsigned>(hash_string(s) & 0xffffffffu));
    r += (r.empty() ? "" : "_") + std::string(h);
  }
  return r;
}

double json_number(const nlohmann::json& j, const char* key, double fallback) {
  if (j.is_object() && j.contains(key) && j[key].is_number()) return j[key].get<double>();
  return fallback;
}

std::string json_string(const nlohmann::json& j, const char* key, const std::string& fallback) {
  if (j.is_object() && j.contains(key) && j[key].is_string()) return j[key].get<std::string>();
  return fallback;
}

namespace {

// Seconds gnuplot may take: GPUSWEEP_GNUPLOT_TIMEOUT, else kGnuplotSeconds.
constexpr double kGnuplotSeconds = 300.0;
double gnuplot_timeout() {
  const char* v = std::getenv("GPUSWEEP_GNUPLOT_TIMEOUT");
  if (!v || !*v) return kGnuplotSeconds;
  char* end = nullptr;
  const double s = std::strtod(v, &end);
  if (*end != '\0' || !(s > 0.0))
    throw std::runtime_error("GPUSWEEP_GNUPLOT_TIMEOUT: want a number of seconds > 0, not '" + printable(v, 40) + "'");
  return s;
}

// Runs `gnuplot plots.gp` in dir, its output into dir/gnuplot.log, in its own process group;
// returns its wait status. A gnuplot that hangs is killed, with whatever it started, after
// gnuplot_timeout() seconds, and that throws.
int run_gnuplot(const std::string& gnuplot, const fs::path& dir) {
  const double limit = gnuplot_timeout();
  const std::string log = (dir / "gnuplot.log").string();
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("cannot start gnuplot: " + std::string(std::strerror(errno)));
  if (pid == 0) {
    setpgid(0, 0);
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || chdir(dir.c_str()) != 0) _exit(127);
    dup2(fd, 1);
    dup2(fd, 2);
    execl(gnuplot.c_str(), gnuplot.c_str(), "plots.gp", static_cast<char*>(nullptr));
    _exit(127);
  }
  setpgid(pid, pid);
  const auto t0 = std::chrono::steady_clock::now();
  int status = 0;
  while (true) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return -1;
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > limit) {
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      std::ostringstream os;
      os << "gnuplot did not finish within " << limit << " s and was stopped (GPUSWEEP_GNUPLOT_TIMEOUT sets the "
         << "limit in seconds)";
      throw std::runtime_error(os.str());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace

std::vector<std::string> render(const Work& w, const fs::path& plots_dir, const std::string& gnuplot) {
  std::error_code ec;
  fs::create_directories(plots_dir, ec);
  if (ec) throw std::runtime_error("cannot create " + plots_dir.string() + ": " + ec.message());
  std::string tmpl = (plots_dir / ".tmp-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("cannot create a temporary folder in " + plots_dir.string());
  const fs::path tmp = tmpl;
  struct Cleanup {
    fs::path p;
    ~Cleanup() {
      std::error_code e;
      fs::remove_all(p, e);
    }
  } cleanup{tmp};
  for (const auto& [name, text] : w.data) {
    std::ofstream out(tmp / name);
    out << text;
    if (!out) throw std::runtime_error("cannot write " + (tmp / name).string());
  }
  std::ostringstream gp;
  gp << "# gpu-sweep figures: each one as PNG and as SVG.\n"
     << "pngterm = strstrt(GPVAL_TERMINALS, 'pngcairo') > 0 ? 'pngcairo' : 'png'\n";
  std::vector<std::string> outputs;
  for (const auto& f : w.figures) {
    for (int svg = 0; svg < 2; ++svg) {
      const std::string out = f.name + (svg ? ".svg" : ".png");
      gp << "reset\n";
      if (svg)
        gp << "set terminal svg size " << f.width << "," << f.height
           << " dynamic enhanced font 'Sans,13' background rgb 'white'\n";
      else
        gp << "set terminal @pngterm size " << f.width << "," << f.height << " enhanced font 'Sans,11'\n";
      gp << "set output " << gq(out) << "\n" << f.body << "unset output\n";
      outputs.push_back(out);
    }
  }
  {
    std::ofstream out(tmp / "plots.gp");
    out << gp.str();
    if (!out) throw std::runtime_error("cannot write " + (tmp / "plots.gp").string());
  }
  const int status = run_gnuplot(gnuplot, tmp);
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::ifstream log(tmp / "gnuplot.log");
    std::string line, last, located;
    while (std::getline(log, line)) {
      if (line.find_first_not_of(" \t^") == std::string::npos) continue;
      last = line;
      if (line.find("plots.gp\" line") != std::string::npos) located = line;
    }
    throw std::runtime_error("gnuplot failed (exit status " +
                             std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + "): " +
                             (located.empty() ? last : located));
  }
  std::vector<std::string> written;
  for (const auto& out : outputs) {
    const fs::path from = tmp / out, to = plots_dir / out;
    if (!fs::exists(from, ec) || fs::file_size(from, ec) == 0)
      throw std::runtime_error("gnuplot did not write " + out);
    fs::rename(from, to, ec);
    if (ec) throw std::runtime_error("cannot move " + out + " into " + plots_dir.string() + ": " + ec.message());
    written.push_back(to.string());
  }
  return written;
}

std::string find_gnuplot() {
  const char* path = std::getenv("PATH");
  if (!path) return "";
  for (const auto& d : split_list(path, ':')) {
    if (d.empty()) continue;
    const fs::path p = fs::path(d) / "gnuplot";
    if (::access(p.c_str(), X_OK) == 0 && !fs::is_directory(p)) return p.string();
  }
  return "";
}

}  // namespace gs
