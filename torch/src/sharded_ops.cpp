// SPEC section 9's phases as torch.ops.rmsnorm.shard_*: plain CPU kernels on
// 2-D [rows, local_n] tensors (this process's columns of every row), with
// float64 [rows, 3] sums between them. The all-reduce and the autograd
// Function live in Python (rmsnorm/distributed.py), over torch.distributed.
#include <torch/library.h>

#include <tuple>

#include "op_support.hpp"
#include "output_memory.hpp"
#include "sharded_ops.hpp"

namespace rmsnorm::torch {
namespace {

struct Rows {
  at::Tensor x;
  int64_t rows = 0, n = 0;
  DType dtype = DType::kFloat32;
};

Rows rows_of(const at::Tensor& input, const char* name) {
  TORCH_CHECK(input.dim() == 2, "rmsnorm: ", name, " must be 2-D [rows, local columns], got shape ", input.sizes());
  TORCH_CHECK(input.device().is_cpu(), "rmsnorm: the sharded phases take CPU tensors; ", name, " is on ",
              input.device());
  Rows r;
  r.x = input.contiguous();
  r.rows = input.size(0);
  r.n = input.size(1);
  r.dtype = engine_dtype(input, name);
  return r;
}

at::Tensor sums_of(const c10::optional<at::Tensor>& t, int64_t rows, const char* name) {
  if (!t.has_value() || !t->defined()) return at::Tensor();
  TORCH_CHECK(t->scalar_type() == at::kDouble && t->dim() == 2 && t->size(0) == rows && t->size(1) == kShardSumsPerRow,
              "rmsnorm: ", name, " must be float64 of shape [", rows, ", ", kShardSumsPerRow, "], got ",
              t->scalar_type(), " ", t->sizes());
  return t->contiguous();
}

const double* data_or_null(const at::Tensor& t) { return t.defined() ? t.data_ptr<double>() : nullptr; }

NormOptions options_of(bool layer_norm, double eps, double p, c10::string_view placement, double weight_offset) {
  NormOptions o = norm_options(layer_norm, eps, p, static_cast<int64_t>(parse_placement(placement)));
  o.weight_offset = weight_offset;
  return o;
}

at::Tensor stats_like(const Rows& r) {
  return at::empty({r.rows}, r.x.options().dtype(r.dtype == DType::kFloat64 ? at::kDouble : at::kFloat));
}

// The weight and bias in one engine dtype (float32 unless either is the input's).
std::pair<at::Tensor, at::Tensor> parameters(const c10::optional<at::Tensor>& weight,
                                             const c10::optional<at::Tensor>& bias, const at::Tensor& x, int64_t n) {
  at::Tensor w = engine_parameter(weight.value_or(at::Tensor()), x.scalar_type());
  at::Tensor b = engine_parameter(bias.value_or(at::Tensor()), x.scalar_type());
  for (const auto* param : {&w, &b}) {
    if (!param->defined()) continue;
    TORCH_CHECK(param->dim() == 1 && param->size(0) == n, "rmsnorm: ", param == &w ? "weight" : "bias",
                " must have this shard's width ", n, ", got shape ", param->sizes());
  }
  if (w.defined() && b.defined() && w.scalar_type() != b.scalar_type()) {
    w = w.to(x.scalar_type());
    b = b.to(x.scalar_type());
  }
  return {w, b};
}

ConstVector vector_of(const at::Tensor& t, const char* name) {
  return {t.defined() ? t.data_ptr() : nullptr, t.defined() ? engine_dtype(t, name) : DType::kFloat32};
}

}  // namespace

at::Tensor shard_forward_sums(const at::Tensor& input, int64_t global_n, int64_t column_begin, int64_t round,
                              const c10::optional<at::Tensor>& reduced0, bool layer_norm, double eps, double p,
                              c10::string_view eps_placement) {
  const Rows r = rows_of(input, "x");
  const at::Tensor round0 = sums_of(reduced0, r.rows, "reduced0");
  at::Tensor sums = at::empty({r.rows, kShardSumsPerRow}, r.x.options().dtype(at::kDouble));
  ShardForwardArgs a;
  a.rows = r.rows;
  a.n = r.n;
  a.shard = {global_n, column_begin};
  a.x = {r.x.data_ptr(), r.dtype, r.n};
  engine_call([&] {
    shard_forward_sums(options_of(layer_norm, eps, p, eps_placement, 0.0), a, static_cast<int>(round),
                       {data_or_null(round0), nullptr}, sums.data_ptr<double>());
  });
  return sums;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> shard_forward_apply(
    const at::Tensor& input, int64_t global_n, int64_t column_begin, const at::Tensor& reduced0,
    const c10::optional<at::Tensor>& reduced1, const c10::optional<at::Tensor>& weight,
    const c10::optional<at::Tensor>& bias, bool layer_norm, double eps, double p, c10::string_view eps_placement,
    double weight_offset) {
  const Rows r = rows_of(input, "x");
  const at::Tensor round0 = sums_of(reduced0, r.rows, "reduced0");
  const at::Tensor round1 = sums_of(reduced1, r.rows, "reduced1");
  const auto [w, b] = parameters(weight, bias, r.x, r.n);
  at::Tensor y = empty_output(r.x), inv_rms = stats_like(r), mean = stats_like(r);
  ShardForwardArgs a;
  a.rows = r.rows;
  a.n = r.n;
  a.shard = {global_n, column_begin};
  a.x = {r.x.data_ptr(), r.dtype, r.n};
  a.y = {y.data_ptr(), r.dtype, r.n};
  a.weight = vector_of(w, "weight");
  a.bias = vector_of(b, "bias");
  a.saved = {inv_rms.data_ptr(), layer_norm ? mean.data_ptr() : nullptr};
  if (!layer_norm) mean.zero_();
  engine_call([&] {
    shard_forward_apply(options_of(layer_norm, eps, p, eps_placement, weight_offset), a,
                        {data_or_null(round0), data_or_null(round1)});
  });
  return {y, inv_rms, mean};
}

namespace {

ShardBackwardArgs backward_args(const Rows& x, const Rows& dy, int64_t global_n, int64_t column_begin,
                                const at::Tensor& w, const at::Tensor& inv_rms, const at::Tensor& mean) {
  TORCH_CHECK(dy.rows == x.rows && dy.n == x.n, "rmsnorm: dy must have x's shape ", x.x.sizes(), ", got ",
              dy.x.sizes());
  const at::ScalarType stats = x.dtype == DType::kFloat64 ? at::kDouble : at::kFloat;
  for (const auto* s : {&inv_rms, &mean}) {
    TORCH_CHECK(s->scalar_type() == stats && s->numel() == x.rows && s->is_contiguous(), "rmsnorm: ",
                s == &inv_rms ? "inv_rms" : "mean", " must be the forward's saved ", stats, " [", x.rows, "], got ",
                s->scalar_type(), " ", s->sizes());
  }
  ShardBackwardArgs a;
  a.rows = x.rows;
  a.n = x.n;
  a.shard = {global_n, column_begin};
  a.x = {x.x.data_ptr(), x.dtype, x.n};
  a.dy = {dy.x.data_ptr(), dy.dtype, dy.n};
  a.weight = vector_of(w, "weight");
  a.saved = {inv_rms.data_ptr(), mean.data_ptr()};
  return a;
}

}  // namespace

at::Tensor shard_backward_sums(const at::Tensor& input, const at::Tensor& grad, int64_t global_n, int64_t column_begin,
                               const c10::optional<at::Tensor>& weight, const at::Tensor& inv_rms,
                               const at::Tensor& mean, bool layer_norm, double eps, double p,
                               c10::string_view eps_placement, double weight_offset) {
  const Rows x = rows_of(input, "x"), dy = rows_of(grad, "dy");
  const auto [w, b] = parameters(weight, c10::nullopt, x.x, x.n);
  at::Tensor sums = at::empty({x.rows, kShardSumsPerRow}, x.x.options().dtype(at::kDouble));
  const ShardBackwardArgs a = backward_args(x, dy, global_n, column_begin, w, inv_rms, mean);
  engine_call([&] {
    shard_backward_sums(options_of(layer_norm, eps, p, eps_placement, weight_offset), a, sums.data_ptr<double>());
  });
  return sums;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> shard_backward_apply(
    const at::Tensor& input, const at::Tensor& grad, int64_t global_n, int64_t column_begin,
    const c10::optional<at::Tensor>& weight, const at::Tensor& inv_rms, const at::Tensor& mean,
    const at::Tensor& reduced, bool layer_norm, double eps, double p, c10::string_view eps_placement,
    double weight_offset, bool weight_grad, bool bias_grad) {
  const Rows x = rows_of(input, "x"), dy = rows_of(grad, "dy");
  const auto [w, b] = parameters(weight, c10::nullopt, x.x, x.n);
  const at::Tensor sums = sums_of(reduced, x.rows, "reduced");
  at::Tensor dx = empty_output(x.x);
  at::Tensor dweight = weight_grad && w.defined() ? at::empty({x.n}, w.options()) : at::Tensor();
  at::Tensor dbias = bias_grad ? at::empty({x.n}, x.x.options().dtype(at::kFloat)) : at::Tensor();
  ShardBackwardArgs a = backward_args(x, dy, global_n, column_begin, w, inv_rms, mean);
  a.dx = {dx.data_ptr(), x.dtype, x.n};
  if (dweight.defined()) a.dweight = {dweight.data_ptr(), engine_dtype(dweight, "dweight")};
  if (dbias.defined()) a.dbias = {dbias.data_ptr(), DType::kFloat32};
  engine_call([&] {
    shard_backward_apply(options_of(layer_norm, eps, p, eps_placement, weight_offset), a, sums.data_ptr<double>());
  });
  return {dx, dweight, dbias};
}

}  // namespace rmsnorm::torch

TORCH_LIBRARY_FRAGMENT(rmsnorm, m) {
  m.def("shard_forward_sums(Tensor x, int global_n, int column_begin, int round, Tensor? reduced0, "
        "bool layer_norm, float eps, float p, str eps_placement) -> Tensor");
  m.def("shard_forward_apply(Tensor x, int global_n, int column_begin, Tensor reduced0, Tensor? reduced1, "
        "Tensor? weight, Tensor? bias, bool layer_norm, float eps, float p, str eps_placement, "
        "float weight_offset) -> (Tensor, Tensor, Tensor)");
  m.def("shard_backward_sums(Tensor x, Tensor dy, int global_n, int column_begin, Tensor? weight, Tensor inv_rms, "
        "Tensor mean, bool layer_norm, float eps, float p, str eps_placement, float weight_offset) -> Tensor");
  m.def("shard_backward_apply(Tensor x, Tensor dy, int global_n, int column_begin, Tensor? weight, "
        "Tensor inv_rms, Tensor mean, Tensor reduced, bool layer_norm, float eps, float p, str eps_placement, "
        "float weight_offset, bool weight_grad, bool bias_grad) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(rmsnorm, CPU, m) {
  m.impl("shard_forward_sums", &rmsnorm::torch::shard_forward_sums);
  m.impl("shard_forward_apply", &rmsnorm::torch::shard_forward_apply);
  m.impl("shard_backward_sums", &rmsnorm::torch::shard_backward_sums);
  m.impl("shard_backward_apply", &rmsnorm::torch::shard_backward_apply);
}
