// ops/regions.h (SPEC 2-3): tile / stripe / global regions against the reference on odd and
// non-square grids, remainder tiles, the partition invariants, bad sizes, destination counts.
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "ops/regions.h"
#include "tests/harness.h"
#include "tests/reference.h"
#include "tests/support.h"

namespace {

std::string name(int H, int W, const ref::RegionSpec& s) {
  std::string r = s.kind == ref::RegionKind::Tile     ? "tile " + std::to_string(s.th) + "x" + std::to_string(s.tw)
                  : s.kind == ref::RegionKind::Stripe ? "stripe " + std::to_string(s.rows)
                                                      : std::string("global");
  return std::to_string(H) + "x" + std::to_string(W) + " " + r;
}

// The regions equal the reference's, and form a partition listed ascending inside each region.
void check_regions(int H, int W, const ref::RegionSpec& spec) {
  const std::string what = name(H, W, spec);
  const toma::Regions R = toma::make_regions(H, W, tt::lib_region(spec));
  const auto want = ref::regions(H, W, spec);
  CHECK_EQ(R.H, H);
  CHECK_EQ(R.W, W);
  REQUIRE_EQ(R.count(), (int)want.size());
  REQUIRE_EQ(R.offsets.size(), want.size() + 1);
  REQUIRE_EQ(R.tokens.size(), (size_t)H * W);
  CHECK_EQ(R.offsets[0], 0);
  int maxs = 0;
  for (int r = 0; r < R.count(); ++r) {
    const std::vector<int> got(R.tokens.begin() + R.offsets[r], R.tokens.begin() + R.offsets[r + 1]);
    CHECK_MSG(got == want[r], what + " region " + std::to_string(r) + ": got " + tt::str(got) + ", want " + tt::str(want[r]));
    CHECK_EQ(R.size(r), (int)want[r].size());
    CHECK_GE(R.size(r), 1);
    CHECK_MSG(std::is_sorted(got.begin(), got.end()) && std::adjacent_find(got.begin(), got.end()) == got.end(),
              what + ": region not strictly ascending");
    maxs = std::max(maxs, (int)want[r].size());
  }
  CHECK_EQ(R.max_size(), maxs);
  std::vector<int> seen(H * W, 0);
  for (int t : R.tokens) {
    if (t < 0 || t >= H * W) {
      CHECK_MSG(false, what + ": token " + std::to_string(t) + " out of range");
      continue;
    }
    seen[t]++;
  }
  CHECK_MSG(std::all_of(seen.begin(), seen.end(), [](int s) { return s == 1; }), what + ": not every token exactly once");
}

}  // namespace

TEST_CASE(regions, tiles_on_odd_and_non_square_grids) {
  const int grids[][2] = {{1, 1}, {1, 7}, {7, 1}, {2, 2}, {3, 5}, {5, 3}, {7, 9}, {8, 8}, {9, 13},
                          {16, 16}, {17, 31}, {64, 64}, {144, 112}, {128, 96}, {31, 2}};
  const int tiles[][2] = {{1, 1}, {2, 2}, {4, 4}, {2, 3}, {3, 2}, {5, 7}, {8, 8}, {1, 16}, {16, 1}, {200, 200}};
  for (const auto& g : grids)
    for (const auto& t : tiles) {
      ref::RegionSpec s;
      s.kind = ref::RegionKind::Tile;
      s.th = t[0];
      s.tw = t[1];
      check_regions(g[0], g[1], s);
    }
}

TEST_CASE(regions, remainder_tiles_have_the_right_shape) {
  // 7 x 10 with 3 x 4 tiles: 3 x 3 tiles; the last row of tiles is 1 row tall, the last column
  // 2 wide, and tile (r, c) is numbered 3 * r + c.
  ref::RegionSpec s;
  s.th = 3;
  s.tw = 4;
  const toma::Regions R = toma::make_regions(7, 10, tt::lib_region(s));
  REQUIRE_EQ(R.count(), 9);
  const int sizes[] = {12, 12, 6, 12, 12, 6, 4, 4, 2};
  for (int r = 0; r < 9; ++r) CHECK_EQ(R.size(r), sizes[r]);
  // Tile 8 is rows 6, columns 8..9: tokens 68, 69.
  CHECK_EQ(R.tokens[R.offsets[8]], 68);
  CHECK_EQ(R.tokens[R.offsets[8] + 1], 69);
  // Tile 1: rows 0..2, columns 4..7.
  const std::vector<int> t1(R.tokens.begin() + R.offsets[1], R.tokens.begin() + R.offsets[2]);
  CHECK_EQ(t1, (std::vector<int>{4, 5, 6, 7, 14, 15, 16, 17, 24, 25, 26, 27}));
  // SDXL 1152 x 896 latents at /8 then /2: 72 x 56 with 4 x 4 tiles, no remainder; at 36 x 28
  // with 8 x 8 tiles: 5 x 4 tiles with remainders 4 rows / 4 columns.
  s.th = s.tw = 8;
  const toma::Regions R2 = toma::make_regions(36, 28, tt::lib_region(s));
  CHECK_EQ(R2.count(), 20);
  CHECK_EQ(R2.size(19), 16);
  CHECK_EQ(R2.size(3), 32);
  CHECK_EQ(R2.size(16), 32);
  CHECK_EQ(R2.max_size(), 64);
}

TEST_CASE(regions, stripes_and_global) {
  const int grids[][2] = {{1, 1}, {1, 9}, {9, 1}, {7, 5}, {10, 13}, {64, 64}, {33, 17}};
  for (const auto& g : grids) {
    for (int rows : {1, 2, 3, 4, 7, 64, 100}) {
      ref::RegionSpec s;
      s.kind = ref::RegionKind::Stripe;
      s.rows = rows;
      check_regions(g[0], g[1], s);
    }
    ref::RegionSpec s;
    s.kind = ref::RegionKind::Global;
    check_regions(g[0], g[1], s);
    const toma::Regions R = toma::make_regions(g[0], g[1], tt::lib_region(s));
    CHECK_EQ(R.count(), 1);
    CHECK_EQ(R.size(0), g[0] * g[1]);
  }
  // 10 rows in stripes of 4: 4, 4, 2 rows.
  ref::RegionSpec s;
  s.kind = ref::RegionKind::Stripe;
  s.rows = 4;
  const toma::Regions R = toma::make_regions(10, 3, tt::lib_region(s));
  REQUIRE_EQ(R.count(), 3);
  CHECK_EQ(R.size(0), 12);
  CHECK_EQ(R.size(2), 6);
  CHECK_EQ(R.tokens[R.offsets[2]], 24);
}

TEST_CASE(regions, bad_sizes_throw_range_errors) {
  auto expect_range = [](int H, int W, toma::RegionSpec s, const char* what) {
    try {
      toma::make_regions(H, W, s);
      CHECK_MSG(false, std::string(what) + ": no error");
    } catch (const toma::ArgError& e) {
      CHECK_MSG(e.kind == toma::ArgError::Range, std::string(what) + ": not a RangeError");
      CHECK_MSG(std::string(e.what()).size() > 10, std::string(what) + ": empty message");
    } catch (const std::exception& e) {
      CHECK_MSG(false, std::string(what) + ": threw something else: " + e.what());
    }
  };
  toma::RegionSpec tile;
  expect_range(0, 4, tile, "H = 0");
  expect_range(4, 0, tile, "W = 0");
  expect_range(-1, 4, tile, "H = -1");
  expect_range(4, -7, tile, "W = -7");
  toma::RegionSpec t0 = tile;
  t0.th = 0;
  expect_range(4, 4, t0, "th = 0");
  t0 = tile;
  t0.tw = 0;
  expect_range(4, 4, t0, "tw = 0");
  t0 = tile;
  t0.th = -3;
  expect_range(4, 4, t0, "th = -3");
  toma::RegionSpec st;
  st.kind = toma::RegionSpec::Stripe;
  st.rows = 0;
  expect_range(4, 4, st, "rows = 0");
  st.rows = -2;
  expect_range(4, 4, st, "rows = -2");
  toma::RegionSpec bad;
  bad.kind = (toma::RegionSpec::Kind)7;
  expect_range(4, 4, bad, "unknown kind");
  // The sizes of the kinds not chosen do not matter.
  toma::RegionSpec g;
  g.kind = toma::RegionSpec::Global;
  g.th = 0;
  g.rows = 0;
  CHECK_NOTHROW(toma::make_regions(3, 3, g));
  toma::RegionSpec s2;
  s2.kind = toma::RegionSpec::Stripe;
  s2.th = 0;
  s2.rows = 2;
  CHECK_NOTHROW(toma::make_regions(3, 3, s2));
}

TEST_CASE(regions, destination_count) {
  const double ratios[] = {0.0, 0.1, 0.25, 0.3, 1.0 / 3, 0.5, 0.6, 0.75, 0.9, 0.99, 0.999999};
  for (int n = 1; n <= 300; ++n)
    for (double r : ratios) {
      const int got = toma::destination_count(n, r), want = ref::destination_count(n, r);
      if (got != want) CHECK_MSG(false, "n=" + std::to_string(n) + " ratio=" + tt::str(r) + ": " + tt::str(got) + " vs " + tt::str(want));
      CHECK(got >= 1 && got <= n);
    }
  CHECK_EQ(toma::destination_count(16, 0.5), 8);
  CHECK_EQ(toma::destination_count(16, 0.75), 4);
  CHECK_EQ(toma::destination_count(16, 0.0), 16);
  CHECK_EQ(toma::destination_count(5, 0.5), 3);   // 2.5 + 0.5 = 3
  CHECK_EQ(toma::destination_count(3, 0.5), 2);   // 1.5 + 0.5 = 2
  CHECK_EQ(toma::destination_count(1, 0.9), 1);   // clamp to 1
  CHECK_EQ(toma::destination_count(10, 0.96), 1); // 0.4 + 0.5 -> 0 -> 1
  CHECK_EQ(toma::destination_count(4096, 0.75), 1024);
  CHECK_EQ(toma::destination_count(7, 0.0), 7);
}
