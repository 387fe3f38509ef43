// Local regions of the H x W token grid (SPEC section 2): every image token in exactly one region,
// regions numbered row-major, tokens ascending inside a region.
#pragma once
#include <cstdint>
#include <vector>

namespace toma {

struct RegionSpec {
  enum Kind : int { Tile = 0, Stripe = 1, Global = 2 };
  Kind kind = Tile;
  int th = 4, tw = 4;  // tile
  int rows = 1;        // stripe
};

struct Regions {
  int H = 0, W = 0;
  std::vector<int32_t> offsets;  // count() + 1 entries into `tokens`
  std::vector<int32_t> tokens;   // the N = H * W image-token indices, region by region
  int count() const { return (int)offsets.size() - 1; }
  int size(int r) const { return offsets[r + 1] - offsets[r]; }
  int max_size() const;
};

// Throws ArgError (range) for H, W < 1 or a tile/stripe size < 1.
Regions make_regions(int H, int W, const RegionSpec& spec);

// SPEC section 3: k = clamp(floor((1 - ratio) * n + 0.5), 1, n).
int destination_count(int n, double ratio);

}  // namespace toma
