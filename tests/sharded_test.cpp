// SPEC section 9: rows split across shards. Every shard runs the phases on its
// own columns, the test adds the shards' sums in rank order (what an
// all-reduce does), and the assembled result must be the unsharded norm
// within SPEC section 4's tolerance, on every SIMD target.
#include <cmath>
#include <cstring>
#include <numeric>

#include "rmsnorm/rmsnorm.h"
#include "tests/test_support.hpp"

namespace rmsnorm::testing {
namespace {

class Sharded : public TargetTest {};
INSTANTIATE_TEST_SUITE_P(Targets, Sharded, every_target(), target_name);

// One process's part of a row: its columns of x, dy, weight and bias, with a
// row stride of its own (width + 3) so that strides are exercised too.
struct ShardData {
  Shard shard;
  int64_t width = 0;
  TypedMatrix x, dy, y, dx;
  TypedVector weight, bias;
  std::vector<unsigned char> inv_rms, mean, dweight;
  std::vector<float> dbias;
};

std::vector<ShardData> split(const TypedMatrix& x, const TypedMatrix& dy, const TypedVector& weight,
                             const TypedVector& bias, const std::vector<int64_t>& widths) {
  std::vector<ShardData> shards;
  int64_t begin = 0;
  const size_t stats = dtype_size(statistics_dtype(x.dtype)) * static_cast<size_t>(x.rows);
  for (int64_t width : widths) {
    ShardData s;
    s.shard = {x.n, begin};
    s.width = width;
    s.x = columns_of(x, begin, width, 3);
    s.dy = columns_of(dy, begin, width, 3);
    s.y = make_matrix(x.dtype, x.rows, width, width + 1);
    s.dx = make_matrix(x.dtype, x.rows, width, width + 1);
    s.weight = slice_of(weight, begin, width);
    s.bias = slice_of(bias, begin, width);
    s.inv_rms.assign(stats, 0xEE);
    s.mean.assign(stats, 0xEE);
    s.dweight.assign(static_cast<size_t>(width) * 8, 0xEE);
    s.dbias.assign(static_cast<size_t>(width), -1.0f);
    shards.push_back(std::move(s));
    begin += width;
  }
  EXPECT_EQ(begin, x.n) << "the widths must add up to n";
  return shards;
}

ShardForwardArgs forward_args(ShardData& s) {
  ShardForwardArgs a;
  a.rows = s.x.rows;
  a.n = s.width;
  a.shard = s.shard;
  a.x = {s.x.data(), s.x.dtype, s.x.stride};
  a.y = {s.y.data(), s.y.dtype, s.y.stride};
  a.weight = {s.weight.data(), s.weight.dtype};
  a.bias = {s.bias.data(), s.bias.dtype};
  a.saved = {s.inv_rms.data(), s.mean.data()};
  return a;
}

ShardBackwardArgs backward_args(ShardData& s, bool dweight) {
  ShardBackwardArgs a;
  a.rows = s.x.rows;
  a.n = s.width;
  a.shard = s.shard;
  a.x = {s.x.data(), s.x.dtype, s.x.stride};
  a.dy = {s.dy.data(), s.dy.dtype, s.dy.stride};
  a.weight = {s.weight.data(), s.weight.dtype};
  a.saved = {s.inv_rms.data(), s.mean.data()};
  a.dx = {s.dx.data(), s.dx.dtype, s.dx.stride};
  if (dweight && s.weight.data()) a.dweight = {s.dweight.data(), s.weight.dtype};
  a.dbias = {s.dbias.data(), DType::kFloat32};
  return a;
}

// The all-reduce: every shard's sums added element by element, in rank order.
template <class SumsOf>
std::vector<double> reduce(std::vector<ShardData>& shards, int64_t rows, SumsOf&& sums_of) {
  std::vector<double> total(static_cast<size_t>(rows * kShardSumsPerRow), 0.0);
  for (ShardData& s : shards) {
    std::vector<double> sums(total.size(), -99.0);
    sums_of(s, sums.data());
    for (size_t i = 0; i < total.size(); ++i) total[i] += sums[i];
  }
  return total;
}

void run_forward(const NormOptions& o, std::vector<ShardData>& shards, int64_t rows) {
  std::vector<double> reduced[2];
  for (int round = 0; round < shard_forward_rounds(o); ++round) {
    reduced[round] = reduce(shards, rows, [&](ShardData& s, double* sums) {
      shard_forward_sums(o, forward_args(s), round, {reduced[0].data(), nullptr}, sums);
    });
  }
  for (ShardData& s : shards) shard_forward_apply(o, forward_args(s), {reduced[0].data(), reduced[1].data()});
}

void run_backward(const NormOptions& o, std::vector<ShardData>& shards, int64_t rows) {
  const std::vector<double> reduced = reduce(shards, rows, [&](ShardData& s, double* sums) {
    shard_backward_sums(o, backward_args(s, true), sums);
  });
  for (ShardData& s : shards) shard_backward_apply(o, backward_args(s, true), reduced.data());
}

// The shards' outputs put back together as one rows x n matrix / vector.
TypedMatrix assemble(const std::vector<ShardData>& shards, TypedMatrix ShardData::*part, int64_t rows, int64_t n) {
  TypedMatrix whole = make_matrix(shards[0].x.dtype, rows, n, n);
  for (const ShardData& s : shards)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < s.width; ++c) whole.set(r, s.shard.column_begin + c, (s.*part).get(r, c));
  return whole;
}

std::vector<unsigned char> assemble_dweight(const std::vector<ShardData>& shards, DType dtype) {
  std::vector<unsigned char> whole;
  for (const ShardData& s : shards) {
    whole.insert(whole.end(), s.dweight.begin(), s.dweight.begin() + s.width * static_cast<int64_t>(dtype_size(dtype)));
  }
  return whole;
}

std::vector<float> assemble_dbias(const std::vector<ShardData>& shards) {
  std::vector<float> whole;
  for (const ShardData& s : shards) whole.insert(whole.end(), s.dbias.begin(), s.dbias.end());
  return whole;
}

std::string describe(const NormOptions& o, DType dtype, const std::vector<int64_t>& widths) {
  std::string name = std::string(o.kind == NormKind::kLayerNorm ? "LayerNorm" : "RMSNorm") +
                     (o.eps_placement == EpsPlacement::kOutside ? " eps outside" : "") + " p=" + std::to_string(o.p) +
                     " k=" + (o.kind == NormKind::kLayerNorm ? "n" : std::to_string(partial_count(
                                                                         std::accumulate(widths.begin(), widths.end(), int64_t{0}), o.p))) +
                     " " + dtype_name(dtype) + " shards";
  for (int64_t w : widths) name += " " + std::to_string(w);
  return name;
}

// Forward and backward through the shards against the reference on the whole
// row; every shard saves the same statistics; one shard is the unsharded
// RMSNorm bit for bit.
void check_sharded(const NormOptions& o, DType dtype, int64_t rows, const std::vector<int64_t>& widths,
                   bool with_bias = false) {
  const int64_t n = std::accumulate(widths.begin(), widths.end(), int64_t{0});
  SCOPED_TRACE(describe(o, dtype, widths));
  const TypedMatrix x = random_matrix(dtype, rows, n, n + 2, o.kind == NormKind::kLayerNorm ? 3.0 : 0.0);
  const TypedMatrix dy = random_matrix(dtype, rows, n, n);
  const TypedVector weight = random_vector(dtype, n, 1.0, 0.5);
  const TypedVector bias = with_bias ? random_vector(dtype, n, 0.0, 0.5) : empty_vector(dtype);
  std::vector<ShardData> shards = split(x, dy, weight, bias, widths);
  run_forward(o, shards, rows);

  const TypedMatrix y = assemble(shards, &ShardData::y, rows, n);
  const reference::ForwardResult want = reference::forward(o, x.values(), weight.values, bias.values, dtype);
  const bool centered = o.kind == NormKind::kLayerNorm;
  const bool sixteen_bit = dtype == DType::kBFloat16 || dtype == DType::kFloat16;
  if (o.rounding == Rounding::kBeforeWeight && sixteen_bit) {
    // Two roundings: t = x / r rounds to a neighbouring 16-bit value where the
    // engine's 1/r and the reference's differ in their last bits, and t * g
    // can then lie more than 1 ulp from the reference. Compared as SPEC
    // section 7 says, against the published formula (as variants_test does).
    for (int64_t r = 0; r < rows; ++r) {
      std::vector<double> row(static_cast<size_t>(n));
      for (int64_t c = 0; c < n; ++c) row[c] = x.get(r, c);
      for (int64_t c = 0; c < n; ++c) {
        const Accepted allowed = formula_outputs(o, dtype, row, c, weight.values[c] + o.weight_offset,
                                                 with_bias ? bias.values[c] : 0.0);
        ASSERT_TRUE(allowed.contains(y.get(r, c))) << "forward: row " << r << " column " << c << ": got " << y.get(r, c)
                                                   << ", the formula allows [" << allowed.lo << ", " << allowed.hi << "]";
      }
    }
  } else {
    reference::Matrix magnitude = want.y;  // as forward_test measures it
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < n; ++c) {
        const double xhat = std::fabs(x.get(r, c) - want.mean[r]) * want.inv_rms[r] + (centered ? 1.0 : 0.0);
        magnitude.at(r, c) = xhat * std::fabs(weight.values[c] + o.weight_offset) +
                             (with_bias ? std::fabs(bias.values[c]) : 0.0);
      }
    const bool use_magnitude = with_bias || (centered && sixteen_bit);
    ASSERT_EQ(compare_rows(y, want.y, use_magnitude ? &magnitude : nullptr), "") << "forward";
  }
  for (const ShardData& s : shards) {
    ASSERT_EQ(s.inv_rms, shards[0].inv_rms) << "shard at " << s.shard.column_begin << " saved another 1/r";
    if (centered) ASSERT_EQ(s.mean, shards[0].mean) << "shard at " << s.shard.column_begin << " saved another mean";
  }

  run_backward(o, shards, rows);
  const TypedMatrix dx = assemble(shards, &ShardData::dx, rows, n);
  const std::vector<unsigned char> dweight = assemble_dweight(shards, dtype);
  const std::vector<float> dbias = assemble_dbias(shards);
  ASSERT_EQ(check_backward_outputs(o, x, dy, weight, dx, dweight.data(), dtype, dbias.data()), "") << "backward";

  if (widths.size() == 1 && !centered && !with_bias) {
    std::vector<unsigned char> inv_rms(shards[0].inv_rms.size());
    const TypedMatrix unsharded = forward_of(o, x, weight, inv_rms.data());
    ASSERT_EQ(unsharded.bytes, y.bytes) << "one shard is not the unsharded forward bit for bit";
    ASSERT_EQ(inv_rms, shards[0].inv_rms);
    const Gradients plain = backward_of(o, x, dy, weight, inv_rms.data());
    ASSERT_EQ(plain.dx.bytes, dx.bytes) << "one shard is not the unsharded backward bit for bit";
  }
}

// k = ceil(37 p) falls inside the first shard, at its edge, in the middle of
// a later one, and with p = 1 past every shard's end.
const std::vector<std::vector<int64_t>> kWidths37 = {{37}, {5, 32}, {1, 20, 16}, {3, 17, 9, 8}};

TEST_P(Sharded, RMSNormEqualsTheUnshardedNorm) {
  for (DType dtype : all_dtypes()) {
    for (const std::vector<int64_t>& widths : kWidths37) {
      for (double p : {1.0, 0.1, 5.0 / 37, 0.5, 20.0 / 37}) check_sharded(rms(p), dtype, 5, widths);
      check_sharded(rms(0.25, EpsPlacement::kOutside), dtype, 5, widths);
    }
  }
}

TEST_P(Sharded, LayerNormEqualsTheUnshardedNorm) {
  for (DType dtype : all_dtypes()) {
    for (const std::vector<int64_t>& widths : kWidths37) check_sharded(layer_norm(), dtype, 5, widths, true);
  }
}

TEST_P(Sharded, WeightOffsetAndRoundingOrderApplyPerShard) {
  NormOptions gemma = rms();
  gemma.weight_offset = 1.0;
  NormOptions llama = rms();
  llama.rounding = Rounding::kBeforeWeight;
  for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
    check_sharded(gemma, dtype, 4, {3, 17, 9, 8});
    check_sharded(llama, dtype, 4, {3, 17, 9, 8});
  }
}

// Shards of several blocks, two threads, streamed outputs.
TEST_P(Sharded, LongShardsThreadsAndStreaming) {
  NormOptions two = rms(0.3);
  two.num_threads = 2;
  NormOptions ln = layer_norm();
  ln.num_threads = 2;
  check_sharded(two, DType::kFloat32, 6, {4100, 3, 4166});
  check_sharded(ln, DType::kBFloat16, 6, {4100, 3, 4166});
  ForceStreaming streaming;
  check_sharded(rms(), DType::kFloat32, 3, {1000, 77});
  check_sharded(rms(), DType::kFloat32, 3, {1077});
}

// Rows the fast sums cannot hold (float squares overflow or underflow) go to
// long double per shard; a NaN in one shard's statistic columns reaches every
// shard's output of that row, and one past pRMSNorm's k only its own element.
TEST_P(Sharded, ExtremeAndNonFiniteRows) {
  const std::vector<int64_t> widths = {4, 9, 7};
  const int64_t n = 20, rows = 4;
  for (const NormOptions& base : {rms(), rms(0.5), layer_norm()}) {
    NormOptions o = base;
    o.eps = 0.0;
    SCOPED_TRACE(describe(o, DType::kFloat32, widths));
    TypedMatrix x = random_matrix(DType::kFloat32, rows, n, n);
    for (int64_t c = 0; c < n; ++c) {
      x.set(0, c, 1e30 * (1 + 0.1 * c));   // squares beyond float
      x.set(1, c, 1e-30 * (1 + 0.1 * c));  // squares below float's subnormals
    }
    x.set(2, 5, NAN);    // in shard 1, inside every statistic (k = 10 for p = 0.5)
    x.set(3, 15, NAN);   // in shard 2: past pRMSNorm's k
    const TypedMatrix dy = random_matrix(DType::kFloat32, rows, n, n);
    const TypedVector weight = random_vector(DType::kFloat32, n, 1.0, 0.5);
    std::vector<ShardData> shards = split(x, dy, weight, empty_vector(DType::kFloat32), widths);
    run_forward(o, shards, rows);
    run_backward(o, shards, rows);
    const TypedMatrix y = assemble(shards, &ShardData::y, rows, n);
    const TypedMatrix dx = assemble(shards, &ShardData::dx, rows, n);
    const reference::ForwardResult want = reference::forward(o, x.values(), weight.values, {});
    const reference::BackwardResult want_grad = reference::backward(o, x.values(), dy.values(), weight.values);
    const bool past_k_only = o.p < 1;
    for (int64_t r = 0; r < 2; ++r)
      for (int64_t c = 0; c < n; ++c) {
        EXPECT_NEAR(y.get(r, c), want.y.at(r, c), 1e-6 * std::fabs(want.y.at(r, c)) + 1e-30) << r << "," << c;
        const double tol = 1e-5 * (std::fabs(want_grad.dx.at(r, c)) + std::fabs(dy.get(r, c) * weight.values[c] *
                                                                                 want.inv_rms[r]));
        EXPECT_NEAR(dx.get(r, c), want_grad.dx.at(r, c), tol) << r << "," << c;
      }
    for (int64_t c = 0; c < n; ++c) {
      EXPECT_TRUE(std::isnan(y.get(2, c))) << "NaN row, column " << c;
      EXPECT_TRUE(std::isnan(dx.get(2, c))) << "NaN row, column " << c;
      // Forward: past k, the NaN stays in its element; backward's sum gy x
      // runs over the whole row, so every dx of it is NaN (SPEC section 4).
      EXPECT_EQ(std::isnan(y.get(3, c)), !past_k_only || c == 15) << "row 3, column " << c;
      EXPECT_TRUE(std::isnan(dx.get(3, c))) << "row 3, column " << c;
    }
  }
}

// The documented limit of float64 data: the shard sums are float64, so a row
// whose squares overflow it comes out NaN (never a silent 0 from x / inf),
// and an ordinary row beside it is unaffected.
TEST_P(Sharded, Float64SquaresBeyondFloat64ComeOutNaN) {
  const std::vector<int64_t> widths = {3, 4};
  const int64_t rows = 2, n = 7;
  for (const NormOptions& o : {rms(), layer_norm()}) {
    TypedMatrix x = random_matrix(DType::kFloat64, rows, n, n);
    for (int64_t c = 0; c < n; ++c) x.set(0, c, 1e200 * (c % 2 ? -1 : 1) * (1 + c));
    const TypedMatrix dy = random_matrix(DType::kFloat64, rows, n, n);
    std::vector<ShardData> shards = split(x, dy, empty_vector(DType::kFloat64), empty_vector(DType::kFloat64), widths);
    run_forward(o, shards, rows);
    const TypedMatrix y = assemble(shards, &ShardData::y, rows, n);
    const reference::ForwardResult want = reference::forward(o, x.values(), {}, {});
    for (int64_t c = 0; c < n; ++c) {
      EXPECT_TRUE(std::isnan(y.get(0, c))) << "column " << c << ": " << y.get(0, c);
      EXPECT_NEAR(y.get(1, c), want.y.at(1, c), 1e-13 * (1 + std::fabs(want.y.at(1, c)))) << "column " << c;
    }
  }
}

// The same row sharded: its mean (3.9e-325) is formed in long double from the
// shards' sums on the wide path, not rounded to 0 in double.
TEST_P(Sharded, Float64LayerNormWhoseMeanIsBelowDoublesSubnormals) {
  NormOptions o = layer_norm();
  o.eps = 4.6672546785256813e-62;
  std::vector<double> values(38, 0.0);
  values[20] = 1.4821969375237396e-323;
  const TypedMatrix x = matrix_of(DType::kFloat64, 1, 38, values);
  const TypedMatrix dy = random_matrix(DType::kFloat64, 1, 38, 38);
  std::vector<ShardData> shards = split(x, dy, empty_vector(DType::kFloat64), empty_vector(DType::kFloat64), {17, 21});
  run_forward(o, shards, 1);
  ASSERT_EQ(compare_rows(assemble(shards, &ShardData::y, 1, 38), reference::forward(o, x.values(), {}, {}).y), "");
}

// Central differences in float64 through the phases: the gradient is the
// derivative of the function the shards compute together.
TEST_P(Sharded, FiniteDifferencesInFloat64) {
  const std::vector<int64_t> widths = {2, 5, 4};
  const int64_t rows = 2, n = 11;
  for (const NormOptions& o : {rms(), rms(0.4, EpsPlacement::kOutside), layer_norm()}) {
    SCOPED_TRACE(describe(o, DType::kFloat64, widths));
    const TypedMatrix x = random_matrix(DType::kFloat64, rows, n, n);
    const TypedMatrix dy = random_matrix(DType::kFloat64, rows, n, n);
    const TypedVector weight = random_vector(DType::kFloat64, n, 1.0, 0.5);
    auto loss = [&](const TypedMatrix& at) {
      std::vector<ShardData> shards = split(at, dy, weight, empty_vector(DType::kFloat64), widths);
      run_forward(o, shards, rows);
      const TypedMatrix y = assemble(shards, &ShardData::y, rows, n);
      long double total = 0;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < n; ++c) total += static_cast<long double>(dy.get(r, c)) * y.get(r, c);
      return total;
    };
    std::vector<ShardData> shards = split(x, dy, weight, empty_vector(DType::kFloat64), widths);
    run_forward(o, shards, rows);
    run_backward(o, shards, rows);
    const TypedMatrix dx = assemble(shards, &ShardData::dx, rows, n);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < n; ++c) {
        // Relative to the row's scale, which random_matrix spreads over
        // decades: a fixed step of 1e-6 is 1% of a row of 1e-4.
        double scale = 0;
        for (int64_t j = 0; j < n; ++j) scale = std::max(scale, std::fabs(x.get(r, j)));
        const double step = 1e-6 * scale;
        TypedMatrix plus = x, minus = x;
        plus.set(r, c, x.get(r, c) + step);
        minus.set(r, c, x.get(r, c) - step);
        const double numeric = static_cast<double>((loss(plus) - loss(minus)) / (2 * step));
        EXPECT_NEAR(dx.get(r, c), numeric, 1e-5 * (1 + std::fabs(numeric))) << "row " << r << " column " << c;
      }
  }
}

TEST(ShardedBadInput, EachBadArgumentIsRejectedAndNothingWritten) {
  const int64_t rows = 2, n = 5;
  std::vector<float> x(rows * n, 1.0f), w(n, 0.5f), y(rows * n, -7.0f), dx(rows * n, -7.0f), inv_rms(rows, 1.0f),
      mean(rows, 0.0f);
  std::vector<double> sums(rows * kShardSumsPerRow, -7.0), reduced(rows * kShardSumsPerRow, 4.0);
  auto forward_args = [&](Shard shard) {
    ShardForwardArgs a;
    a.rows = rows;
    a.n = n;
    a.shard = shard;
    a.x = {x.data(), DType::kFloat32, n};
    a.y = {y.data(), DType::kFloat32, n};
    a.weight = {w.data(), DType::kFloat32};
    return a;
  };
  auto backward_args = [&](Shard shard, bool saved) {
    ShardBackwardArgs a;
    a.rows = rows;
    a.n = n;
    a.shard = shard;
    a.x = {x.data(), DType::kFloat32, n};
    a.dy = {x.data(), DType::kFloat32, n};
    a.dx = {dx.data(), DType::kFloat32, n};
    if (saved) a.saved = {inv_rms.data(), mean.data()};
    return a;
  };
  const Shard good{12, 3};
  auto expect_rejected = [&](const std::function<void()>& call, const std::string& expected) {
    EXPECT_EQ(rejection_problem(call, expected), "");
    for (float v : y) ASSERT_EQ(v, -7.0f) << "y written before the error";
    for (float v : dx) ASSERT_EQ(v, -7.0f) << "dx written before the error";
    for (double v : sums) ASSERT_EQ(v, -7.0) << "sums written before the error";
  };
  const ShardReducedSums none;
  expect_rejected([&] { shard_forward_sums(rms(), forward_args({12, 8}), 0, none, sums.data()); },
                  "shard: columns [8, 13) (column_begin + n) exceed the global row of shard.global_n = 12");
  expect_rejected([&] { shard_forward_sums(rms(), forward_args({0, 0}), 0, none, sums.data()); },
                  "shard.global_n: expected >= 1, got 0");
  expect_rejected([&] { shard_forward_sums(rms(), forward_args({12, -1}), 0, none, sums.data()); },
                  "shard.column_begin: expected >= 0, got -1");
  expect_rejected([&] { shard_forward_sums(rms(), forward_args(good), 1, none, sums.data()); },
                  "round: expected 0 (RMSNorm has one round of sums), got 1");
  expect_rejected([&] { shard_forward_sums(layer_norm(), forward_args(good), 2, none, sums.data()); },
                  "round: expected 0 or 1 (LayerNorm has two rounds of sums), got 2");
  expect_rejected([&] { shard_forward_sums(layer_norm(), forward_args(good), 1, none, sums.data()); },
                  "reduced.round0: null pointer; expected round 0's all-reduced sums");
  expect_rejected([&] { shard_forward_sums(rms(), forward_args(good), 0, none, nullptr); }, "sums: null pointer");
  expect_rejected([&] { shard_forward_sums(rms(), forward_args(good), 0, none, reinterpret_cast<double*>(x.data())); },
                  "sums and x overlap");
  expect_rejected([&] { shard_forward_apply(rms(), forward_args(good), none); }, "reduced.round0: null pointer");
  expect_rejected([&] { shard_forward_apply(layer_norm(), forward_args(good), {reduced.data(), nullptr}); },
                  "reduced.round1: null pointer");
  expect_rejected([&] { shard_forward_apply(rms(), forward_args({4, 0}), {reduced.data(), nullptr}); },
                  "exceed the global row of shard.global_n = 4");
  expect_rejected([&] { shard_backward_sums(rms(), backward_args(good, false), sums.data()); },
                  "saved.inv_rms: null; the sharded backward needs the forward's saved statistics");
  expect_rejected(
      [&] {
        ShardBackwardArgs a = backward_args(good, true);
        a.saved.mean = nullptr;
        shard_backward_sums(layer_norm(), a, sums.data());
      },
      "saved.mean: null");
  expect_rejected([&] { shard_backward_apply(rms(), backward_args(good, true), nullptr); }, "reduced: null pointer");
  expect_rejected([&] { shard_backward_apply(rms(), backward_args({6, 2}, true), reduced.data()); },
                  "exceed the global row");
  expect_rejected(
      [&] { shard_backward_apply(rms(), backward_args(good, true), reinterpret_cast<const double*>(dx.data())); },
      "dx and reduced overlap");
  expect_rejected([&] { shard_forward_rounds(rms(2.0)); }, "options.p");

  rmsnorm_options c = rmsnorm_default_options();
  EXPECT_EQ(rmsnorm_shard_forward_sums(&c, rows, n, 4, 0, RMSNORM_FLOAT32, x.data(), n, 0, nullptr, sums.data()),
            RMSNORM_INVALID_ARGUMENT);
  EXPECT_NE(std::string(rmsnorm_last_error()).find("exceed the global row"), std::string::npos) << rmsnorm_last_error();
  for (double v : sums) ASSERT_EQ(v, -7.0);
}

// The C API gives the C++ API's bits, phase by phase.
TEST(ShardedCApi, PhasesGiveTheCppApisBits) {
  const std::vector<int64_t> widths = {6, 10};
  const int64_t rows = 3, n = 16;
  const TypedMatrix x = random_matrix(DType::kBFloat16, rows, n, n, 2.0);
  const TypedMatrix dy = random_matrix(DType::kBFloat16, rows, n, n);
  const TypedVector weight = random_vector(DType::kFloat32, n, 1.0, 0.5);
  const TypedVector bias = random_vector(DType::kFloat32, n, 0.0, 0.5);
  for (const NormOptions& o : {rms(0.5), layer_norm()}) {
    std::vector<ShardData> cpp = split(x, dy, weight, bias, widths), c = split(x, dy, weight, bias, widths);
    run_forward(o, cpp, rows);
    run_backward(o, cpp, rows);

    rmsnorm_options options = rmsnorm_default_options();
    options.kind = o.kind == NormKind::kLayerNorm ? RMSNORM_KIND_LAYERNORM : RMSNORM_KIND_RMSNORM;
    options.p = o.p;
    int rounds = 0;
    ASSERT_EQ(rmsnorm_shard_forward_rounds(&options, &rounds), RMSNORM_OK);
    ASSERT_EQ(rounds, shard_forward_rounds(o));
    std::vector<double> reduced[2];
    for (int round = 0; round < rounds; ++round) {
      reduced[round] = reduce(c, rows, [&](ShardData& s, double* sums) {
        ASSERT_EQ(rmsnorm_shard_forward_sums(&options, rows, s.width, n, s.shard.column_begin, RMSNORM_BFLOAT16,
                                             s.x.data(), s.x.stride, round, reduced[0].data(), sums),
                  RMSNORM_OK)
            << rmsnorm_last_error();
      });
    }
    for (ShardData& s : c) {
      ASSERT_EQ(rmsnorm_shard_forward_apply(&options, rows, s.width, n, s.shard.column_begin, RMSNORM_BFLOAT16,
                                            s.x.data(), s.x.stride, s.y.data(), s.y.stride, s.weight.data(),
                                            s.bias.data(), RMSNORM_FLOAT32, reduced[0].data(), reduced[1].data(),
                                            s.inv_rms.data(), s.mean.data()),
                RMSNORM_OK)
          << rmsnorm_last_error();
    }
    const std::vector<double> grad = reduce(c, rows, [&](ShardData& s, double* sums) {
      ASSERT_EQ(rmsnorm_shard_backward_sums(&options, rows, s.width, n, s.shard.column_begin, RMSNORM_BFLOAT16,
                                            s.x.data(), s.x.stride, s.dy.data(), s.dy.stride, s.weight.data(),
                                            RMSNORM_FLOAT32, s.inv_rms.data(), s.mean.data(), sums),
                RMSNORM_OK)
          << rmsnorm_last_error();
    });
    for (ShardData& s : c) {
      ASSERT_EQ(rmsnorm_shard_backward_apply(&options, rows, s.width, n, s.shard.column_begin, RMSNORM_BFLOAT16,
                                             s.x.data(), s.x.stride, s.dy.data(), s.dy.stride, s.weight.data(),
                                             RMSNORM_FLOAT32, s.inv_rms.data(), s.mean.data(), grad.data(),
                                             s.dx.data(), s.dx.stride, s.dweight.data(), s.dbias.data()),
                RMSNORM_OK)
          << rmsnorm_last_error();
    }
    for (size_t i = 0; i < widths.size(); ++i) {
      EXPECT_EQ(c[i].y.bytes, cpp[i].y.bytes) << "shard " << i;
      EXPECT_EQ(c[i].dx.bytes, cpp[i].dx.bytes) << "shard " << i;
      EXPECT_EQ(c[i].dweight, cpp[i].dweight) << "shard " << i;
      EXPECT_EQ(c[i].dbias, cpp[i].dbias) << "shard " << i;
      EXPECT_EQ(c[i].inv_rms, cpp[i].inv_rms) << "shard " << i;
    }
  }
}

}  // namespace
}  // namespace rmsnorm::testing
