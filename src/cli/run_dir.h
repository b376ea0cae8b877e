// A run's output directory through its life: the default name, preparing it, the manifest,
// --resume, --shard, the finished sweep's files, and merging shards into one directory.
#pragma once

#include <CLI/CLI.hpp>
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/cli_options.h"
#include "gpusweep/train/sweep.h"

namespace gs {

// The whole file; std::invalid_argument when it cannot be read.
std::string read_text(const std::string& path);

// runs/<timestamp>, or runs/<timestamp>-2, -3, ... when runs started in the same second took
// the earlier names: the default never lands on an earlier run's directory.
std::string default_out_dir();

// The output directory: created if missing; refuses to overwrite results (any of the files
// `results` names: by default those of a sweep and of an ntk run, so that neither kind lands
// on the other) unless asked. Returns true when this run created it.
bool prepare_out_dir(const std::string& dir, bool overwrite,
                     const std::vector<std::string>& results = {"results.csv", "summary.json", "ntk.csv",
                                                                "ntk_summary.json"});

// With --overwrite, the earlier run's files go first, of either kind (a sweep's or an ntk
// run's) and with its figures: a stopped run must never leave them looking like its own
// results, and `plot` must not draw them again.
void remove_earlier_results(const std::string& dir);

// What a run was beyond its options, for manifest.json and summary.json's config.
struct Provenance {
  std::string command_line;       // as typed, shell-quoted
  std::string working_directory;  // where it was typed
  std::string backend;            // Backend::describe(): the backend and its device
  std::string cpu;                // the host's processor
  DataFile data;                  // --data: absolute path and SHA-256; empty without --data
};
Provenance provenance(const Options& o, const std::string& backend, const DataFile& data);
// argv as one line a shell reads back as the same words.
std::string shell_quote(int argc, const char* const* argv);

// manifest.json: the version, the commit, the sweep options, the number of jobs, the
// provenance, the fit options and whether the run draws figures (--resume keeps the last two).
nlohmann::json manifest_json(Options o, std::size_t jobs, const Provenance& p);
// DIR/manifest.json; what ("--resume", "merge") starts the messages about DIR.
nlohmann::json read_manifest(const std::string& dir, const std::string& what);
// --resume: the sweep options come from DIR/manifest.json. One given on the command line
// must agree with it; the others are taken from it.
// app: the command line, or null when nothing was given on it.
void apply_manifest(Options& o, const nlohmann::json& m, const CLI::App* app, const std::string& path);
// summary.json's config: the sweep options, this run's backend, the version and the commit,
// and the provenance the sweep's manifest recorded (its command line, directory, processor,
// --data file, and the runs that resumed it).
nlohmann::json config_json(Options o, const std::string& backend, const nlohmann::json& manifest);

// A new sweep's directory: prepared (prepare_out_dir), cleared of an earlier run's results,
// with its manifest. Returns true when this run created it.
bool start_sweep_dir(const std::string& out, const Options& o, const nlohmann::json& manifest);

// --resume DIR: the options of the sweep in DIR (see apply_manifest), its fit options and
// --no-plots unless given now, the --data file's recorded path, and --out DIR. Refuses a
// sweep that is complete and an --out elsewhere. Returns the manifest.
nlohmann::json resume_options(Options& o, const CLI::App& app);
// Refuses (what: "--resume DIR", "merge") when the --data file's checksum differs from the
// one the manifest recorded.
void check_data_unchanged(const nlohmann::json& manifest, const DataFile& now, const std::string& what);
// --resume: the results that the chunks in DIR already hold, each put at its job's position
// in this run (position i is job canonical[i] of the sweep's all_jobs); have marks them.
// Refuses a chunk whose parameter vector has not the job's length (dims: the datasets' input
// dimensions). Returns how many there are.
int read_saved(const std::string& dir, const std::vector<Job>& all_jobs, const std::vector<int>& dims,
               const std::vector<int>& canonical, std::vector<NetResult>* results, std::vector<char>* have);

// This run's jobs as indices into all_jobs: all of them, or the shard --shard k/N asks for.
std::vector<int> shard_of(const Options& o, const SweepSpec& spec, const std::vector<Job>& all_jobs);

// The finished sweep's files: params.bin and its index, results.csv, summary.json (results
// and summary stand or fall together), and the slope table. summary.json's warnings are
// `warnings` (the plan's, already printed) and those of the results, which are printed after
// the table, with the fits' (unless quiet). With transfers.bytes (a run on a backend with a
// device), summary.json has host_transfers and the terminal a line on them.
void write_outputs(const std::string& out, const Options& o, const SweepSpec& spec,
                   const std::vector<Job>& jobs, const std::vector<NetResult>& results,
                   const nlohmann::json& config, double secs, std::vector<std::string> warnings,
                   const SweepTransfers& transfers = {});
// Each line to stderr as a warning.
void print_warnings(const std::vector<std::string>& lines);

// `gpu-sweep merge DIR... --out DIR` without the figures: the shards 1/N..N/N of one sweep
// into one directory, as if the sweep had run whole.
void merge_shards(const Options& o, const std::vector<std::string>& dirs);

}  // namespace gs
