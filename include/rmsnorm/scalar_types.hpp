// Scalar conversions between float/double and the 16-bit storage formats,
// rounding to nearest, ties to even (the rounding SPEC section 4 measures
// against). Header-only so that tests and users share exactly these.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

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

}  // namespace rmsnorm
