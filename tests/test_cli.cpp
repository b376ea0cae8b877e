// The program as a user runs it: bad input exits non-zero with one clear line and leaves no
// output behind; a good run writes results.csv and summary.json.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>
#include "program.h"

namespace fs = std::filesystem;

namespace {

using gs_test::Outcome;
using gs_test::run;
using gs_test::run_command;
using gs_test::slurp;
using gs_test::tmp_dir;

using gs_test::lines;

struct BadInput {
  std::string args;
  std::string must_mention;
};

class Cli : public ::testing::TestWithParam<BadInput> {};

TEST_P(Cli, BadInputGivesOneLineAndNoOutput) {
  const fs::path dir = tmp_dir();
  std::ofstream(dir / "malformed.csv") << "x,y\n0.1,0.2\n0.3,abc\n";
  std::ofstream(dir / "ragged.csv") << "x,y\n0.1,0.2\n0.3\n";
  std::ofstream(dir / "noheader.csv") << "0.1,0.2\n0.3,0.4\n";
  std::ofstream(dir / "empty.csv") << "";
  std::ofstream(dir / "nan.csv") << "x,y\n0.1,0.2\n0.3,nan\n0.5,0.1\n";
  std::ofstream(dir / "good.csv") << "x,y\n0.1,0.2\n0.3,0.4\n0.5,0.1\n0.7,0.3\n0.9,0.2\n";
  std::ofstream(dir / "twoin_ragged.csv") << "x1,x2,y\n0.1,0.2,0.3\n0.3,0.4\n0.5,0.1,0.2\n";
  std::string args = GetParam().args;
  for (std::size_t p; (p = args.find("@DIR")) != std::string::npos;) args.replace(p, 4, dir.string());
  const fs::path out = dir / "out";
  if (args.find("--points") == std::string::npos && args.find("--data") == std::string::npos) args += " --points 50";
  if (args.find("--widths") == std::string::npos) args += " --widths 2:3";
  // No CUDA device, whatever the machine has: --device cuda is one of the bad inputs.
  const Outcome r = run(args + " --out " + out.string(), dir, "CUDA_VISIBLE_DEVICES=");
  EXPECT_NE(r.code, 0) << args;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find(GetParam().must_mention), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("gpu-sweep: error: "), 0u) << r.err;
  EXPECT_FALSE(fs::exists(out)) << "output directory left behind";
}

INSTANTIATE_TEST_SUITE_P(
    BadInputs, Cli,
    ::testing::Values(BadInput{"--widths 0:5", "--widths"}, BadInput{"--widths 5:1", "--widths"},
                      BadInput{"--widths abc", "--widths"}, BadInput{"--widths 1:2:3:4", "--widths"},
                      BadInput{"--widths 1:999999999", "--widths"},
                      BadInput{"--widths 30000", "MiB"},
                      BadInput{"--arch foo", "--arch"}, BadInput{"--arch mlp,", "--arch"},
                      BadInput{"--optimizer sgd", "--optimizer"}, BadInput{"--adam-lr 0", "--adam-lr"},
                      BadInput{"--adam-lr nan", "--adam-lr"}, BadInput{"--adam-steps 0", "--adam-steps"},
                      BadInput{"--arch spline6", "--arch"}, BadInput{"--arch spline", "--arch"},
                      BadInput{"--arch gated:9", "--arch"},
                      BadInput{"--arch gated:3-construct --widths 1:8", "widths >= 2"},
                      BadInput{"--arch gqu --init spline --activation silu", "--init spline"},
                      BadInput{"--target sin_sin --init spline", "--init spline"},
                      BadInput{"--schedule D,X,ALL", "--schedule"},
                      BadInput{"--arch mlp,mlp-constructed", "--arch"},
                      BadInput{"--arch gqu-paper", "--arch"},
                      BadInput{"--arch glu-paper --data @DIR/good.csv", "--target, not --data"},
                      BadInput{"--activation tanh", "--activation"},
                      BadInput{"--seeds 0", "--seeds"}, BadInput{"--seeds -3", "--seeds"},
                      BadInput{"--target 'sin(4*x'", "--target"},
                      BadInput{"--target 'x+z'", "unknown variable 'z'"},
                      BadInput{"--target 1/x", "not finite at x = 0 "},
                      BadInput{"--target '1/(x-0.3)'", "not finite at x = 0.29999"},
                      BadInput{"--target 'sin4,1/(x-0.3)^2'", "not finite at x = 0.29999"},
                      BadInput{"--target 'tan(2*x)'", "has a pole at x = -0.785398"},
                      BadInput{"--target 'x*y/(x-0.5)'", "not finite at x = (0.5, "},
                      BadInput{"--target 'x+x2'", "not both"},
                      BadInput{"--target sin_sin --init maso", "--init maso"},
                      BadInput{"--target sin_sin --dim 3", "--dim 3"},
                      BadInput{"--target x4 --dim 2", "--dim is 2"},
                      BadInput{"--dim -1", "--dim"},
                      BadInput{"--data @DIR/good.csv --dim 2", "--dim"},
                      BadInput{"--data @DIR/good.csv --target sin4", "--target with --data"},
                      BadInput{"--data @DIR/good.csv --points 100", "--points with --data"},
                      BadInput{"--test-fraction 0.5", "--test-fraction applies to --data only"},
                      BadInput{"--standardize off", "--standardize applies to --data only"},
                      BadInput{"--data @DIR/good.csv --test-fraction 0.9", "leaves 0 training and 5 test rows"},
                      BadInput{"--data @DIR/good.csv --standardize maybe", "--standardize"},
                      BadInput{"--data @DIR/twoin_ragged.csv", "expected 3 columns"},
                      BadInput{"--target 'sqrt(x)'", "not finite"},
                      BadInput{"--target '1/x' --points 51", "not finite"},
                      BadInput{"--schedule D,X", "--schedule"}, BadInput{"--schedule 'ALL*0'", "--schedule"},
                      BadInput{"--hessian newton", "--hessian"}, BadInput{"--init zeros", "--init"},
                      BadInput{"--device tpu", "--device"}, BadInput{"--device cuda", "CUDA"},
                      BadInput{"--data @DIR/missing.csv", "missing.csv"},
                      BadInput{"--data @DIR/malformed.csv", "not a number"},
                      BadInput{"--data @DIR/ragged.csv", "columns"},
                      BadInput{"--data @DIR/noheader.csv", "header"},
                      BadInput{"--data @DIR/empty.csv", "empty"},
                      BadInput{"--data @DIR/nan.csv", "not finite"},
                      BadInput{"--no-such-option", "no-such-option"},
                      BadInput{"--cholesky fast", "--cholesky"}, BadInput{"--cholesky 2:0", "--cholesky"},
                      BadInput{"--cholesky 1:0,300:x", "--cholesky"}, BadInput{"--cholesky 1:0,300:5,300:9", "--cholesky"}),
    [](const ::testing::TestParamInfo<BadInput>& info) { return "case" + std::to_string(info.index); });

// --version names the version and the commit of the source tree (git, independently), and a
// run's manifest.json and summary.json record the same.
TEST(CliRun, VersionNamesTheCommit) {
  const fs::path dir = tmp_dir();
  const Outcome v = run("--version", dir);
  ASSERT_EQ(v.code, 0) << v.err;
  EXPECT_EQ(lines(v.out), 1) << v.out;
  ASSERT_EQ(v.out.rfind("gpu-sweep ", 0), 0u) << v.out;
  const std::size_t at = v.out.find("(commit ");
  ASSERT_NE(at, std::string::npos) << v.out;
  const std::string commit = v.out.substr(at + 8, v.out.find(')', at) - at - 8);
  const Outcome head = run_command("git -C '" GPUSWEEP_SOURCE_DIR "' rev-parse --short=12 HEAD", dir);
  if (head.code == 0 && !head.out.empty()) {
    // The binary may have been built before the last commit; then a rebuild updates it.
    EXPECT_EQ(commit.substr(0, 12), head.out.substr(0, 12)) << "rebuild after committing";
  }
  const fs::path out = dir / "run";
  ASSERT_EQ(run("--arch mlp --widths 2 --points 50 --no-plots -q --out " + out.string(), dir).code, 0);
  const auto m = nlohmann::json::parse(slurp(out / "manifest.json"));
  const auto sum = nlohmann::json::parse(slurp(out / "summary.json"));
  EXPECT_EQ(m["commit"].get<std::string>(), commit);
  EXPECT_EQ(sum["config"]["commit"].get<std::string>(), commit);
  EXPECT_EQ("gpu-sweep " + m["version"].get<std::string>() + " (commit " + commit + ")\n", v.out);
}

// Quick runs without --out, one after another within a second or two: each gets its own
// directory under runs/, none refuses.
TEST(CliRun, DefaultOutputDirectoriesNeverCollide) {
  const fs::path dir = tmp_dir();
  for (int k = 0; k < 4; ++k) {
    const Outcome r = run_command("cd '" + dir.string() + "' && " GPUSWEEP_BIN
                                  " --arch mlp --widths 2 --points 50 --no-plots -q", dir);
    ASSERT_EQ(r.code, 0) << "run " << k << ": " << r.err;
  }
  int runs = 0;
  for (const auto& e : fs::directory_iterator(dir / "runs")) runs += fs::exists(e.path() / "results.csv");
  EXPECT_EQ(runs, 4);
}

TEST(CliRun, WritesResultsAndSummary) {
  const fs::path dir = tmp_dir();
  const fs::path out = dir / "run";
  const Outcome r = run("--arch mlp,glu --widths 4:8:2 --seeds 2 --points 200 --schedule D,U,G,ALL*3 --threads 2 --out " +
                        out.string(), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("slope(P)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("slope(P_eff)"), std::string::npos) << r.out;
  const std::string csv = slurp(out / "results.csv");
  EXPECT_EQ(csv.rfind("arch,activation,target,width,params,effective_params,seed,train_rmse,test_rmse,status,reason,newton_steps,scaled_gradient,last_rel_decrease,seconds,start\n", 0), 0u);
  EXPECT_EQ(lines(csv), 1 + 2 * 3 * 2);
  EXPECT_NE(csv.find("glu,relu,invcos2,6,31,19,1,"), std::string::npos);  // P = 5n + 1, effective 3n + 1
  const auto j = nlohmann::json::parse(slurp(out / "summary.json"));
  ASSERT_EQ(j["fits"].size(), 2u);
  for (const auto& f : j["fits"]) {
    EXPECT_TRUE(f["ok"].get<bool>());
    EXPECT_LT(f["vs_params"]["slope"].get<double>(), 0.0);
    EXPECT_LT(f["vs_effective_params"]["slope"].get<double>(), 0.0);
    EXPECT_LT(f["seed_slopes"]["vs_effective_params"]["median"].get<double>(), 0.0);
    EXPECT_EQ(f["widths"].size(), 3u);
  }
  EXPECT_FALSE(fs::exists(out / "results.csv.tmp"));
  // A second run into the same directory refuses to overwrite without --overwrite.
  const Outcome again = run("--arch mlp --widths 4 --points 50 --out " + out.string(), dir);
  EXPECT_NE(again.code, 0);
  EXPECT_NE(again.err.find("--overwrite"), std::string::npos);
}

TEST(CliRun, BaselinesMixWithTrainedArchs) {
  const fs::path dir = tmp_dir();
  const fs::path out = dir / "run";
  const Outcome r = run("--arch mlp,glu-construct,spline2 --activation relu,silu --widths 4:8:2 --seeds 2 "
                        "--points 200 --schedule D,U,G --threads 2 --out " + out.string(), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("glu-construct"), std::string::npos) << r.out;
  const std::string csv = slurp(out / "results.csv");
  // mlp: 2 activations x 3 widths x 2 seeds; each baseline one row per width.
  EXPECT_EQ(lines(csv), 1 + 12 + 3 + 3);
  EXPECT_NE(csv.find("\nglu-construct,relu,invcos2,6,31,19,0,"), std::string::npos) << csv;
  EXPECT_NE(csv.find(",converged,construction,0,"), std::string::npos) << csv;
  EXPECT_NE(csv.find("\nspline2,none,invcos2,6,8,8,0,"), std::string::npos) << csv;
  EXPECT_NE(csv.find(",converged,least squares,0,"), std::string::npos) << csv;
  EXPECT_EQ(csv.find("glu-construct,silu"), std::string::npos) << csv;
  const auto j = nlohmann::json::parse(slurp(out / "summary.json"));
  ASSERT_EQ(j["fits"].size(), 4u);
  EXPECT_EQ(j["fits"][2]["arch"], "glu-construct");
  EXPECT_EQ(j["fits"][3]["arch"], "spline2");
  EXPECT_EQ(j["fits"][3]["activation"], "none");
  EXPECT_EQ(j["fits"][3]["params"], nlohmann::json::array({6, 8, 10}));
  for (const auto& f : j["fits"]) EXPECT_TRUE(f["ok"].get<bool>()) << f.dump();
}

TEST(CliRun, AdamRunsItsStepsAndTheRunRecordsIt) {
  const fs::path dir = tmp_dir();
  const fs::path out = dir / "run";
  const Outcome r = run("--arch glu,gated:3-construct --optimizer adam --adam-steps 40 --adam-lr 0.01 --widths 4,6 "
                        "--points 200 --no-plots --device cpu --out " + out.string(), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string csv = slurp(out / "results.csv");
  EXPECT_EQ(lines(csv), 1 + 2 + 2) << csv;
  EXPECT_NE(csv.find(",max_steps,adam: all 40 steps,40,"), std::string::npos) << csv;
  EXPECT_NE(csv.find("\ngated:3-construct,relu,invcos2,4,37,21,0,"), std::string::npos) << csv;  // P = 9n+1
  const auto j = nlohmann::json::parse(slurp(out / "summary.json"));
  EXPECT_EQ(j["config"]["optimizer"], "adam");
  EXPECT_EQ(j["config"]["adam_steps"], 40);
  EXPECT_DOUBLE_EQ(j["config"]["adam_lr"].get<double>(), 0.01);
}

TEST(CliRun, UserDataAndExpressionTargets) {
  const fs::path dir = tmp_dir();
  {
    std::ofstream csv(dir / "points.csv");
    csv << "\xEF\xBB\xBFx,y\r\n";
    for (int k = 0; k < 300; ++k) {
      const double x = -2.0 + 4.0 * k / 299;
      csv << x << "," << std::sin(2 * x) << "\r\n";
    }
  }
  Outcome r = run("--arch glu --widths 4,8 --data " + (dir / "points.csv").string() + " --out " + (dir / "a").string(), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(lines(slurp(dir / "a" / "results.csv")), 3);
  r = run("--arch mlp --widths 4,8 --points 100 --target 'exp(-x^2)*sin(5*x),x2,max(x,0)^2' --out " + (dir / "b").string(), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string csv = slurp(dir / "b" / "results.csv");
  EXPECT_NE(csv.find(",exp(-x^2)*sin(5*x),"), std::string::npos) << csv;
  EXPECT_NE(csv.find(",\"max(x,0)^2\","), std::string::npos) << csv;
  EXPECT_NE(csv.find(",x2,"), std::string::npos);
}

// d > 1 from the command line: built-in 2D and Friedman targets next to a 1D one in one sweep,
// and a CSV with two input columns.
TEST(CliRun, InputsOfAnyDimension) {
  const fs::path dir = tmp_dir();
  Outcome r = run("--arch mlp,glu --widths 2,3 --seeds 2 --points 200 --schedule D,U,G,ALL*2 --threads 2 "
                  "--target sin4,sin_sin,friedman1,'x1*x2*x3' --out " + (dir / "a").string(), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  std::string csv = slurp(dir / "a" / "results.csv");
  EXPECT_EQ(lines(csv), 1 + 4 * 2 * 2 * 2);
  // P = (d+2)n+1 for mlp and (2d+3)n+1 for glu.
  EXPECT_NE(csv.find("\nmlp,relu,sin4,3,10,"), std::string::npos) << csv;
  EXPECT_NE(csv.find("\nmlp,relu,sin_sin,3,13,"), std::string::npos) << csv;
  EXPECT_NE(csv.find("\nglu,relu,sin_sin,3,22,"), std::string::npos) << csv;
  EXPECT_NE(csv.find("\nmlp,relu,friedman1,3,22,"), std::string::npos) << csv;
  EXPECT_NE(csv.find("\nglu,relu,friedman1,2,27,"), std::string::npos) << csv;
  EXPECT_NE(csv.find("\nglu,relu,x1*x2*x3,2,19,"), std::string::npos) << csv;
  EXPECT_EQ(csv.find(",failed,"), std::string::npos) << csv;
  auto j = nlohmann::json::parse(slurp(dir / "a" / "summary.json"));
  ASSERT_EQ(j["datasets"].size(), 4u);
  EXPECT_EQ(j["datasets"][1]["d"], 2);
  EXPECT_EQ(j["datasets"][1]["test_points"], 14 * 14);
  EXPECT_EQ(j["datasets"][2]["d"], 5);
  EXPECT_TRUE(j["datasets"][2]["standardized"].get<bool>());
  EXPECT_EQ(j["datasets"][2]["map"]["x_scale"].size(), 5u);
  EXPECT_EQ(j["datasets"][3]["d"], 3);
  EXPECT_EQ(j["config"]["init"], "auto");
  // Two input columns; --standardize off keeps the file's units.
  {
    std::ofstream f(dir / "plane.csv");
    f << "u,v,y\n";
    for (int k = 0; k < 120; ++k) {
      const double u = std::sin(0.7 * k), v = std::cos(1.3 * k);
      f << u << "," << v << "," << 3 * u - v << "\n";
    }
  }
  for (const std::string stdz : {"on", "off"}) {
    const fs::path out = dir / ("b" + stdz);
    r = run("--arch mlp --widths 2,4 --schedule D,U,G,ALL*3 --no-plots --standardize " + stdz + " --data " +
            (dir / "plane.csv").string() + " --out " + out.string(), dir);
    ASSERT_EQ(r.code, 0) << r.err;
    csv = slurp(out / "results.csv");
    EXPECT_EQ(lines(csv), 3) << csv;
    EXPECT_NE(csv.find(",4,17,13,0,"), std::string::npos) << csv;  // P = (2+2)4+1
    j = nlohmann::json::parse(slurp(out / "summary.json"));
    EXPECT_EQ(j["datasets"][0]["d"], 2);
    EXPECT_EQ(j["datasets"][0]["train_points"], 96);
    EXPECT_EQ(j["datasets"][0]["test_points"], 24);
    EXPECT_EQ(j["datasets"][0]["standardized"].get<bool>(), stdz == "on");
  }
}

TEST(CliRun, UnwritableOutputIsRefusedBeforeTraining) {
  const fs::path dir = tmp_dir();
  std::ofstream(dir / "file") << "not a directory";
  const Outcome r = run("--widths 2 --points 20 --out " + (dir / "file" / "sub").string(), dir);
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("--out"), std::string::npos) << r.err;
}

// CLI11's own parse errors read like the program's: the option first, exit status 2.
TEST(CliRun, ParseErrorsInTheProgramsStyle) {
  const fs::path dir = tmp_dir();
  for (const auto& [args, want] : std::vector<std::pair<std::string, std::string>>{
           {"--seeds abc", "--seeds: want a whole number from 1 to 1000000, not 'abc'"},
           {"--points 2.5", "--points: want a whole number from 2 to 100000000, not '2.5'"},
           {"--seeds 1 --seeds 2", "--seeds is given 2 times; give it once"},
           {"--nonsense", "unexpected argument '--nonsense' (gpu-sweep --help lists the options)"},
           {"fit a b", "fit: unexpected argument 'b'"},
           {"fit", "fit: give DIR (gpu-sweep fit --help)"},
           {"--widths", "--widths: needs a value"},
           {"--adam-lr abc", "--adam-lr: 'abc' is not a number"},
           {"--overwrite=maybe", "--overwrite is a flag and takes no value, not 'maybe'"}}) {
    const Outcome r = run(args, dir);
    EXPECT_EQ(r.code, 2) << args;
    EXPECT_EQ(lines(r.err), 1) << r.err;
    EXPECT_EQ(r.err.rfind("gpu-sweep: error: " + want, 0), 0u) << args << ": " << r.err;
  }
}

// A GPU that is not there is the user's to fix, as bad input is: status 2 and one line.
TEST(CliRun, DeviceCudaWithoutAGpuExitsTwo) {
  const fs::path dir = tmp_dir();
  for (const std::string& args : {std::string("--widths 2 --points 20 --device cuda --out ") + (dir / "a").string(),
                                  "ntk --widths 2 --points 20 --device cuda --out " + (dir / "b").string()}) {
    const Outcome r = run(args, dir, "CUDA_VISIBLE_DEVICES=");
    EXPECT_EQ(r.code, 2) << args << "\n" << r.err;
    EXPECT_EQ(lines(r.err), 1) << r.err;
    EXPECT_NE(r.err.find("--device cuda"), std::string::npos) << r.err;
  }
  EXPECT_FALSE(fs::exists(dir / "a"));
  EXPECT_FALSE(fs::exists(dir / "b"));
}

// A full disk (here a file-size limit: writes past it fail as on a full disk) exits with
// status 2 and one line. Before anything finished it leaves nothing; after, the finished
// chunks stay, no file looks like results, and the line says how to resume.
TEST(CliRun, FullDiskExitsTwoAndSaysHowToResume) {
  const fs::path dir = tmp_dir();
  const std::string sweep = "--arch mlp,glu --widths 2:20 --seeds 3 --points 300 --schedule D,U,Q "
                            "--chunk-networks 8 --threads 1 --no-plots -q --out ";
  auto limited = [&](int blocks, const fs::path& out) {
    return run_command("sh -c \"trap '' XFSZ; ulimit -f " + std::to_string(blocks) + "; exec " + GPUSWEEP_BIN + " " +
                           sweep + out.string() + "\"",
                       dir);
  };
  Outcome r = limited(2, dir / "tiny");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("cannot write"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "tiny"));
  // Chunks of 8 networks fit; params.bin of all 114 does not.
  r = limited(40, dir / "some");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("continue with: gpu-sweep --resume " + (dir / "some").string()), std::string::npos) << r.err;
  for (const char* f : {"results.csv", "summary.json", "params.bin", "params_index.csv"})
    EXPECT_FALSE(fs::exists(dir / "some" / f)) << f;
  r = run("--resume " + (dir / "some").string() + " -q", dir);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(lines(slurp(dir / "some" / "results.csv")), 1 + 2 * 19 * 3);
}

// What should make a researcher doubt the numbers is said on stderr, and kept in summary.json.
TEST(CliRun, WarningsOnTheTerminalAndInTheSummary) {
  const fs::path dir = tmp_dir();
  Outcome r = run("--arch mlp,glu --widths 4,5 --points 20 --seeds 2 --no-plots --out " + (dir / "a").string(), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* w : {"gpu-sweep: warning: glu on 'invcos2': widths 4 to 5 have more parameters (P = 21 to 26) "
                        "than its 20 training points",
                        "gpu-sweep: warning: glu relu on 'invcos2': 4 of 4 networks have a test RMSE above 10x",
                        "gpu-sweep: warning: the fit of mlp relu on 'invcos2' rests on 2 widths (4 and 5)"})
    EXPECT_NE(r.err.find(w), std::string::npos) << w << "\n" << r.err;
  auto j = nlohmann::json::parse(slurp(dir / "a" / "summary.json"));
  EXPECT_EQ(j["warnings"].size(), 2u) << j["warnings"].dump(2);
  EXPECT_EQ(j["fit_warnings"].size(), 2u) << j["fit_warnings"].dump(2);
  {
    std::ofstream csv(dir / "points.csv");
    csv << "x,y\n";
    for (int k = 0; k < 100; ++k) csv << k / 50.0 - 1 << "," << (k % 10) / 10.0 << "\n";
  }
  r = run("--arch mlp --widths 2:6 --data " + (dir / "points.csv").string() +
              " --test-fraction 0 --no-plots --out " + (dir / "b").string(), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("gpu-sweep: warning: --test-fraction 0: the test RMSE of"), std::string::npos) << r.err;
  j = nlohmann::json::parse(slurp(dir / "b" / "summary.json"));
  ASSERT_EQ(j["warnings"].size(), 1u);
  EXPECT_NE(j["warnings"][0].get<std::string>().find("is the train RMSE"), std::string::npos);
  // -q prints nothing but errors; the summary still has them.
  r = run("--arch mlp,glu --widths 4,5 --points 20 --no-plots -q --out " + (dir / "c").string(), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_FALSE(nlohmann::json::parse(slurp(dir / "c" / "summary.json"))["warnings"].empty());
}

// Sizes that would swamp the machine are refused up front, with the size; threads beyond the
// networks are not started.
TEST(CliRun, HugeSweepsAreRefusedUpFrontAndThreadsAreCapped) {
  const fs::path dir = tmp_dir();
  Outcome r = run("--widths 1:100 --seeds 1000000 --out " + (dir / "big").string(), dir);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("the sweep has 300000000 networks"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--shard k/N"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "big"));
  r = run("--arch mlp,glu,gqu --widths 1:3 --points 200 --threads 4096 --no-plots --out " + (dir / "t").string(), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto m = nlohmann::json::parse(slurp(dir / "t" / "manifest.json"));
  EXPECT_EQ(m["backend"].get<std::string>().rfind("cpu (9 threads", 0), 0u) << m["backend"];
  EXPECT_NE(r.err.find("gpu-sweep: warning: --threads 4096 on "), std::string::npos) << r.err;
}

TEST(CliRun, HelpExitsZero) {
  const fs::path dir = tmp_dir();
  const Outcome r = run("--help", dir);
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("--widths"), std::string::npos);
}

}  // namespace
