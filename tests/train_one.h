// One network trained alone on the CPU backend (one thread) by a schedule, for tests that need
// a trained-like start.
#pragma once

#include <string>
#include <vector>

#include "backend/cpu_backend.h"
#include "gpusweep/model/data.h"
#include "gpusweep/train/driver.h"

namespace gs {

// The parameters th of the network s after `schedule` on ds.
inline std::vector<double> train_one(const Shape& s, const Dataset& ds, std::vector<double> th,
                                     const std::string& schedule) {
  Batch batch;
  batch.datasets.push_back(&ds);
  batch.add(s, 0, th.data());
  CpuBackend be(1);
  be.load(batch);
  TrainOptions o;
  o.schedule = parse_schedule(schedule);
  train(be, batch, o);
  be.read_params(th);
  return th;
}

}  // namespace gs
