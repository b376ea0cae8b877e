// Long sweeps that survive: a sweep killed (SIGKILL) at random points and resumed again and
// again ends with the results of an uninterrupted run; SIGINT stops cleanly and says how to
// resume; a resume with other options is refused; shards 1/3..3/3 merged equal the whole.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "gpusweep/io/checkpoint.h"
#include "gpusweep/model/data.h"
#include "gpusweep/util/digest.h"
#include "program.h"

namespace fs = std::filesystem;
using gs_test::Outcome;
using gs_test::run;
using gs_test::run_command;
using gs_test::slurp;
using gs_test::tmp_dir;

namespace {

// Chunks of 4 networks on one thread (a few tenths of a second each), so that kills land
// between and inside many chunks.
std::string sweep(const std::string& widths) {
  return "--arch mlp,glu,gqu,spline1 --widths " + widths +
         " --seeds 2 --points 800 --schedule D,U,Q,G,ALL*10 --chunk-networks 4 --no-plots -q";
}
const std::string kSweep = sweep("2:30");

// results.csv without its seconds column (a measurement, not a result): the 15th field.
std::vector<std::string> rows_without_seconds(const fs::path& csv) {
  std::istringstream in(slurp(csv));
  std::vector<std::string> rows;
  std::string line;
  while (std::getline(in, line)) {
    std::size_t at = 0;
    for (int f = 0; f < 14 && at != std::string::npos; ++f) at = line.find(',', at) + 1;
    const std::size_t end = line.find(',', at);
    rows.push_back(line.substr(0, at) + (end == std::string::npos ? "" : line.substr(end + 1)));
  }
  return rows;
}

void expect_same_results(const fs::path& a, const fs::path& b) {
  const auto ra = rows_without_seconds(a / "results.csv"), rb = rows_without_seconds(b / "results.csv");
  ASSERT_GT(ra.size(), 80u);
  ASSERT_EQ(ra.size(), rb.size());
  for (std::size_t i = 0; i < ra.size(); ++i) EXPECT_EQ(ra[i], rb[i]) << "row " << i;
  EXPECT_EQ(slurp(a / "params.bin"), slurp(b / "params.bin"));
  EXPECT_EQ(slurp(a / "params_index.csv"), slurp(b / "params_index.csv"));
}

using gs_test::lines;

TEST(Resume, KilledAgainAndAgainThenResumedEqualsAnUninterruptedRun) {
  const fs::path dir = tmp_dir();
  const fs::path whole = dir / "whole", broken = dir / "broken";
  Outcome r = run(kSweep + " --threads 2 --out " + whole.string(), dir);
  ASSERT_EQ(r.code, 0) << r.err;

  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> chunks_more(0, 3);
  std::uniform_real_distribution<double> extra(0.0, 0.15);
  // Kill again and again, resuming each time: once the run has saved 0 to 3 more chunks,
  // after a random fraction of the next one, so kills land before, inside and between
  // chunks whatever the machine's speed. A run that finishes before its kill is checked
  // against the uninterrupted one, and the next round starts the sweep again.
  int kills = 0, progress = 0, completions = 0, last_saved = 0;
  for (int round = 0; round < 80 && kills < 12; ++round) {
    // summary.json is the last file a run writes.
    const bool unfinished = fs::exists(broken / "manifest.json") && !fs::exists(broken / "summary.json");
    const std::string args = unfinished ? "--resume " + broken.string() + " --threads 1 --no-plots -q"
                                        : kSweep + " --threads 1 --overwrite --out " + broken.string();
    const int target = (unfinished ? gs::count_chunks(broken.string()) : 0) + chunks_more(rng);
    char wait_more[32];
    std::snprintf(wait_more, sizeof wait_more, "%.3f", extra(rng));
    const std::string chunks = (broken / "chunks").string();
    const std::string cmd = "sh -c '" + std::string(GPUSWEEP_BIN) + " " + args + " >/dev/null 2>&1 & p=$!; " +
                            "until [ $(ls " + chunks + " 2>/dev/null | grep -c \\.json$) -ge " +
                            std::to_string(target) + " ] || ! kill -0 $p 2>/dev/null; do sleep 0.01; done; sleep " +
                            wait_more + "; kill -KILL $p 2>/dev/null; wait $p' 2>/dev/null";
    const int status = std::system(cmd.c_str());
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (code == 0) {
      expect_same_results(whole, broken);
      ++completions;
      last_saved = 0;
      continue;
    }
    ASSERT_EQ(code, 137) << "round " << round;  // the shell's status for a child killed by SIGKILL
    ++kills;
    // Killed after its last file: complete, and right.
    if (fs::exists(broken / "summary.json")) expect_same_results(whole, broken);
    const int saved = gs::count_chunks(broken.string());
    progress += saved > last_saved;
    last_saved = saved;
  }
  EXPECT_GE(kills, 10);
  EXPECT_GE(progress, 3) << "the resumed runs must make progress between kills";
  if (!fs::exists(broken / "summary.json")) {
    r = run("--resume " + broken.string() + " --threads 2 --no-plots -q", dir);
    ASSERT_EQ(r.code, 0) << r.err;
  }
  expect_same_results(whole, broken);
}

TEST(Resume, InterruptStopsCleanlyAndSaysHowToResume) {
  const fs::path dir = tmp_dir();
  const fs::path out = dir / "run";
  // SIGINT once the sweep has begun (its manifest is written) and a moment later; the run
  // ends at its next Newton step. The shell's `wait` gives the program's exit status.
  const fs::path so = dir / "stdout.txt", se = dir / "stderr.txt";
  const std::string cmd = "sh -c '" + std::string(GPUSWEEP_BIN) + " " + kSweep + " --threads 1 --out " +
                          out.string() + " >" + so.string() + " 2>" + se.string() + " & p=$!; until [ -f " +
                          (out / "manifest.json").string() + " ]; do sleep 0.02; done; sleep 0.2; kill -INT $p; wait $p'";
  const int status = std::system(cmd.c_str());
  Outcome r{WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(so), slurp(se)};
  if (r.code == 0) GTEST_SKIP() << "the sweep finished before the signal";
  EXPECT_EQ(r.code, 130) << r.err;
  EXPECT_EQ(lines(r.err), 2) << r.err;  // a blank line after the progress, then the message
  EXPECT_NE(r.err.find("--resume " + out.string()), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out / "results.csv"));
  r = run("--resume " + out.string() + " --threads 2 -q --no-plots", dir);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(out / "results.csv"));
}

// One Ctrl-C stops a large sweep at once, whether it lands while the sweep is being planned
// (450,000 networks: the default action ends it, before anything is written) or once
// training has begun (exit status 130 with the way to resume). The program is started
// directly: a shell would start it with SIGINT ignored, as it does every background job.
TEST(Resume, FirstInterruptStopsALargeSweepAtOnce) {
  const fs::path dir = tmp_dir();
  const fs::path out = dir / "run";
  for (const int delay_ms : {50, 300, 1500}) {
    fs::remove_all(out);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      const int null = open("/dev/null", O_WRONLY);
      dup2(null, STDOUT_FILENO);
      dup2(null, STDERR_FILENO);
      execl(GPUSWEEP_BIN, GPUSWEEP_BIN, "--widths", "1:30", "--seeds", "5000", "--threads", "1", "--no-plots",
            "--out", out.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    ASSERT_EQ(kill(pid, SIGINT), 0);
    const auto t0 = std::chrono::steady_clock::now();
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(20)) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        FAIL() << "still running 20 s after the first SIGINT (sent after " << delay_ms << " ms)";
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    const bool stopped = (WIFEXITED(status) && WEXITSTATUS(status) == 130) ||
                         (WIFSIGNALED(status) && WTERMSIG(status) == SIGINT);
    EXPECT_TRUE(stopped) << "after " << delay_ms << " ms: status " << status;
    EXPECT_FALSE(fs::exists(out / "results.csv"));
  }
}

TEST(Resume, OtherOptionsAreRefusedByName) {
  const fs::path dir = tmp_dir();
  const fs::path out = dir / "run";
  // Killed once it has begun.
  const std::string cmd = "sh -c '" + std::string(GPUSWEEP_BIN) + " " + kSweep + " --threads 1 --out " +
                          out.string() + " >/dev/null 2>&1 & p=$!; until [ -f " + (out / "manifest.json").string() +
                          " ]; do sleep 0.02; done; kill -KILL $p; wait $p'";
  ASSERT_NE(std::system(cmd.c_str()), 0) << "the sweep must still be running at the kill";
  ASSERT_TRUE(fs::exists(out / "manifest.json"));
  ASSERT_FALSE(fs::exists(out / "summary.json"));
  Outcome r;
  for (const auto& [arg, name] : std::vector<std::pair<std::string, std::string>>{
           {"--widths 2:20", "--widths"}, {"--seeds 3", "--seeds"}, {"--schedule D,U,Q", "--schedule"},
           {"--points 1000", "--points"}, {"--arch mlp", "--arch"}, {"--data-seed 7", "--data-seed"},
           {"--restarts 2", "--restarts"}}) {
    r = run("--resume " + out.string() + " " + arg, dir);
    EXPECT_EQ(r.code, 2) << arg;
    EXPECT_EQ(lines(r.err), 1) << r.err;
    EXPECT_NE(r.err.find(name), std::string::npos) << r.err;
  }
  // A manifest from before --optimizer: the option counts as its default, newton, and a
  // different one given now is refused like any other.
  {
    auto m = nlohmann::json::parse(slurp(out / "manifest.json"));
    for (const char* k : {"optimizer", "adam_lr", "adam_steps"}) m["sweep"].erase(k);
    std::ofstream(out / "manifest.json") << m.dump(2);
    r = run("--resume " + out.string() + " --optimizer adam", dir);
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("--optimizer"), std::string::npos) << r.err;
    // Its -construct names were the paper's constructions: refused, not reinterpreted.
    const fs::path old = dir / "old";
    fs::create_directories(old);
    nlohmann::json o = m;
    o["sweep"]["arch"] = "mlp,glu-construct";
    std::ofstream(old / "manifest.json") << o.dump(2);
    r = run("--resume " + old.string(), dir);
    EXPECT_EQ(r.code, 2);
    EXPECT_EQ(lines(r.err), 1) << r.err;
    EXPECT_NE(r.err.find("mlp-paper"), std::string::npos) << r.err;
  }
  // The same options again are fine, and so is a fresh run refused into the unfinished dir.
  r = run(kSweep + " --threads 2 --out " + out.string(), dir);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--resume"), std::string::npos) << r.err;
  r = run("--resume " + out.string() + " --widths 2:30 --seeds 2 --threads 2 -q --no-plots", dir);
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST(Digest, Sha256OfKnownTexts) {
  EXPECT_EQ(gs::sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(gs::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

// Starts a sweep from `cwd` and kills it once its manifest is written; false when it was no
// longer running at the kill.
bool start_and_kill(const std::string& args, const fs::path& cwd, const fs::path& out) {
  const std::string cmd = "sh -c 'cd " + cwd.string() + " && { " + std::string(GPUSWEEP_BIN) + " " + args +
                          " --out " + out.string() + " >/dev/null 2>&1 & p=$!; until [ -f " +
                          (out / "manifest.json").string() + " ]; do sleep 0.02; done; sleep 0.3; kill -KILL $p; wait $p; }'";
  return std::system(cmd.c_str()) != 0;
}

// manifest.json and summary.json say what made the run: the version and commit, the backend,
// the processor, the command line and directory, and the --data file's absolute path and
// SHA-256. A relative --data resumes from any directory; changed data is refused.
TEST(Resume, RecordsProvenanceAndRefusesChangedData) {
  const fs::path dir = tmp_dir();
  const fs::path work = dir / "work";
  fs::create_directories(work);
  {
    std::ofstream csv(work / "data.csv");
    csv << "x,y\n";
    for (int k = 0; k < 1000; ++k) csv << -1.0 + 2.0 * k / 999 << "," << std::sin(4.0 * k / 999) << "\n";
  }
  const std::string sha = gs::sha256_hex(slurp(work / "data.csv"));
  // Widths 2..40: about 1.3 s on one thread, still running 0.3 s after its manifest.
  const std::string args = "--arch mlp,glu,gqu,spline1 --widths 2:40 --seeds 2 --data data.csv "
                           "--schedule D,U,Q,G,ALL*10 --chunk-networks 4 --threads 1 --fit-min-width 3 --no-plots -q";
  Outcome r = run_command("cd " + work.string() + " && " + GPUSWEEP_BIN + " " + args + " --out " +
                          (dir / "whole").string(), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const fs::path broken = dir / "broken";
  ASSERT_TRUE(start_and_kill(args, work, broken)) << "the sweep must still be running at the kill";
  const auto m = nlohmann::json::parse(slurp(broken / "manifest.json"));
  EXPECT_FALSE(m.value("version", "").empty());
  EXPECT_FALSE(m.value("commit", "").empty());
  EXPECT_EQ(m.value("backend", "").rfind("cpu (1 thread", 0), 0u) << m.dump(2);
  EXPECT_FALSE(m.value("cpu", "").empty());
  EXPECT_NE(m.value("command_line", "").find("--data data.csv --schedule 'D,U,Q,G,ALL*10'"), std::string::npos)
      << m.dump(2);
  EXPECT_EQ(m.value("working_directory", ""), work.string());
  EXPECT_EQ(m["data_file"]["path"], (work / "data.csv").string());
  EXPECT_EQ(m["data_file"]["sha256"], sha);
  EXPECT_EQ(m["plots"], false);

  // From another directory, with the relative --data.
  r = run("--resume " + broken.string() + " --threads 2", dir);
  ASSERT_EQ(r.code, 0) << r.err;
  expect_same_results(dir / "whole", broken);
  EXPECT_FALSE(fs::exists(broken / "plots")) << "a --no-plots run stays without figures when resumed";
  EXPECT_EQ(nlohmann::json::parse(slurp(broken / "summary.json"))["fit_min_width"], 3) << "the run's fit options hold";
  const auto c = nlohmann::json::parse(slurp(broken / "summary.json"))["config"];
  EXPECT_EQ(c["command_line"], m["command_line"]);
  EXPECT_EQ(c["data_file"]["sha256"], sha);
  EXPECT_EQ(c["version"], m["version"]);
  EXPECT_EQ(c["commit"], m["commit"]);
  ASSERT_EQ(c["resumed"].size(), 1u) << c.dump(2);
  EXPECT_NE(c["resumed"][0].value("command_line", "").find("--resume " + broken.string()), std::string::npos);
  EXPECT_EQ(c["resumed"][0]["working_directory"], fs::current_path().string());
  EXPECT_EQ(c["backend"].get<std::string>().rfind("cpu (2 threads", 0), 0u) << c.dump(2);

  // Changed data: refused with one line, and the saved chunks stay.
  const fs::path again = dir / "again";
  ASSERT_TRUE(start_and_kill(args, work, again));
  const int chunks = gs::count_chunks(again.string());
  ASSERT_GT(chunks, 0);

  // A chunk whose parameter vector is too short is refused, not taken.
  const fs::path damaged = dir / "damaged";
  fs::copy(again, damaged, fs::copy_options::recursive);
  {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(damaged / "chunks")) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    auto j = nlohmann::json::parse(slurp(files.front()));
    auto* longest = &j["networks"][0]["params"];
    for (auto& n : j["networks"])
      if (n["params"].size() > longest->size()) longest = &n["params"];
    ASSERT_GT(longest->size(), 3u);
    longest->erase(longest->begin() + 3, longest->end());
    std::ofstream(files.front()) << j.dump();
  }
  r = run("--resume " + damaged.string(), dir);
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("a chunk holds 3 parameters"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(damaged / "results.csv"));

  std::ofstream(work / "data.csv", std::ios::app) << "0.5,7\n";
  r = run("--resume " + again.string(), dir);
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("has changed since the sweep began"), std::string::npos) << r.err;
  EXPECT_EQ(gs::count_chunks(again.string()), chunks);
  EXPECT_FALSE(fs::exists(again / "results.csv"));
}

TEST(Shards, ThreeShardsMergedEqualTheWholeSweep) {
  const fs::path dir = tmp_dir();
  Outcome r = run(kSweep + " --threads 2 --out " + (dir / "whole").string(), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  std::string dirs;
  for (int k = 1; k <= 3; ++k) {
    const fs::path s = dir / ("s" + std::to_string(k));
    r = run(kSweep + " --threads 2 --shard " + std::to_string(k) + "/3 --out " + s.string(), dir);
    ASSERT_EQ(r.code, 0) << r.err;
    dirs += " " + s.string();
  }
  r = run("merge" + dirs + " --no-plots -q --out " + (dir / "merged").string(), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  expect_same_results(dir / "whole", dir / "merged");

  // Missing, repeated and foreign shards are refused with one line, and leave nothing.
  r = run(sweep("2:20") + " --shard 2/3 --out " + (dir / "other").string(), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string s1 = (dir / "s1").string(), s2 = (dir / "s2").string(), s3 = (dir / "s3").string();
  for (const auto& [args, mention] : std::vector<std::pair<std::string, std::string>>{
           {s1 + " " + s3, "missing"}, {s1 + " " + s1 + " " + s3, "twice"},
           {s1 + " " + (dir / "other").string() + " " + s3, "--widths"}, {(dir / "whole").string(), "not a shard"}}) {
    const fs::path out = dir / "bad";
    r = run("merge " + args + " --out " + out.string(), dir);
    EXPECT_EQ(r.code, 2) << args;
    EXPECT_EQ(lines(r.err), 1) << r.err;
    EXPECT_NE(r.err.find(mention), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(out)) << args;
  }
}

// With --restarts every job trains its starts together wherever it runs: shards merged, and a
// sweep killed once and resumed, give the whole sweep's results, start by start.
TEST(Shards, RestartsMergedAndResumedEqualTheWholeSweep) {
  const fs::path dir = tmp_dir();
  const std::string cmd = sweep("2:8") + " --restarts 1";
  auto same = [](const fs::path& a, const fs::path& b) {
    const auto ra = rows_without_seconds(a / "results.csv"), rb = rows_without_seconds(b / "results.csv");
    ASSERT_EQ(ra.size(), 1u + 7 * 3 * 2 + 7);
    ASSERT_EQ(ra.size(), rb.size());
    for (std::size_t i = 0; i < ra.size(); ++i) EXPECT_EQ(ra[i], rb[i]) << "row " << i;
    EXPECT_EQ(slurp(a / "params.bin"), slurp(b / "params.bin"));
  };
  Outcome r = run(cmd + " --threads 2 --out " + (dir / "whole").string(), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(slurp(dir / "whole" / "results.csv").find(",1\n"), std::string::npos) << "no restart ever won";
  std::string dirs;
  for (int k = 1; k <= 2; ++k) {
    const fs::path s = dir / ("s" + std::to_string(k));
    r = run(cmd + " --threads 2 --shard " + std::to_string(k) + "/2 --out " + s.string(), dir);
    ASSERT_EQ(r.code, 0) << r.err;
    dirs += " " + s.string();
  }
  r = run("merge" + dirs + " --no-plots -q --out " + (dir / "merged").string(), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  same(dir / "whole", dir / "merged");
  const fs::path out = dir / "killed";
  const std::string kill = "sh -c '" + std::string(GPUSWEEP_BIN) + " " + cmd + " --threads 1 --out " + out.string() +
                           " >/dev/null 2>&1 & p=$!; until [ -d " + (out / "chunks").string() +
                           " ]; do sleep 0.02; done; kill -KILL $p; wait $p'";
  ASSERT_NE(std::system(kill.c_str()), 0) << "the sweep must still be running at the kill";
  r = run("--resume " + out.string() + " --threads 2", dir);
  ASSERT_EQ(r.code, 0) << r.err;
  same(dir / "whole", out);
}

TEST(Shards, DealtByCostEveryJobOnce) {
  gs::SweepSpec spec;
  spec.datasets.push_back(gs::make_target_dataset("invcos2", 100, 0));
  spec.archs = {gs::Arch::kMlp, gs::Arch::kGlu, gs::Arch::kGqu};
  spec.acts = {gs::Act::kRelu};
  for (int w = 1; w <= 200; ++w) spec.widths.push_back(w);
  spec.seeds = 4;
  const auto jobs = gs::make_jobs(spec);
  for (int n : {1, 3, 7, 64}) {
    std::vector<int> seen(jobs.size(), 0);
    std::vector<double> cost(n, 0.0);
    for (int k = 1; k <= n; ++k)
      for (int j : gs::shard_jobs(jobs, {1}, k, n)) {
        seen[j]++;
        const double p = gs::num_params(gs::Shape{jobs[j].arch, jobs[j].act, 1, jobs[j].width});
        cost[k - 1] += p * p;
      }
    for (int s : seen) EXPECT_EQ(s, 1);
    const auto [lo, hi] = std::minmax_element(cost.begin(), cost.end());
    EXPECT_LT(*hi / *lo, 1.05) << n << " shards";
  }
  int k, n;
  EXPECT_THROW(gs::parse_shard("0/3", &k, &n), std::invalid_argument);
  EXPECT_THROW(gs::parse_shard("4/3", &k, &n), std::invalid_argument);
  EXPECT_THROW(gs::parse_shard("1/", &k, &n), std::invalid_argument);
  EXPECT_THROW(gs::parse_shard("a/b", &k, &n), std::invalid_argument);
  gs::parse_shard("2/5", &k, &n);
  EXPECT_EQ(k, 2);
  EXPECT_EQ(n, 5);
}

}  // namespace
