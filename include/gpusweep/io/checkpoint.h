// A sweep on disk while it runs, so that a stopped run loses nothing finished: each finished
// chunk of networks goes to DIR/chunks/ as its own file (written to a temporary name, then
// renamed), next to DIR/manifest.json, the sweep's configuration. --resume reads them back.
// And the split of a sweep into shards for a cluster's job array.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "gpusweep/train/sweep.h"

namespace gs {

// DIR/chunks/chunk-<id>.json: the results of the listed jobs (indices into the sweep's
// canonical job list), parameters included, exact to the last bit.
void write_chunk(const std::string& dir, int id, const std::vector<int>& jobs,
                 const std::vector<NetResult>& results);
// Every chunk in DIR/chunks: job index -> result. Throws std::invalid_argument naming a file
// that is not a chunk of this sweep (a job index out of range, or twice).
std::map<int, NetResult> read_chunks(const std::string& dir, int num_jobs);
// The number of chunk files already there (the next id to use).
int count_chunks(const std::string& dir);
void remove_chunks(const std::string& dir);

// The Status of a status_name(); throws std::invalid_argument for any other text.
Status status_from(const std::string& name);

// "k/N" with 1 <= k <= N. Throws std::invalid_argument naming the problem.
void parse_shard(const std::string& text, int* k, int* n);
// Shard k of n (1-based) of the job indices: the jobs are dealt largest cost first (about P^2
// each for trained networks, P for baselines) to the shard with the least cost so far, so
// every shard gets about 1/n of the work. Deterministic; sorted indices.
std::vector<int> shard_jobs(const std::vector<Job>& jobs, const std::vector<int>& dims, int k, int n);

}  // namespace gs
