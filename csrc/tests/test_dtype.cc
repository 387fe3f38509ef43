// core/dtype.h: float16 / bfloat16 conversions against the reference encoders and decoders
// (exhaustive over the 16-bit patterns, random and tie cases for the float32 -> 16-bit direction),
// the bulk conversions, load/store, and all_finite.
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/dtype.h"
#include "tests/harness.h"
#include "tests/reference.h"

using toma::DType;

namespace {

bool f16_is_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }
bool bf16_is_nan(uint16_t h) { return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0; }

// The float32 bit pattern's value, as float.
float fbits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

// Same value (NaN matches NaN) and same sign (so -0 != +0).
bool same(double a, double b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return a == b && std::signbit(a) == std::signbit(b);
}

}  // namespace

TEST_CASE(dtype, sizes_and_names) {
  CHECK_EQ(toma::dtype_size(DType::F32), 4u);
  CHECK_EQ(toma::dtype_size(DType::F16), 2u);
  CHECK_EQ(toma::dtype_size(DType::BF16), 2u);
  CHECK_EQ(std::string(toma::dtype_name(DType::F32)), std::string("float32"));
  CHECK_EQ(std::string(toma::dtype_name(DType::F16)), std::string("float16"));
  CHECK_EQ(std::string(toma::dtype_name(DType::BF16)), std::string("bfloat16"));
}

TEST_CASE(dtype, f16_decode_every_pattern) {
  int bad = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const double got = toma::f16_to_f32((uint16_t)h), want = ref::f16_decode((uint16_t)h);
    if (!same(got, want) && ++bad <= 5) CHECK_MSG(false, "f16 " + tt::str(h) + ": " + tt::str(got) + " vs " + tt::str(want));
  }
  CHECK_EQ(bad, 0);
  // Spot values: smallest subnormal, largest subnormal, smallest normal, max, one, infinities.
  CHECK_EQ(toma::f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  CHECK_EQ(toma::f16_to_f32(0x03ff), 1023 * std::ldexp(1.0f, -24));
  CHECK_EQ(toma::f16_to_f32(0x0400), std::ldexp(1.0f, -14));
  CHECK_EQ(toma::f16_to_f32(0x7bff), 65504.0f);
  CHECK_EQ(toma::f16_to_f32(0x3c00), 1.0f);
  CHECK_EQ(toma::f16_to_f32(0xc000), -2.0f);
  CHECK(std::isinf(toma::f16_to_f32(0x7c00)) && toma::f16_to_f32(0x7c00) > 0);
  CHECK(std::isinf(toma::f16_to_f32(0xfc00)) && toma::f16_to_f32(0xfc00) < 0);
  CHECK(std::isnan(toma::f16_to_f32(0x7e00)));
  CHECK(std::isnan(toma::f16_to_f32(0x7c01)));
  CHECK(std::signbit(toma::f16_to_f32(0x8000)));
}

TEST_CASE(dtype, bf16_decode_every_pattern) {
  int bad = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const double got = toma::bf16_to_f32((uint16_t)h), want = ref::bf16_decode((uint16_t)h);
    if (!same(got, want) && ++bad <= 5) CHECK_MSG(false, "bf16 " + tt::str(h) + ": " + tt::str(got) + " vs " + tt::str(want));
  }
  CHECK_EQ(bad, 0);
  CHECK_EQ(toma::bf16_to_f32(0x3f80), 1.0f);
  CHECK_EQ(toma::bf16_to_f32(0x0001), std::ldexp(1.0f, -133));
  CHECK(std::isnan(toma::bf16_to_f32(0x7f81)));
}

TEST_CASE(dtype, round_trip_every_16bit_pattern) {
  int bad16 = 0, badbf = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t a = toma::f32_to_f16(toma::f16_to_f32((uint16_t)h));
    if (f16_is_nan((uint16_t)h)) {
      if (!(f16_is_nan(a) && (a & 0x8000) == (h & 0x8000)) && ++bad16 <= 5)
        CHECK_MSG(false, "f16 NaN " + tt::str(h) + " came back as " + tt::str(a));
    } else if (a != h && ++bad16 <= 5) {
      CHECK_MSG(false, "f16 " + tt::str(h) + " came back as " + tt::str(a));
    }
    const uint16_t b = toma::f32_to_bf16(toma::bf16_to_f32((uint16_t)h));
    if (bf16_is_nan((uint16_t)h)) {
      if (!(bf16_is_nan(b) && (b & 0x8000) == (h & 0x8000)) && ++badbf <= 5)
        CHECK_MSG(false, "bf16 NaN " + tt::str(h) + " came back as " + tt::str(b));
    } else if (b != h && ++badbf <= 5) {
      CHECK_MSG(false, "bf16 " + tt::str(h) + " came back as " + tt::str(b));
    }
  }
  CHECK_EQ(bad16, 0);
  CHECK_EQ(badbf, 0);
}

// Every float32 value exactly halfway between two adjacent 16-bit values rounds to the even one;
// one float32 ulp either side rounds to the nearer one. Covers subnormals and the overflow edge.
TEST_CASE(dtype, ties_round_to_nearest_even) {
  struct Fmt {
    const char* name;
    uint16_t (*enc)(float);
    double (*dec)(uint16_t);
    uint16_t max_finite;
  };
  const Fmt fmts[] = {{"float16", toma::f32_to_f16, ref::f16_decode, 0x7bff},
                      {"bfloat16", toma::f32_to_bf16, ref::bf16_decode, 0x7f7f}};
  for (const Fmt& f : fmts) {
    int bad = 0;
    for (uint32_t sign = 0; sign <= 0x8000u; sign += 0x8000u)
      for (uint32_t m = 0; m <= f.max_finite; ++m) {
        const uint16_t lo = (uint16_t)(sign | m), hi = (uint16_t)(sign | (m + 1));  // hi may be infinity
        const double a = f.dec(lo);
        double b = f.dec(hi);
        // Past the largest finite value, the next step is where an unbounded exponent would put it.
        if (std::isinf(b)) b = (sign ? -1 : 1) * std::ldexp(1.0, f.dec == ref::f16_decode ? 16 : 128);
        const float mid = (float)((a + b) / 2);
        if ((double)mid != (a + b) / 2) {
          CHECK_MSG(false, std::string(f.name) + ": midpoint not representable in float32");
          continue;
        }
        const uint16_t even = (m & 1) ? hi : lo;
        const uint16_t got = f.enc(mid);
        const uint16_t below = f.enc(std::nextafter(mid, (float)a));
        const uint16_t above = f.enc(std::nextafter(mid, (float)b));
        if ((got != even || below != lo || above != hi) && ++bad <= 5)
          CHECK_MSG(false, std::string(f.name) + " between " + tt::str(lo) + " and " + tt::str(hi) + ": tie -> " +
                               tt::str(got) + " (want " + tt::str(even) + "), below -> " + tt::str(below) +
                               ", above -> " + tt::str(above));
      }
    CHECK_EQ(bad, 0);
  }
  // Named edges.
  CHECK_EQ(toma::f32_to_f16(65519.996f), 0x7bff);
  CHECK_EQ(toma::f32_to_f16(65520.0f), 0x7c00);
  CHECK_EQ(toma::f32_to_f16(-65520.0f), 0xfc00);
  CHECK_EQ(toma::f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);           // half the smallest subnormal: even
  CHECK_EQ(toma::f32_to_f16(std::nextafter(std::ldexp(1.0f, -25), 1.f)), 0x0001);
  CHECK_EQ(toma::f32_to_f16(3 * std::ldexp(1.0f, -25)), 0x0002);       // 1.5 ulp: to 2 (even)
  CHECK_EQ(toma::f32_to_f16(-std::ldexp(1.0f, -26)), 0x8000);          // underflow keeps the sign
  CHECK_EQ(toma::f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);    // 1 + half ulp: even (1)
  CHECK_EQ(toma::f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  CHECK_EQ(toma::f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  CHECK_EQ(toma::f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  CHECK_EQ(toma::f32_to_bf16(FLT_MAX), 0x7f80);  // rounds past the largest bfloat16
  CHECK_EQ(toma::f32_to_bf16(-FLT_MAX), 0xff80);
  CHECK_EQ(toma::f32_to_bf16(fbits(0x00000001u)), 0x0000);  // float32 subnormals: nearest even
  CHECK_EQ(toma::f32_to_bf16(fbits(0x00008000u)), 0x0000);
  CHECK_EQ(toma::f32_to_bf16(fbits(0x00018000u)), 0x0002);
  CHECK_EQ(toma::f32_to_bf16(fbits(0x00008001u)), 0x0001);
}

TEST_CASE(dtype, random_float32_to_16bit_matches_reference) {
  tt::Rng rng(1234);
  int bad16 = 0, badbf = 0;
  for (int i = 0; i < 1500000; ++i) {
    uint32_t b = rng.bits();
    // Half the draws inside float16's exponent range (with margin), where the rounding happens.
    if (i & 1) b = (b & 0x807fffffu) | ((uint32_t)rng.uniform_int(100, 145) << 23);
    const float f = fbits(b);
    const uint16_t g16 = toma::f32_to_f16(f), w16 = ref::f16_encode(f);
    const bool ok16 = std::isnan(f) ? f16_is_nan(g16) && (g16 & 0x8000) == (w16 & 0x8000) : g16 == w16;
    if (!ok16 && ++bad16 <= 5)
      CHECK_MSG(false, "f32_to_f16(bits " + tt::str(b) + ") = " + tt::str(g16) + ", want " + tt::str(w16));
    const uint16_t gb = toma::f32_to_bf16(f), wb = ref::bf16_encode(f);
    const bool okb = std::isnan(f) ? bf16_is_nan(gb) && (gb & 0x8000) == (wb & 0x8000) : gb == wb;
    if (!okb && ++badbf <= 5)
      CHECK_MSG(false, "f32_to_bf16(bits " + tt::str(b) + ") = " + tt::str(gb) + ", want " + tt::str(wb));
  }
  CHECK_EQ(bad16, 0);
  CHECK_EQ(badbf, 0);
}

TEST_CASE(dtype, infinities_and_nans) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  CHECK_EQ(toma::f32_to_f16(inf), 0x7c00);
  CHECK_EQ(toma::f32_to_f16(-inf), 0xfc00);
  CHECK_EQ(toma::f32_to_f16(1e6f), 0x7c00);
  CHECK_EQ(toma::f32_to_f16(-1e30f), 0xfc00);
  CHECK(f16_is_nan(toma::f32_to_f16(nan)));
  CHECK(f16_is_nan(toma::f32_to_f16(-nan)));
  CHECK(f16_is_nan(toma::f32_to_f16(fbits(0x7f800001u))));  // payload only in low bits: still NaN
  CHECK(f16_is_nan(toma::f32_to_f16(fbits(0xff800001u))));
  CHECK_EQ(toma::f32_to_bf16(inf), 0x7f80);
  CHECK_EQ(toma::f32_to_bf16(-inf), 0xff80);
  CHECK(bf16_is_nan(toma::f32_to_bf16(nan)));
  CHECK(bf16_is_nan(toma::f32_to_bf16(fbits(0x7f800001u))));
  CHECK(bf16_is_nan(toma::f32_to_bf16(fbits(0xffffffffu))));
  CHECK(bf16_is_nan(toma::f32_to_bf16(fbits(0x7fffffffu))));  // must not round up into +0 / infinity
  CHECK(std::isinf(toma::bf16_to_f32(0x7f80)));
  CHECK(std::isnan(toma::f16_to_f32(toma::f32_to_f16(nan))));
  CHECK(std::isnan(toma::bf16_to_f32(toma::f32_to_bf16(nan))));
  CHECK(std::signbit(toma::f16_to_f32(toma::f32_to_f16(-0.0f))));
  CHECK(std::signbit(toma::bf16_to_f32(toma::f32_to_bf16(-0.0f))));
}

TEST_CASE(dtype, bulk_conversions_match_scalar) {
  tt::Rng rng(77);
  const DType types[] = {DType::F32, DType::F16, DType::BF16};
  const size_t sizes[] = {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 1023, 4099};
  for (DType t : types)
    for (size_t n : sizes) {
      std::vector<float> src(n + 1);
      for (size_t i = 0; i < n; ++i) {
        // Mix normal values with subnormals, zeros, huge values and specials.
        const int kind = rng.uniform_int(0, 9);
        src[i] = kind == 0   ? (float)(rng.normal() * 1e-6)
                 : kind == 1 ? (float)(rng.normal() * 1e5)
                 : kind == 2 ? (float)(rng.normal() * 1e-40)
                 : kind == 3 ? (rng.uniform_int(0, 1) ? 0.f : -0.f)
                             : (float)rng.normal();
      }
      if (n > 4) src[n / 2] = std::numeric_limits<float>::infinity();
      if (n > 5) src[n / 3] = std::numeric_limits<float>::quiet_NaN();
      const uint16_t sentinel16 = 0xbeef;
      const float sentinelf = 12345.f;
      std::vector<uint8_t> packed((n + 1) * toma::dtype_size(t), 0);
      // A sentinel just past the end: the bulk routine must not write it.
      if (t == DType::F32) std::memcpy(packed.data() + 4 * n, &sentinelf, 4);
      else std::memcpy(packed.data() + 2 * n, &sentinel16, 2);
      toma::from_f32(src.data(), packed.data(), t, n);
      int bad = 0;
      for (size_t i = 0; i < n; ++i) {
        float want_f;
        uint16_t want_h = 0;
        if (t == DType::F32) want_f = src[i];
        else want_h = t == DType::F16 ? toma::f32_to_f16(src[i]) : toma::f32_to_bf16(src[i]);
        if (t == DType::F32) {
          float got;
          std::memcpy(&got, packed.data() + 4 * i, 4);
          if (!same(got, want_f)) ++bad;
        } else {
          uint16_t got;
          std::memcpy(&got, packed.data() + 2 * i, 2);
          if (got != want_h) ++bad;
          // ... and the scalar encoder is the reference one.
          const uint16_t r = t == DType::F16 ? ref::f16_encode(src[i]) : ref::bf16_encode(src[i]);
          const bool nan = std::isnan(src[i]);
          if (!nan && got != r) ++bad;
        }
      }
      CHECK_MSG(bad == 0, std::string(toma::dtype_name(t)) + " from_f32 n=" + tt::str(n) + ": " + tt::str(bad) + " mismatches");
      if (t == DType::F32) {
        float s;
        std::memcpy(&s, packed.data() + 4 * n, 4);
        CHECK_EQ(s, sentinelf);
      } else {
        uint16_t s;
        std::memcpy(&s, packed.data() + 2 * n, 2);
        CHECK_EQ(s, sentinel16);
      }
      std::vector<float> back(n + 1, sentinelf);
      toma::to_f32(packed.data(), t, back.data(), n);
      bad = 0;
      for (size_t i = 0; i < n; ++i) {
        const double want = t == DType::F32 ? (double)src[i]
                            : t == DType::F16 ? ref::f16_decode(toma::f32_to_f16(src[i]))
                                              : ref::bf16_decode(toma::f32_to_bf16(src[i]));
        if (!same(back[i], want)) ++bad;
        if (!same(toma::load_as_f32(packed.data(), t, i), want)) ++bad;
      }
      CHECK_EQ(back[n], sentinelf);
      CHECK_MSG(bad == 0, std::string(toma::dtype_name(t)) + " to_f32 n=" + tt::str(n) + ": " + tt::str(bad) + " mismatches");
    }
}

TEST_CASE(dtype, load_and_store) {
  tt::Rng rng(5);
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    std::vector<uint8_t> buf(16 * toma::dtype_size(t), 0);
    for (int i = 0; i < 16; ++i) {
      const float v = (float)rng.normal();
      toma::store_from_f32(buf.data(), t, i, v);
      const double want = t == DType::F32 ? (double)v
                          : t == DType::F16 ? ref::f16_decode(ref::f16_encode(v))
                                            : ref::bf16_decode(ref::bf16_encode(v));
      CHECK_EQ((double)toma::load_as_f32(buf.data(), t, i), want);
    }
    // Storing one element leaves its neighbours alone.
    std::vector<float> before(16);
    for (int i = 0; i < 16; ++i) before[i] = toma::load_as_f32(buf.data(), t, i);
    toma::store_from_f32(buf.data(), t, 7, 3.0f);
    for (int i = 0; i < 16; ++i) CHECK_EQ(toma::load_as_f32(buf.data(), t, i), i == 7 ? 3.0f : before[i]);
  }
}

TEST_CASE(dtype, all_finite) {
  tt::Rng rng(99);
  const size_t sizes[] = {0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 100, 1000, 4097};
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    const size_t es = toma::dtype_size(t);
    for (size_t n : sizes) {
      std::vector<uint8_t> buf(n * es + 8);
      for (size_t i = 0; i < n; ++i) {
        const int kind = rng.uniform_int(0, 5);
        const float v = kind == 0 ? 0.f : kind == 1 ? -0.f : kind == 2 ? 1e-40f : (float)rng.normal() * 100;
        toma::store_from_f32(buf.data(), t, i, v);
      }
      // The largest finite values and the smallest subnormal are finite.
      if (n >= 3) {
        if (t == DType::F32) {
          const float m = FLT_MAX, s = std::numeric_limits<float>::denorm_min();
          std::memcpy(buf.data(), &m, 4);
          std::memcpy(buf.data() + 4, &s, 4);
          const float mn = -FLT_MAX;
          std::memcpy(buf.data() + 8, &mn, 4);
        } else {
          const uint16_t m = t == DType::F16 ? 0x7bff : 0x7f7f, s = 0x0001, mn = m | 0x8000;
          std::memcpy(buf.data(), &m, 2);
          std::memcpy(buf.data() + 2, &s, 2);
          std::memcpy(buf.data() + 4, &mn, 2);
        }
      }
      // Garbage past the end must not be read as part of the array.
      for (size_t i = n * es; i < buf.size(); ++i) buf[i] = 0xff;
      CHECK_MSG(toma::all_finite(buf.data(), t, n), std::string(toma::dtype_name(t)) + " n=" + tt::str(n));
      // One bad value anywhere makes it false: every position for small n, some for large.
      const float bads[] = {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN()};
      for (size_t pos = 0; pos < n; pos += (n <= 70 ? 1 : n / 13 + 1)) {
        for (float b : bads) {
          std::vector<uint8_t> c(buf);
          toma::store_from_f32(c.data(), t, pos, b);
          if (toma::all_finite(c.data(), t, n))
            CHECK_MSG(false, std::string(toma::dtype_name(t)) + " n=" + tt::str(n) + " bad value " + tt::str(b) +
                                 " at " + tt::str(pos) + " not seen");
        }
        if (n > 0) {
          std::vector<uint8_t> c(buf);
          toma::store_from_f32(c.data(), t, n - 1, std::numeric_limits<float>::quiet_NaN());
          CHECK(!toma::all_finite(c.data(), t, n));
        }
      }
      // NaN with the smallest payload (not the canonical one).
      if (n > 0) {
        std::vector<uint8_t> c(buf);
        if (t == DType::F32) {
          const uint32_t b = 0xff800001u;
          std::memcpy(c.data() + 4 * (n - 1), &b, 4);
        } else {
          const uint16_t b = t == DType::F16 ? 0x7c01 : 0x7f81;
          std::memcpy(c.data() + 2 * (n - 1), &b, 2);
        }
        CHECK(!toma::all_finite(c.data(), t, n));
      }
    }
  }
}
