// Rows of the CUDA benchmark suite (bench_cuda, run by bench/gpu-check.sh, not by ctest): printed
// as a table row and, when TOMA_BENCH_JSON names a file, appended to it as one JSON object a line.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace tt {

struct BenchField {
  std::string key;
  double value;
};

// name: what was timed (op and shape); ms: the median; fields: derived numbers (GB/s, TFLOP/s,
// ratios), printed after the time in the order given.
void bench_row(const std::string& name, double ms, const std::vector<BenchField>& fields = {});

}  // namespace tt
