#include "ops/regions.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"

namespace toma {

int Regions::max_size() const {
  int m = 0;
  for (int r = 0; r < count(); ++r) m = std::max(m, size(r));
  return m;
}

Regions make_regions(int H, int W, const RegionSpec& spec) {
  if (H < 1 || W < 1)
    throw range_error("grid must be [H, W] with H, W >= 1, got [" + std::to_string(H) + ", " +
                      std::to_string(W) + "]");
  Regions R;
  R.H = H;
  R.W = W;
  R.tokens.reserve((size_t)H * W);
  R.offsets.push_back(0);
  auto add_rect = [&](int r0, int r1, int c0, int c1) {
    for (int r = r0; r < r1; ++r)
      for (int c = c0; c < c1; ++c) R.tokens.push_back(r * W + c);
    R.offsets.push_back((int32_t)R.tokens.size());
  };
  switch (spec.kind) {
    case RegionSpec::Tile: {
      if (spec.th < 1 || spec.tw < 1)
        throw range_error("region tile size must be >= 1, got th=" + std::to_string(spec.th) +
                          ", tw=" + std::to_string(spec.tw));
      const int th = std::min(spec.th, H), tw = std::min(spec.tw, W);
      for (int r0 = 0; r0 < H; r0 += th)
        for (int c0 = 0; c0 < W; c0 += tw) add_rect(r0, std::min(H, r0 + th), c0, std::min(W, c0 + tw));
      break;
    }
    case RegionSpec::Stripe: {
      if (spec.rows < 1)
        throw range_error("region stripe rows must be >= 1, got " + std::to_string(spec.rows));
      const int rows = std::min(spec.rows, H);
      for (int r0 = 0; r0 < H; r0 += rows) add_rect(r0, std::min(H, r0 + rows), 0, W);
      break;
    }
    case RegionSpec::Global:
      add_rect(0, H, 0, W);
      break;
    default:
      throw range_error("region kind must be 'tile', 'stripe' or 'global'");
  }
  return R;
}

int destination_count(int n, double ratio) {
  const double k = std::floor((1.0 - ratio) * n + 0.5);
  return (int)std::min<double>(n, std::max<double>(1.0, k));
}

}  // namespace toma
