// The malformed-input corpus: thousands of generated CSV texts through load_csv_dataset, and a
// sample of bad files and arguments through the program. Each gives a valid dataset or one
// line of error; never another exception, a crash, a hang, or output left behind.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <csignal>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "gpusweep/model/data.h"
#include "gpusweep/util/text.h"
#include "program.h"

namespace fs = std::filesystem;

namespace {

using gs_test::slurp;
using gs_test::tmp_dir;

// What a generated text must give: a dataset, an error, or either (random damage).
enum class Expect { kValid, kError, kEither };

struct Case {
  std::string text;
  Expect expect;
  std::string what;  // the mutations applied, for failure messages
};

// A valid file: header and rows with distinct x, in a random format a user might write.
std::string valid_csv(gs::Rng& rng, int rows) {
  std::string s = "x,y\n";
  for (int k = 0; k < rows; ++k) {
    const double x = -3.0 + 6.0 * k / std::max(rows - 1, 1) + 1e-3 * rng.uniform();
    const double y = std::sin(3.0 * x) * (1.0 + rng.uniform());
    s += std::to_string(x) + (rng.next() % 4 == 0 ? " , " : ",") + std::to_string(y) + "\n";
  }
  return s;
}

std::size_t pick(gs::Rng& rng, std::size_t n) { return n == 0 ? 0 : rng.next() % n; }

// Replaces the cell in column col of data row `row` (0-based, after the header line).
std::string set_cell(const std::string& text, int row, int col, const std::string& cell) {
  std::size_t b = 0;
  for (int k = 0; k <= row; ++k) b = text.find('\n', b) + 1;
  const std::size_t e = text.find('\n', b);
  std::string line = text.substr(b, e - b);
  const std::size_t comma = line.find(',');
  line = col == 0 ? cell + line.substr(comma) : line.substr(0, comma + 1) + cell;
  return text.substr(0, b) + line + text.substr(e);
}

const char* const kNotFinite[] = {"nan", "NaN", "-nan", "inf", "-Inf", "infinity", "1e999", "-1e400"};
const char* const kTooLarge[] = {"1e101", "-1e300", "1.7976931348623157e308"};
const char* const kNotNumbers[] = {"",    "abc", "1.2.3", "--1", "+",    "1e",  "0x",   "1,5",
                                   "\"1\"", "1 2", "١",     "½",   "1e+", ". ", "x",   "y"};

// One case: a valid file with 0..3 rows made bad in one way, or random damage on top.
Case make_case(gs::Rng& rng) {
  const int rows = 3 + static_cast<int>(pick(rng, 12));
  std::string t = valid_csv(rng, rows);
  const int row = static_cast<int>(pick(rng, rows)), col = static_cast<int>(pick(rng, 2));
  switch (pick(rng, 22)) {
    case 0:
      return {t, Expect::kValid, "valid"};
    case 1:
      return {"\xEF\xBB\xBF" + t, Expect::kValid, "BOM"};
    case 2: {
      std::string c;
      for (char ch : t) c += ch == '\n' ? std::string("\r\n") : std::string(1, ch);
      return {c, Expect::kValid, "CRLF"};
    }
    case 3: {
      std::string c;
      for (char ch : t) c += ch == '\n' ? '\r' : ch;
      return {c, Expect::kValid, "lone CR"};
    }
    case 4:
      return {set_cell(t, row, col, kNotFinite[pick(rng, std::size(kNotFinite))]), Expect::kError, "not finite"};
    case 5:
      return {set_cell(t, row, col, kTooLarge[pick(rng, std::size(kTooLarge))]), Expect::kError, "too large"};
    case 6:
      return {set_cell(t, row, col, kNotNumbers[pick(rng, std::size(kNotNumbers))]), Expect::kError,
              "not a number"};
    case 7: {  // a row with one cell, or three
      if (rng.next() % 2) return {set_cell(t, row, 1, "1,2"), Expect::kError, "three cells"};
      std::size_t b = t.find('\n') + 1;
      for (int k = 0; k < row; ++k) b = t.find('\n', b) + 1;
      return {t.substr(0, b) + "0.25" + t.substr(t.find('\n', b)), Expect::kError, "one cell"};
    }
    case 8: {  // a repeated x with another y
      std::size_t b = t.find('\n') + 1;
      for (int k = 0; k < row; ++k) b = t.find('\n', b) + 1;
      const std::string line = t.substr(b, t.find('\n', b) - b);
      return {t + line.substr(0, line.find(',')) + ",42\n", Expect::kValid, "duplicate x"};
    }
    case 9: {  // one data row
      const std::size_t e = t.find('\n', t.find('\n') + 1);
      return {t.substr(0, e + 1), Expect::kError, "single point"};
    }
    case 10:
      return {"", Expect::kError, "empty"};
    case 11:
      return {rng.next() % 2 ? "x,y\n" : "x,y", Expect::kError, "header only"};
    case 12:
      return {"\n \n\t\r\n", Expect::kError, "blank"};
    case 13: {  // a very long line: a huge number, a huge word, or many cells
      const std::size_t n = 10000 + pick(rng, 90000);
      const int kind = static_cast<int>(pick(rng, 3));
      const std::string cell = kind == 0 ? std::string(n, '9') : kind == 1 ? std::string(n, 'a') : "";
      std::string c = set_cell(t, row, col, cell);
      if (kind == 2) c = set_cell(t, row, col, std::string(n, ','));
      return {c, Expect::kError, "long line"};
    }
    case 14: {
      std::string c = t;
      c.insert(c.find('\n') + 2, 1, '\0');
      return {c, Expect::kError, "embedded NUL"};
    }
    case 15: {
      const char* const headers[] = {"y,x", "X,Y", "x;y", "x\ty", "x,y,z", "x", "\"x\",\"y\"", "0.5,0.5"};
      return {headers[pick(rng, std::size(headers))] + t.substr(3), Expect::kError, "bad header"};
    }
    case 16:
      return {t.substr(0, pick(rng, t.size() + 1)), Expect::kEither, "truncated"};
    case 17: {  // random bytes anywhere
      std::string c = t;
      for (int k = 0, n = 1 + static_cast<int>(pick(rng, 8)); k < n; ++k)
        c.insert(pick(rng, c.size() + 1), 1, static_cast<char>(rng.next() & 0xFF));
      return {c, Expect::kEither, "random bytes"};
    }
    case 18: {  // random bytes overwritten
      std::string c = t;
      for (int k = 0, n = 1 + static_cast<int>(pick(rng, 8)); k < n; ++k)
        c[pick(rng, c.size())] = static_cast<char>(rng.next() & 0xFF);
      return {c, Expect::kEither, "overwritten bytes"};
    }
    case 19: {  // pure noise
      std::string c(pick(rng, 300), '\0');
      for (char& ch : c) ch = static_cast<char>(rng.next() & 0xFF);
      return {c, Expect::kEither, "noise"};
    }
    case 20: {  // noise from the CSV alphabet
      const char alphabet[] = "xy,\n\r 0123456789.eE+-naifNAIF\t\xEF\xBB\xBF";
      std::string c = rng.next() % 2 ? "x,y\n" : "";
      for (std::size_t k = 0, n = pick(rng, 200); k < n; ++k) c += alphabet[pick(rng, sizeof alphabet - 1)];
      return {c, Expect::kEither, "CSV noise"};
    }
    default: {  // subnormal, signed and hex numbers are numbers
      const char* const odd[] = {"1e-320", "-0", "+0.5", "0x1p-3", " 7 ", "1E2", ".5", "5."};
      return {set_cell(t, row, 1, odd[pick(rng, std::size(odd))]), Expect::kValid, "odd numbers"};
    }
  }
}

// A dataset that the sweep can use: sizes agree, values are finite, the range is not empty.
void expect_usable(const gs::Dataset& ds, const std::string& what) {
  ASSERT_EQ(ds.d, 1) << what;
  ASSERT_EQ(ds.x_train.size(), ds.y_train.size()) << what;
  ASSERT_EQ(ds.x_test.size(), ds.y_test.size()) << what;
  ASSERT_GE(ds.x_train.size(), 2u) << what;
  ASSERT_GE(ds.x_test.size(), 1u) << what;
  ASSERT_EQ(ds.lo.size(), 1u) << what;
  ASSERT_EQ(ds.hi.size(), 1u) << what;
  ASSERT_LT(ds.lo[0], ds.hi[0]) << what;
  ASSERT_TRUE(std::isfinite(ds.hi[0] - ds.lo[0])) << what;
  for (const auto* v : {&ds.x_train, &ds.y_train, &ds.x_test, &ds.y_test})
    for (double e : *v) ASSERT_TRUE(std::isfinite(e) && std::fabs(e) <= gs::kMaxDataMagnitude) << what;
  for (double x : ds.x_train) ASSERT_TRUE(x >= ds.lo[0] && x <= ds.hi[0]) << what;
}

bool one_printable_line(const std::string& s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7F) return false;
  return !s.empty();
}

TEST(MalformedCsv, EachGivesADatasetOrOneLineNamingTheFile) {
  const fs::path dir = tmp_dir();
  const std::string path = (dir / "data.csv").string();
  gs::Rng rng(20261122);
  const double fractions[] = {0.0, 0.2, 0.5};
  int valid = 0, errors = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int k = 0; k < 4000; ++k) {
    const Case c = make_case(rng);
    std::ofstream(path, std::ios::binary) << c.text;
    const double fraction = fractions[k % 3];
    const std::string what = "case " + std::to_string(k) + " (" + c.what + ", test fraction " +
                             std::to_string(fraction) + "): " + gs::printable(c.text, 120);
    try {
      const gs::Dataset ds = gs::load_csv_dataset(path, fraction, k);
      ++valid;
      EXPECT_NE(c.expect, Expect::kError) << what;
      expect_usable(ds, what);
    } catch (const std::invalid_argument& e) {
      ++errors;
      const std::string msg = e.what();
      // A valid text may still be refused by the split: too few rows, or training rows that
      // all share one x.
      if (c.expect == Expect::kValid)
        EXPECT_TRUE(msg.find("too few") != std::string::npos || msg.find("need a range of x") != std::string::npos)
            << what << "\n" << msg;
      EXPECT_EQ(msg.rfind("--data " + path + ": ", 0), 0u) << what << "\n" << msg;
      EXPECT_TRUE(one_printable_line(msg)) << what << "\n" << gs::printable(msg);
      EXPECT_LT(msg.size(), path.size() + 300) << what;
    } catch (const std::exception& e) {
      ADD_FAILURE() << what << ": another exception: " << e.what();
    }
    if (HasFailure()) break;  // the first failing case says enough
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Both outcomes are exercised; and no input is slow (a hang shows as the test's timeout).
  EXPECT_GT(valid, 500);
  EXPECT_GT(errors, 1500);
  EXPECT_LT(secs, 60.0);
}

TEST(MalformedCsv, TestFractionOutsideItsRangeIsRefused) {
  const fs::path dir = tmp_dir();
  gs::Rng rng(1);
  std::ofstream(dir / "ok.csv") << valid_csv(rng, 10);
  for (double f : {-0.1, 1.0, 2.0, std::nan(""), HUGE_VAL})
    EXPECT_THROW(gs::load_csv_dataset((dir / "ok.csv").string(), f, 0), std::invalid_argument) << f;
  EXPECT_THROW(gs::load_csv_dataset(dir.string(), 0.2, 0), std::invalid_argument);
  EXPECT_THROW(gs::load_csv_dataset((dir / "missing.csv").string(), 0.2, 0), std::invalid_argument);
  // A fraction that holds out nearly every row says so, rather than calling 500 rows too few.
  {
    std::ofstream big(dir / "big.csv");
    big << "x,y\n";
    for (int k = 0; k < 500; ++k) big << k << "," << k % 3 << "\n";
  }
  try {
    gs::load_csv_dataset((dir / "big.csv").string(), 0.999, 0);
    ADD_FAILURE() << "accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("--test-fraction 0.999 of its 500 rows leaves 0 training and 500 test rows"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(gs::load_csv_dataset((dir / "big.csv").string(), 0.99, 0).n_train(), 5);
}

// ---- through the program -----------------------------------------------------------------

struct Exit {
  bool signaled = false, timed_out = false;
  int code = 0;
  std::string err;
};

// Runs the program with exactly these arguments (no shell) in dir, killed after timeout_s.
Exit run_args(const std::vector<std::string>& args, const fs::path& dir, double timeout_s = 60.0) {
  const fs::path err = dir / "stderr.txt";
  const pid_t pid = fork();
  if (pid == 0) {
    const int out_fd = open((dir / "stdout.txt").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err_fd = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out_fd < 0 || err_fd < 0 || chdir(dir.c_str()) != 0) _exit(127);
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    std::vector<char*> argv{const_cast<char*>(GPUSWEEP_BIN)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(GPUSWEEP_BIN, argv.data());
    _exit(127);
  }
  Exit r;
  int status = 0;
  const auto t0 = std::chrono::steady_clock::now();
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > timeout_s) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      r.timed_out = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  r.signaled = WIFSIGNALED(status);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = slurp(err);
  return r;
}

int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

// Runs one bad command line and checks the contract: a plain non-zero exit, exactly one
// error line, and nothing written (--out absent, no default runs/ directory).
void expect_refused(std::vector<std::string> args, const fs::path& dir, const fs::path& out,
                    bool add_out = true) {
  std::string shown;
  for (const auto& a : args) shown += "[" + gs::printable(a, 60) + "] ";
  // Small enough that a wrongly accepted input finishes quickly and is caught below.
  for (const char* def : {"--points", "--widths", "--schedule", "--arch"}) {
    bool given = false;
    for (const auto& a : args) given = given || a == def || (a == "--data" && std::string(def) == "--points");
    if (!given) {
      args.push_back(def);
      args.push_back(std::string(def) == "--points" ? "20" : std::string(def) == "--widths" ? "2" :
                     std::string(def) == "--schedule" ? "D" : "mlp");
    }
  }
  args.push_back("--no-plots");
  if (add_out) {
    args.push_back("--out");
    args.push_back(out.string());
  }
  const Exit r = run_args(args, dir);
  EXPECT_FALSE(r.timed_out) << shown << "hangs";
  EXPECT_FALSE(r.signaled) << shown << "crashed:\n" << r.err;
  EXPECT_NE(r.code, 0) << shown << "was accepted";
  EXPECT_EQ(count_lines(r.err), 1) << shown << "\n" << r.err;
  EXPECT_EQ(r.err.rfind("gpu-sweep: error: ", 0), 0u) << shown << "\n" << r.err;
  if (add_out) EXPECT_FALSE(fs::exists(out)) << shown << "left " << out;
  EXPECT_FALSE(fs::exists(dir / "runs")) << shown << "wrote a default runs/ directory";
  fs::remove_all(dir / "runs");
}

TEST(MalformedProgramInput, BadArgumentsAreRefusedInOneLine) {
  const fs::path dir = tmp_dir();
  const fs::path out = dir / "out";
  std::ofstream(dir / "file") << "not a directory";
  {
    std::ofstream good(dir / "good.csv");
    good << "x,y\n";
    for (int k = 0; k < 500; ++k) good << k / 250.0 - 1.0 << "," << k % 7 << "\n";
  }
  const std::vector<std::vector<std::string>> cases = {
      {"--widths", "1:99999999999"}, {"--widths", "0:5"}, {"--widths", "-3"}, {"--widths", "-1:4"},
      {"--widths", "99999999999999999999999"}, {"--widths", ""}, {"--widths", ":"}, {"--widths", "1:"},
      {"--widths", "1:5:0"}, {"--widths", "4,,8"}, {"--widths", "4,8,"}, {"--widths", "1e3"},
      {"--widths", "0x10"}, {"--widths", "100000"}, {"--widths", "2\n3"},
      {"--schedule", "ALL*0"}, {"--schedule", "ALL*-1"}, {"--schedule", "D**"}, {"--schedule", ""},
      {"--schedule", "D,"}, {"--schedule", "ALL*"}, {"--schedule", "ALL*99999999999"}, {"--schedule", "D*1.5"},
      {"--schedule", "all"}, {"--schedule", "D,,U"}, {"--schedule", "X*2"},
      {"--points", "0"}, {"--points", "1"}, {"--points", "-5"}, {"--points", "abc"}, {"--points", ""},
      {"--points", "99999999999"}, {"--points", "2.5"},
      {"--threads", "-1"}, {"--threads", "5000"}, {"--threads", "abc"}, {"--threads", "99999999999"},
      {"--seeds", "0"}, {"--seeds", "-1"}, {"--seeds", "abc"}, {"--seeds", ""}, {"--seeds", "99999999999"},
      {"--test-fraction", "1", "--data", "good.csv"}, {"--test-fraction", "nan", "--data", "good.csv"},
      {"--test-fraction", "-0.5", "--data", "good.csv"}, {"--test-fraction", "0.999", "--data", "good.csv"},
      {"--test-fraction", "0.5"}, {"--standardize", "off"}, {"--data", "good.csv", "--target", "sin4"},
      {"--data", "good.csv", "--points", "100"},
      {"--data-seed", "-1"}, {"--data-seed", "99999999999999999999999"},
      {"--arch", ""}, {"--activation", ""}, {"--target", ""}, {"--target", ","}, {"--target", "x\n+"},
      {"--arch", "mlp\nglu"}, {"--device", ""}, {"--hessian", ""}, {"--init", ""},
      {"--fit-min-width", "0"}, {"--fit-max-width", "2", "--fit-min-width", "4"}, {"--bootstrap", "-1"},
      {"--widths"}, {"--data", ""},
  };
  for (const auto& c : cases) {
    expect_refused(c, dir, out);
    fs::remove_all(out);  // one accepted case must not fail the ones after it
  }
  // Output paths that cannot be written.
  for (const std::string& bad : {std::string("/proc/gpu-sweep-test"), std::string("/proc/self/x/y"), (dir / "file").string(),
                                (dir / "file" / "sub").string(), std::string("")}) {
    expect_refused({"--out", bad}, dir, out, false);
    EXPECT_FALSE(fs::exists(dir / "file" / "sub"));
  }
  EXPECT_EQ(slurp(dir / "file"), "not a directory");
}

TEST(MalformedProgramInput, BadDataFilesAreRefusedInOneLine) {
  const fs::path dir = tmp_dir();
  const fs::path out = dir / "out";
  const std::vector<std::pair<std::string, std::string>> files = {
      {"empty", ""},
      {"header-only", "x,y\n"},
      {"nan", "x,y\n0,1\n1,nan\n2,3\n3,1\n"},
      {"inf", "x,y\n0,1\n-inf,2\n2,3\n3,1\n"},
      {"huge", "x,y\n0,1\n1,1e200\n2,3\n3,1\n"},
      {"overflow", "x,y\n0,1\n1,2\n1e999,3\n3,1\n"},
      {"word", "x,y\n0,1\n1,two\n2,3\n3,1\n"},
      {"ragged", "x,y\n0,1\n1\n2,3\n3,1\n"},
      {"extra-cell", "x,y\n0,1\n1,2,3\n2,3\n3,1\n"},
      {"bom-twice", "\xEF\xBB\xBF\xEF\xBB\xBFx,y\n0,1\n1,2\n2,3\n3,1\n"},
      {"single", "x,y\n0.5,1\n"},
      {"nul", std::string("x,y\n0,1\n1,\0" "2\n2,3\n3,1\n", 21)},
      {"control", "x,y\n0,1\n1,2\n2,3\x1b[2J\n3,1\n"},
      {"long-line", "x,y\n0,1\n" + std::string(1 << 20, '7') + ",2\n2,3\n3,1\n"},
      {"no-header", "0,1\n1,2\n2,3\n"},
  };
  for (const auto& [name, text] : files) {
    std::ofstream(dir / (name + ".csv"), std::ios::binary) << text;
    expect_refused({"--data", (dir / (name + ".csv")).string()}, dir, out);
  }
  fs::create_directories(dir / "a-directory");
  expect_refused({"--data", (dir / "a-directory").string()}, dir, out);
  expect_refused({"--data", (dir / "missing.csv").string()}, dir, out);
  expect_refused({"--data", (dir / "nan.csv").string(), "--out", "/proc/gpu-sweep-test"}, dir, out, false);
}

TEST(MalformedProgramInput, CrlfBomAndLoneCrFilesAreRead) {
  const fs::path dir = tmp_dir();
  const std::string rows[] = {"x,y", "0,1", "0.5,2", "1,3", "1.5,1", "2,0"};
  for (const std::string eol : {"\r\n", "\r"}) {
    std::string text = "\xEF\xBB\xBF";
    for (const auto& r : rows) text += r + eol;
    std::ofstream(dir / "data.csv", std::ios::binary) << text;
    fs::remove_all(dir / "out");
    const Exit r = run_args({"--data", (dir / "data.csv").string(), "--arch", "mlp", "--widths", "2",
                             "--schedule", "D", "--test-fraction", "0", "--no-plots", "--out",
                             (dir / "out").string()},
                            dir);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(count_lines(slurp(dir / "out" / "results.csv")), 2);
  }
}

TEST(MalformedProgramInput, DamagedResultDirectoriesNeverCrashFitOrPlot) {
  // `fit DIR` and `plot DIR` read results.csv and params_index.csv back; out-of-range
  // integers there were wrapped into ints and overflowed the parameter count.
  const fs::path dir = tmp_dir();
  const fs::path good = dir / "good";
  ASSERT_EQ(run_args({"--arch", "mlp", "--widths", "2,3", "--points", "40", "--schedule", "D", "--no-plots",
                      "-q", "--out", good.string()},
                     dir)
                .code,
            0);
  const std::string index = slurp(good / "params_index.csv"), results = slurp(good / "results.csv");
  // Field k of the first data row of a CSV text replaced.
  const auto with_field = [](const std::string& text, int k, const std::string& v) {
    std::size_t b = text.find('\n') + 1;
    for (int j = 0; j < k; ++j) b = text.find(',', b) + 1;
    return text.substr(0, b) + v + text.substr(text.find_first_of(",\n", b));
  };
  const char* const values[] = {"4294967298", "-1", "0", "99999999999999999999", "1073741824", "x"};
  // results.csv: width, params, seed; params_index.csv: width, seed, d, n, factors, offset, count.
  const std::pair<const char*, int> fields[] = {{"results.csv", 3}, {"results.csv", 4}, {"results.csv", 5},
                                                {"params_index.csv", 3}, {"params_index.csv", 4},
                                                {"params_index.csv", 5}, {"params_index.csv", 6},
                                                {"params_index.csv", 7}, {"params_index.csv", 8},
                                                {"params_index.csv", 9}};
  int n = 0;
  for (const auto& [file, field] : fields) {
    for (const char* v : values) {
      const fs::path d = dir / ("case" + std::to_string(n++));
      fs::create_directories(d);
      fs::copy(good, d, fs::copy_options::recursive);
      std::ofstream(d / file, std::ios::binary)
          << with_field(std::string(file) == "results.csv" ? results : index, field, v);
      for (const auto& args : {std::vector<std::string>{"plot", d.string(), "--nets", "mlp:2:0"},
                               std::vector<std::string>{"fit", d.string(), "-q"}}) {
        const Exit r = run_args(args, dir);
        const std::string shown =
            args[0] + " with " + file + " field " + std::to_string(field) + " = '" + v + "'";
        EXPECT_FALSE(r.timed_out) << shown;
        EXPECT_FALSE(r.signaled) << shown << "\n" << r.err;
        if (r.code != 0) {
          EXPECT_EQ(count_lines(r.err), 1) << shown << "\n" << r.err;
          EXPECT_EQ(r.err.rfind("gpu-sweep: error: ", 0), 0u) << shown << "\n" << r.err;
        }
      }
      fs::remove_all(d);
    }
  }
}

}  // namespace
