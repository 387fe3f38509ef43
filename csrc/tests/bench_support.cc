#include "tests/bench_support.h"

#include <cstdio>
#include <cstdlib>

namespace tt {

void bench_row(const std::string& name, double ms, const std::vector<BenchField>& fields) {
  std::printf("  %-58s %10.4f ms", name.c_str(), ms);
  for (const auto& f : fields) std::printf("  %s %.3f", f.key.c_str(), f.value);
  std::printf("\n");
  const char* path = std::getenv("TOMA_BENCH_JSON");
  if (!path || !*path) return;
  if (FILE* out = std::fopen(path, "a")) {
    std::fprintf(out, "{\"name\":\"%s\",\"ms\":%.6f", name.c_str(), ms);
    for (const auto& f : fields) std::fprintf(out, ",\"%s\":%.6g", f.key.c_str(), f.value);
    std::fprintf(out, "}\n");
    std::fclose(out);
  }
}

}  // namespace tt
