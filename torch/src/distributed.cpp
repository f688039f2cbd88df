// The C++ tensor-parallel norm: the engine's sharded phases (sharded_ops.cpp)
// with an all-gather between them, as an autograd Function.
#include "rmsnorm/torch/distributed.hpp"

#include <torch/torch.h>

#include <numeric>

#include "sharded_ops.hpp"

namespace rmsnorm::torch {
namespace {

using ::torch::autograd::AutogradContext;
using ::torch::autograd::tensor_list;
using Group = c10::intrusive_ptr<c10d::ProcessGroup>;

// Every rank's sums, added in rank order: the same total on every rank.
at::Tensor sum_in_rank_order(const at::Tensor& sums, const Group& group) {
  if (group->getSize() == 1) return sums;
  std::vector<std::vector<at::Tensor>> outputs(1);
  for (int r = 0; r < group->getSize(); ++r) outputs[0].push_back(at::empty_like(sums));
  std::vector<at::Tensor> inputs{sums.contiguous()};
  group->allgather(outputs, inputs)->wait();
  at::Tensor total = at::zeros_like(sums);
  for (const at::Tensor& part : outputs[0]) total.add_(part);
  return total;
}

struct Settings {
  int64_t global_n, column_begin;
  bool layer_norm;
  double eps, p;
  std::string eps_placement;
  double weight_offset;
};

Settings settings_of(AutogradContext* ctx) {
  const auto& d = ctx->saved_data;
  return {d.at("global_n").toInt(),  d.at("column_begin").toInt(),          d.at("layer_norm").toBool(),
          d.at("eps").toDouble(),    d.at("p").toDouble(),                  d.at("eps_placement").toStringRef(),
          d.at("weight_offset").toDouble()};
}

struct ShardedNormFunction : public ::torch::autograd::Function<ShardedNormFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                            const c10::optional<at::Tensor>& bias, int64_t global_n, int64_t column_begin,
                            bool layer_norm, double eps, double p, std::string eps_placement, double weight_offset,
                            Group group) {
    const at::Tensor rows = x.reshape({-1, x.size(-1)}).contiguous();
    const at::Tensor round0 = sum_in_rank_order(
        shard_forward_sums(rows, global_n, column_begin, 0, c10::nullopt, layer_norm, eps, p, eps_placement), group);
    c10::optional<at::Tensor> round1;
    if (layer_norm) {
      round1 = sum_in_rank_order(
          shard_forward_sums(rows, global_n, column_begin, 1, round0, layer_norm, eps, p, eps_placement), group);
    }
    auto [y, inv_rms, mean] = shard_forward_apply(rows, global_n, column_begin, round0, round1, weight, bias,
                                                  layer_norm, eps, p, eps_placement, weight_offset);
    ctx->save_for_backward({rows, weight.value_or(at::Tensor()), inv_rms, mean});
    ctx->saved_data["global_n"] = global_n;
    ctx->saved_data["column_begin"] = column_begin;
    ctx->saved_data["layer_norm"] = layer_norm;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["p"] = p;
    ctx->saved_data["eps_placement"] = eps_placement;
    ctx->saved_data["weight_offset"] = weight_offset;
    ctx->saved_data["has_bias"] = bias.has_value() && bias->defined();
    ctx->saved_data["group"] = at::IValue::make_capsule(group);
    ctx->saved_data["shape"] = x.sizes().vec();
    return y.reshape(x.sizes());
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& rows = saved[0];
    const at::Tensor& weight = saved[1];
    const Settings s = settings_of(ctx);
    const Group group = c10::static_intrusive_pointer_cast<c10d::ProcessGroup>(ctx->saved_data["group"].toCapsule());
    const at::Tensor dy = grads[0].reshape({-1, rows.size(1)}).to(rows.scalar_type()).contiguous();
    const c10::optional<at::Tensor> w = weight.defined() ? c10::optional<at::Tensor>(weight) : c10::nullopt;
    const at::Tensor reduced = sum_in_rank_order(
        shard_backward_sums(rows, dy, s.global_n, s.column_begin, w, saved[2], saved[3], s.layer_norm, s.eps, s.p,
                            s.eps_placement, s.weight_offset),
        group);
    const bool want_weight = weight.defined() && ctx->needs_input_grad(1);
    const bool want_bias = ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2);
    auto [dx, dweight, dbias] =
        shard_backward_apply(rows, dy, s.global_n, s.column_begin, w, saved[2], saved[3], reduced, s.layer_norm, s.eps,
                             s.p, s.eps_placement, s.weight_offset, want_weight, want_bias);
    tensor_list out(11);
    out[0] = dx.reshape(ctx->saved_data["shape"].toIntVector());
    if (want_weight) out[1] = dweight.to(weight.scalar_type());
    if (want_bias) out[2] = dbias;
    return out;
  }
};

}  // namespace

std::vector<int64_t> even_split(int64_t global_hidden, int64_t world_size) {
  TORCH_CHECK(world_size >= 1, "rmsnorm: the group has ", world_size, " ranks; expected at least 1");
  std::vector<int64_t> widths;
  for (int64_t r = 0; r < world_size; ++r) widths.push_back(global_hidden / world_size + (r < global_hidden % world_size));
  return widths;
}

at::Tensor sharded_norm(const at::Tensor& x, int64_t global_n, int64_t column_begin,
                        const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
                        bool layer_norm, double eps, double p, const std::string& eps_placement, double weight_offset,
                        const c10::intrusive_ptr<c10d::ProcessGroup>& group) {
  TORCH_CHECK(group, "rmsnorm: sharded_norm needs a process group");
  return ShardedNormFunction::apply(x, weight, bias, global_n, column_begin, layer_norm, eps, p, eps_placement,
                                    weight_offset, group);
}

ShardedNormOptions::ShardedNormOptions(int64_t global_hidden, c10::intrusive_ptr<c10d::ProcessGroup> group)
    : global_hidden_(global_hidden), group_(std::move(group)) {}

ShardedNormImpl::ShardedNormImpl(ShardedNormOptions options_) : options(std::move(options_)) {
  const Group& group = options.group();
  TORCH_CHECK(group, "rmsnorm: ShardedNorm needs a process group");
  const int64_t world = group->getSize(), rank = group->getRank();
  if (options.local_hidden() == 0) options.local_hidden(even_split(options.global_hidden(), world)[rank]);
  // Every rank learns every width, so a mismatch is the same error on every rank, not a hang.
  std::vector<std::vector<at::Tensor>> widths(1);
  for (int64_t r = 0; r < world; ++r) widths[0].push_back(at::empty({1}, at::kLong));
  std::vector<at::Tensor> mine{at::full({1}, options.local_hidden(), at::kLong)};
  group->allgather(widths, mine)->wait();
  int64_t total = 0, smallest = options.global_hidden();
  std::string listed;
  for (int64_t r = 0; r < world; ++r) {
    const int64_t w = widths[0][r].item<int64_t>();
    total += w;
    smallest = std::min(smallest, w);
    if (r < rank) column_begin += w;
    listed += (r ? ", " : "") + std::to_string(w);
  }
  TORCH_CHECK(total == options.global_hidden() && smallest >= 1, "rmsnorm: the ranks' widths [", listed,
              "] must be >= 1 and add up to global_hidden = ", options.global_hidden(), ", but add up to ", total);
  weight = register_parameter("weight", ::torch::full({options.local_hidden()}, options.weight_offset() != 0 ? 0.0 : 1.0));
  if (options.layer_norm() && options.bias()) bias = register_parameter("bias", ::torch::zeros({options.local_hidden()}));
}

at::Tensor ShardedNormImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.size(-1) == options.local_hidden(), "rmsnorm: input's last dimension is ", x.size(-1),
              "; this rank holds ", options.local_hidden(), " columns [", column_begin, ", ",
              column_begin + options.local_hidden(), ") of ", options.global_hidden());
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == options.local_hidden(), "rmsnorm: weight has shape ",
              weight.sizes(), "; expected this rank's width (", options.local_hidden(), ")");
  return sharded_norm(x, options.global_hidden(), column_begin, weight,
                      bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt, options.layer_norm(),
                      options.eps(), options.p(), options.eps_placement(), options.weight_offset(), options.group());
}

}  // namespace rmsnorm::torch
