// Scalar conversions between float/double and the 16-bit storage formats,
// rounding to nearest, ties to even (the rounding SPEC section 4 measures
// against), and the one scalar load/store of an element of any DType. Header-
// only so that the engine's slow path, the reference, the tests, the bench and
// users share exactly these.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "rmsnorm/rmsnorm.hpp"

namespace rmsnorm {

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float float_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline float bfloat16_to_float(uint16_t h) { return float_from_bits(uint32_t{h} << 16); }

inline uint16_t float_to_bfloat16(float f) {
  const uint32_t u = float_bits(f);
  if (std::isnan(f)) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // keep it a quiet NaN
  const uint32_t rounding = 0x7FFFu + ((u >> 16) & 1u);                  // ties to even
  return static_cast<uint16_t>((u + rounding) >> 16);
}

inline float float16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  const uint32_t exponent = (h >> 10) & 0x1Fu;
  const uint32_t mantissa = h & 0x3FFu;
  if (exponent == 0x1F) return float_from_bits(sign | 0x7F800000u | (mantissa << 13));
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in float
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  return float_from_bits(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

// Rounds a double straight to float16 (one rounding; going through float
// first could round twice).
inline uint16_t double_to_float16(double d) {
  const uint16_t sign = std::signbit(d) ? 0x8000u : 0u;
  if (std::isnan(d)) return static_cast<uint16_t>(sign | 0x7E00u);
  const double a = std::fabs(d);
  if (a >= 65520.0) return static_cast<uint16_t>(sign | 0x7C00u);  // rounds to infinity
  if (a < std::ldexp(1.0, -14)) {
    // Subnormal range: a multiple of 2^-24; nearbyint rounds ties to even.
    const double units = std::nearbyint(std::ldexp(a, 24));
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(units));  // 1024 -> min normal
  }
  int exponent;
  const double fraction = std::frexp(a, &exponent);                  // a = fraction * 2^exponent
  const double units = std::nearbyint(std::ldexp(fraction, 11));     // 1024..2048
  uint32_t bits = static_cast<uint32_t>(exponent + 14) << 10;        // biased exponent of 2^(e-1)
  bits += static_cast<uint32_t>(units) - 1024u;                      // a carry bumps the exponent
  return static_cast<uint16_t>(sign | bits);
}

inline uint16_t float_to_float16(float f) { return double_to_float16(f); }

// Rounds a double straight to bfloat16 (one rounding).
inline uint16_t double_to_bfloat16(double d) {
  if (std::isnan(d)) return std::signbit(d) ? 0xFFC0u : 0x7FC0u;
  const float nearest = static_cast<float>(d);
  // Going through float could round twice; correct it when the float is not exact
  // and lands exactly on a bfloat16 tie.
  uint32_t u = float_bits(nearest);
  if ((u & 0xFFFFu) == 0x8000u && static_cast<double>(nearest) != d) {
    const bool float_rounded_up = std::fabs(static_cast<double>(nearest)) > std::fabs(d);
    return static_cast<uint16_t>(float_rounded_up ? (u >> 16) : (u >> 16) + 1u);
  }
  return float_to_bfloat16(nearest);
}

// long double -> double, rounded to odd: v itself when it is a double, else
// whichever of its two double neighbours has an odd last bit. Rounding that
// once more, to nearest even, into a format at least two bits narrower (float,
// bfloat16, float16) gives v correctly rounded; rounding v to nearest double
// first could round twice (a double that lands exactly on a tie).
inline double round_to_odd(long double v) {
  const double nearest = static_cast<double>(v);
  if (static_cast<long double>(nearest) == v || !std::isfinite(nearest)) return nearest;
  uint64_t bits;
  std::memcpy(&bits, &nearest, sizeof bits);
  if (bits & 1u) return nearest;
  return std::nextafter(nearest, v > nearest ? std::numeric_limits<double>::infinity()
                                             : -std::numeric_limits<double>::infinity());
}

// Element i of an array of `dtype`, as a double: exact for every dtype.
inline double load_element(DType dtype, const void* base, int64_t i) {
  switch (dtype) {
    case DType::kFloat32:
      return static_cast<const float*>(base)[i];
    case DType::kBFloat16:
      return bfloat16_to_float(static_cast<const uint16_t*>(base)[i]);
    case DType::kFloat16:
      return float16_to_float(static_cast<const uint16_t*>(base)[i]);
    case DType::kFloat64:
      return static_cast<const double*>(base)[i];
  }
  return std::numeric_limits<double>::quiet_NaN();
}

// v rounded once, to nearest even, into element i of an array of `dtype`
// (from long double too: see round_to_odd).
inline void store_element(DType dtype, void* base, int64_t i, long double v) {
  switch (dtype) {
    case DType::kFloat32:
      static_cast<float*>(base)[i] = static_cast<float>(round_to_odd(v));
      return;
    case DType::kBFloat16:
      static_cast<uint16_t*>(base)[i] = double_to_bfloat16(round_to_odd(v));
      return;
    case DType::kFloat16:
      static_cast<uint16_t*>(base)[i] = double_to_float16(round_to_odd(v));
      return;
    case DType::kFloat64:
      static_cast<double*>(base)[i] = static_cast<double>(v);
      return;
  }
}

// v rounded to `dtype`'s values, as a double.
inline double rounded_to(DType dtype, long double v) {
  unsigned char element[sizeof(double)];
  store_element(dtype, element, 0, v);
  return load_element(dtype, element, 0);
}

}  // namespace rmsnorm
