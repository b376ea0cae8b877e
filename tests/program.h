// Running the built gpu-sweep from a test, as a user runs it: exit code, stdout and stderr,
// and a fresh scratch directory per test.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace gs_test {

namespace fs = std::filesystem;

struct Outcome {
  int code;
  std::string out, err;
};

inline std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The number of lines (newlines) in s.
inline int lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

// An empty directory under the test build's tmp/, named after the running test.
inline fs::path tmp_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string(info->test_suite_name()) + "." + info->name();
  for (char& c : name)
    if (c == '/') c = '_';
  const fs::path d = fs::path(GPUSWEEP_TEST_TMP) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Runs a shell command line; its output goes to files in dir.
inline Outcome run_command(const std::string& command, const fs::path& dir) {
  const fs::path out = dir / "stdout.txt", err = dir / "stderr.txt";
  const std::string cmd = command + " >" + out.string() + " 2>" + err.string();
  const int status = std::system(cmd.c_str());
  return Outcome{WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out), slurp(err)};
}

// Runs the program with args; its output goes to files in dir. `env` goes before it on the
// command line (e.g. "PATH=/nonexistent").
inline Outcome run(const std::string& args, const fs::path& dir, const std::string& env = "") {
  return run_command(env + (env.empty() ? "" : " ") + std::string(GPUSWEEP_BIN) + " " + args, dir);
}

}  // namespace gs_test
