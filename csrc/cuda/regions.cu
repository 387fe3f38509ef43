// Region tiling on the device (SPEC section 2). Stripes and the global region are tiles of
// (rows x W) and (H x W), so one closed form places every token: its region is its tile, and its
// position is the tokens of the bands above, plus the tiles to its left in its band (each as tall
// as the band), plus its row-major place inside its tile.
#include <algorithm>

#include "cuda/common.cuh"
#include "ops/cuda.h"

namespace toma {
namespace cuda {

namespace {

struct TileGrid {
  int H, W, th, tw, cols;  // cols: tiles per band
};

TileGrid tile_grid(int H, int W, const RegionSpec& spec) {
  int th = H, tw = W;
  if (spec.kind == RegionSpec::Tile) th = std::min(spec.th, H), tw = std::min(spec.tw, W);
  else if (spec.kind == RegionSpec::Stripe) th = std::min(spec.rows, H);
  return TileGrid{H, W, th, tw, (W + tw - 1) / tw};
}

__global__ void place_tokens(TileGrid g, int32_t* tokens, int32_t* offsets, int regions) {
  const int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t N = (int64_t)g.H * g.W;
  if (t < N) {
    const int row = (int)(t / g.W), col = (int)(t % g.W);
    const int band = row / g.th, q = col / g.tw;
    const int band_h = min(g.th, g.H - band * g.th), tile_w = min(g.tw, g.W - q * g.tw);
    const int64_t start = (int64_t)band * g.th * g.W + (int64_t)band_h * q * g.tw;
    tokens[start + (int64_t)(row - band * g.th) * tile_w + (col - q * g.tw)] = (int32_t)t;
  }
  if (t <= regions) {
    if (t == regions) {
      offsets[t] = (int32_t)N;
    } else {
      const int band = (int)(t / g.cols), q = (int)(t % g.cols);
      const int band_h = min(g.th, g.H - band * g.th);
      offsets[t] = (int32_t)((int64_t)band * g.th * g.W + (int64_t)band_h * q * g.tw);
    }
  }
}

}  // namespace

int make_regions_cuda(int H, int W, const RegionSpec& spec, int32_t* tokens, int32_t* offsets) {
  // Same argument rules as make_regions (its messages), checked before anything is launched.
  if (H < 1 || W < 1) make_regions(H, W, spec);
  if ((spec.kind == RegionSpec::Tile && (spec.th < 1 || spec.tw < 1)) ||
      (spec.kind == RegionSpec::Stripe && spec.rows < 1) ||
      (spec.kind != RegionSpec::Tile && spec.kind != RegionSpec::Stripe && spec.kind != RegionSpec::Global))
    make_regions(1, 1, spec);  // throws the CPU path's RangeError
  const TileGrid g = tile_grid(H, W, spec);
  const int regions = ((H + g.th - 1) / g.th) * g.cols;
  const int64_t work = std::max<int64_t>((int64_t)H * W, regions + 1);
  place_tokens<<<blocks_for(work, 256), 256, 0, kStream>>>(g, tokens, offsets, regions);
  TOMA_CUDA_LAUNCHED("regions");
  synchronize("regions");
  return regions;
}

}  // namespace cuda
}  // namespace toma
