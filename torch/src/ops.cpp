// The engine behind torch.ops.rmsnorm.*: argument checks in PyTorch's terms,
// tensors flattened to rows x n (non-contiguous inputs are copied), and an
// autograd::Function whose backward calls the engine's backward with the
// statistics saved by forward.
#include "rmsnorm/torch/ops.hpp"

#include <torch/library.h>
#include <torch/torch.h>

#include <cmath>
#include <optional>

#include "rmsnorm/rmsnorm.hpp"
#include "op_support.hpp"

#ifdef RMSNORM_TORCH_CUDA  // built against a CUDA LibTorch, with the CUDA backend
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "rmsnorm/cuda.hpp"
#endif

namespace rmsnorm::torch {
namespace {

// ---------------------------------------------------------------- devices

// rmsnorm::cuda::CALL in CUDA builds; never reached in the others.
#ifdef RMSNORM_TORCH_CUDA
#define RMSNORM_CUDA_CALL(call) rmsnorm::cuda::call
#else
#define RMSNORM_CUDA_CALL(call) (void)stream
#endif

// The engine on `on`'s device: the CPU engine, or the CUDA backend on
// PyTorch's current stream for that device (CUDA builds only).
template <class CpuCall, class CudaCall>
void on_device(const at::Tensor& on, CpuCall&& cpu, CudaCall&& gpu) {
#ifdef RMSNORM_TORCH_CUDA
  if (on.is_cuda()) {
    const c10::cuda::CUDAGuard guard(on.device());
    gpu(c10::cuda::getCurrentCUDAStream(on.device().index()).stream());
    return;
  }
#endif
  (void)gpu;
  cpu();
}

void check_device(const at::Tensor& input) {
#ifdef RMSNORM_TORCH_CUDA
  TORCH_CHECK(input.device().is_cpu() || input.device().is_cuda(), "rmsnorm: input is on ", input.device(),
              "; CPU and CUDA tensors are supported");
#else
  TORCH_CHECK(input.device().is_cpu(), "rmsnorm: input is on ", input.device(),
              "; only CPU tensors are supported by this build (built against a LibTorch without CUDA)");
#endif
}

using ::torch::autograd::AutogradContext;
using ::torch::autograd::tensor_list;


// The number of normalized elements per row, after checking normalized_shape
// against the input's trailing dimensions and the parameters' shapes.
int64_t checked_row_length(const at::Tensor& input, at::IntArrayRef normalized_shape, const at::Tensor& weight,
                           const at::Tensor& bias) {
  TORCH_CHECK(!normalized_shape.empty(), "rmsnorm: normalized_shape must name at least one dimension");
  const int64_t dims = static_cast<int64_t>(normalized_shape.size());
  TORCH_CHECK(input.dim() >= dims, "rmsnorm: normalized_shape ", normalized_shape, " has more dimensions than input ",
              input.sizes());
  const auto trailing = input.sizes().slice(input.dim() - dims);
  TORCH_CHECK(trailing == normalized_shape, "rmsnorm: normalized_shape ", normalized_shape,
              " must equal the input's trailing dimensions, got input of shape ", input.sizes());
  check_device(input);
  for (const auto* param : {&weight, &bias}) {
    if (!param->defined()) continue;
    const char* name = param == &weight ? "weight" : "bias";
    TORCH_CHECK(param->sizes() == normalized_shape, "rmsnorm: ", name, " must have shape normalized_shape ",
                normalized_shape, ", got ", param->sizes());
    TORCH_CHECK(param->device() == input.device(), "rmsnorm: ", name, " is on ", param->device(), ", input on ",
                input.device());
    engine_dtype(*param, name);
  }
  int64_t n = 1;
  for (int64_t d : normalized_shape) n *= d;
  return n;
}


// The engine's backward is not itself differentiable. Under create_graph=True
// its gradients pass through this node, which records the forward's inputs
// as their source, so that differentiating them again is an error rather
// than a gradient that silently has no graph (a gradient penalty would lose
// its term). As Python's @once_differentiable does, the error comes only
// when a second derivative is actually asked for.
struct NoDoubleBackward : public ::torch::autograd::Function<NoDoubleBackward> {
  // `gradients` are all defined (LibTorch 1.13 cannot record undefined outputs).
  static tensor_list forward(AutogradContext* /*ctx*/, tensor_list gradients, const at::Tensor& /*source*/) {
    tensor_list out;
    for (const at::Tensor& g : gradients) out.push_back(g.clone());
    return out;
  }
  static tensor_list backward(AutogradContext* /*ctx*/, tensor_list /*grad_outputs*/) {
    TORCH_CHECK(false,
                "rmsnorm: double backward (the gradient of a gradient of rms_norm/layer_norm) is not "
                "implemented; the first backward works with create_graph=True, but its result cannot be "
                "differentiated again. Use torch.nn.functional ops for gradient penalties.");
    return {};
  }
};

struct NormFunction : public ::torch::autograd::Function<NormFunction> {
  // weight and bias are optional: autograd's Function records an undefined
  // tensor argument as an input it cannot describe, an empty optional as none.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, std::vector<int64_t> normalized_shape,
                            const c10::optional<at::Tensor>& weight_opt, const c10::optional<at::Tensor>& bias_opt,
                            double eps, double p, int64_t placement, bool layer_norm) {
    const at::Tensor weight = weight_opt.value_or(at::Tensor());
    const at::Tensor bias = bias_opt.value_or(at::Tensor());
    const int64_t n = checked_row_length(input, normalized_shape, weight, bias);
    const DType dtype = engine_dtype(input, "input");
    const at::Tensor x = input.contiguous();
    const int64_t rows = n == 0 ? 0 : x.numel() / n;
    // Weight and bias share one dtype in the engine: float32 unless either is the input's.
    at::Tensor w = engine_parameter(weight, input.scalar_type());
    at::Tensor b = engine_parameter(bias, input.scalar_type());
    if (w.defined() && b.defined() && w.scalar_type() != b.scalar_type()) {
      w = w.to(input.scalar_type());
      b = b.to(input.scalar_type());
    }
    const at::ScalarType stats_type = input.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
    at::Tensor inv_rms = at::empty({rows}, x.options().dtype(stats_type));
    at::Tensor mean = layer_norm ? at::empty({rows}, x.options().dtype(stats_type)) : at::Tensor();
    at::Tensor y = at::empty_like(x);

    const NormOptions options = norm_options(layer_norm, eps, p, placement);
    const DType param_dtype = w.defined() ? engine_dtype(w, "weight") : b.defined() ? engine_dtype(b, "bias") : DType::kFloat32;
    ForwardArgs a;
    a.rows = rows;
    a.n = n;
    a.x = {x.data_ptr(), dtype, n};
    a.y = {y.data_ptr(), dtype, n};
    a.weight = {w.defined() ? w.data_ptr() : nullptr, param_dtype};
    a.bias = {b.defined() ? b.data_ptr() : nullptr, param_dtype};
    a.saved = {inv_rms.data_ptr(), mean.defined() ? mean.data_ptr() : nullptr};
    engine_call([&] {
      on_device(
          x, [&] { rmsnorm::forward(options, a); }, [&](auto stream) { RMSNORM_CUDA_CALL(forward(options, a, stream)); });
    });

    ctx->save_for_backward({x, w, inv_rms, mean});
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["p"] = p;
    ctx->saved_data["placement"] = placement;
    ctx->saved_data["layer_norm"] = layer_norm;
    ctx->saved_data["n"] = n;
    ctx->saved_data["normalized_shape"] = normalized_shape;
    ctx->saved_data["input_shape"] = input.sizes().vec();
    ctx->saved_data["has_bias"] = bias.defined();
    ctx->saved_data["weight_type"] = weight.defined() ? static_cast<int64_t>(weight.scalar_type()) : int64_t{-1};
    ctx->saved_data["bias_type"] = bias.defined() ? static_cast<int64_t>(bias.scalar_type()) : int64_t{-1};
    return y.view(input.sizes());
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& w = saved[1];
    const at::Tensor& inv_rms = saved[2];
    const at::Tensor& mean = saved[3];
    const bool layer_norm = ctx->saved_data["layer_norm"].toBool();
    const int64_t n = ctx->saved_data["n"].toInt();
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const int64_t rows = n == 0 ? 0 : x.numel() / n;
    const DType dtype = engine_dtype(x, "input");

    const at::Tensor dy = grad_outputs[0].to(x.scalar_type()).contiguous();
    at::Tensor dx = at::empty_like(x);
    // needs_input_grad counts tensor inputs only: input, then weight and bias when given.
    const bool want_dweight = w.defined() && ctx->needs_input_grad(1);
    const bool want_dbias = has_bias && ctx->needs_input_grad(w.defined() ? 2 : 1);
    at::Tensor dweight = want_dweight ? at::empty({n}, w.options()) : at::Tensor();
    // dbias: float32, or float64 for float64 data (the engine takes either).
    const DType dbias_dtype = dtype == DType::kFloat64 ? DType::kFloat64 : DType::kFloat32;
    at::Tensor dbias = want_dbias
                           ? at::empty({n}, x.options().dtype(dtype == DType::kFloat64 ? at::kDouble : at::kFloat))
                           : at::Tensor();

    const NormOptions options =
        norm_options(layer_norm, ctx->saved_data["eps"].toDouble(), ctx->saved_data["p"].toDouble(),
                     ctx->saved_data["placement"].toInt());
    BackwardArgs a;
    a.rows = rows;
    a.n = n;
    a.x = {x.data_ptr(), dtype, n};
    a.dy = {dy.data_ptr(), dtype, n};
    a.weight = {w.defined() ? w.data_ptr() : nullptr, w.defined() ? engine_dtype(w, "weight") : DType::kFloat32};
    a.saved = {inv_rms.data_ptr(), mean.defined() ? mean.data_ptr() : nullptr};
    a.dx = {dx.data_ptr(), dtype, n};
    a.dweight = {want_dweight ? dweight.data_ptr() : nullptr, w.defined() ? engine_dtype(w, "weight") : DType::kFloat32};
    a.dbias = {want_dbias ? dbias.data_ptr() : nullptr, dbias_dtype};
    engine_call([&] {
      on_device(
          x, [&] { rmsnorm::backward(options, a); }, [&](auto stream) { RMSNORM_CUDA_CALL(backward(options, a, stream)); });
    });

    // Gradients in the parameters' own dtypes and shapes.
    const auto shape_of_params = ctx->saved_data["normalized_shape"].toIntVector();
    auto as_param = [&](const at::Tensor& g, const char* type_key) {
      if (!g.defined()) return g;
      const auto type = static_cast<at::ScalarType>(ctx->saved_data[type_key].toInt());
      return g.to(type).view(shape_of_params);
    };
    const auto input_shape = ctx->saved_data["input_shape"].toIntVector();
    tensor_list grads{dx.view(input_shape), as_param(dweight, "weight_type"), as_param(dbias, "bias_type")};
    // create_graph=True runs backward with grad mode on: see NoDoubleBackward.
    if (at::GradMode::is_enabled() && (x.requires_grad() || (w.defined() && w.requires_grad()) ||
                                       grad_outputs[0].requires_grad())) {
      const at::Tensor source = grad_outputs[0].requires_grad() ? grad_outputs[0] : x.requires_grad() ? x : w;
      tensor_list defined;
      for (const at::Tensor& g : grads)
        if (g.defined()) defined.push_back(g);
      const tensor_list recorded = NoDoubleBackward::apply(defined, source);
      size_t next = 0;
      for (at::Tensor& g : grads)
        if (g.defined()) g = recorded[next++];
    }
    return {grads[0], at::Tensor(), grads[1], grads[2], at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor apply_norm(const at::Tensor& input, at::IntArrayRef normalized_shape,
                      const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias, double eps,
                      double p, EpsPlacement placement, bool layer_norm) {
  TORCH_CHECK(std::isfinite(eps) && eps >= 0, "rmsnorm: eps must be finite and >= 0, got ", eps);
  TORCH_CHECK(p > 0 && p <= 1, "rmsnorm: p must be in (0, 1], got ", p);
  auto present = [](const c10::optional<at::Tensor>& t) {
    return t.has_value() && t->defined() ? t : c10::optional<at::Tensor>();
  };
  return NormFunction::apply(input, normalized_shape.vec(), present(weight), present(bias), eps, p,
                             static_cast<int64_t>(placement), layer_norm);
}

}  // namespace

at::Tensor rms_norm(const at::Tensor& input, at::IntArrayRef normalized_shape, const c10::optional<at::Tensor>& weight,
                    const c10::optional<at::Tensor>& bias, double eps, double p, c10::string_view eps_placement) {
  return apply_norm(input, normalized_shape, weight, bias, eps, p, parse_placement(eps_placement), false);
}

at::Tensor layer_norm(const at::Tensor& input, at::IntArrayRef normalized_shape,
                      const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias, double eps) {
  return apply_norm(input, normalized_shape, weight, bias, eps, 1.0, EpsPlacement::kInside, true);
}

void fused_add_rms_norm(at::Tensor& input, at::Tensor& residual, const at::Tensor& weight, double eps) {
  TORCH_CHECK(!(at::GradMode::is_enabled() && (input.requires_grad() || residual.requires_grad())),
              "rmsnorm: fused_add_rms_norm works in place for inference and is not differentiable; use rms_norm "
              "(after adding the residual) for training, or call it under torch.no_grad()");
  TORCH_CHECK(input.sizes() == residual.sizes(), "rmsnorm: input ", input.sizes(), " and residual ",
              residual.sizes(), " must have the same shape");
  TORCH_CHECK(input.scalar_type() == residual.scalar_type(), "rmsnorm: input (", input.scalar_type(),
              ") and residual (", residual.scalar_type(), ") must have the same dtype");
  TORCH_CHECK(input.dim() >= 1, "rmsnorm: input must have at least one dimension");
  TORCH_CHECK(input.is_contiguous() && residual.is_contiguous(),
              "rmsnorm: fused_add_rms_norm updates input and residual in place; both must be contiguous");
  const int64_t n = input.size(-1);
  checked_row_length(input, {n}, weight, at::Tensor());
  const DType dtype = engine_dtype(input, "input");
  const at::Tensor w = engine_parameter(weight, input.scalar_type());
  NormOptions options;
  options.eps = eps;
  options.num_threads = at::get_num_threads();
  FusedAddArgs a;
  a.rows = n == 0 ? 0 : input.numel() / n;
  a.n = n;
  a.x = {input.data_ptr(), dtype, n};
  a.residual = {residual.data_ptr(), dtype, n};
  a.y = {input.data_ptr(), dtype, n};
  a.weight = {w.data_ptr(), engine_dtype(w, "weight")};
  engine_call([&] {
    on_device(
        input, [&] { rmsnorm::fused_add_forward(options, a); },
        [&](auto stream) { RMSNORM_CUDA_CALL(fused_add_forward(options, a, stream)); });
  });
}

// The schema's `Tensor(a!)` arguments arrive as non-const references.
void fused_add_rms_norm_op(at::Tensor& input, at::Tensor& residual, const at::Tensor& weight, double eps) {
  fused_add_rms_norm(input, residual, weight, eps);
}

}  // namespace rmsnorm::torch

TORCH_LIBRARY(rmsnorm, m) {
  m.def("rms_norm(Tensor input, int[] normalized_shape, Tensor? weight, Tensor? bias, float eps, float p, "
        "str eps_placement) -> Tensor");
  m.def("layer_norm(Tensor input, int[] normalized_shape, Tensor? weight, Tensor? bias, float eps) -> Tensor");
  m.def("fused_add_rms_norm(Tensor(a!) input, Tensor(b!) residual, Tensor weight, float eps) -> ()");
}

// The norms carry their own autograd (NormFunction), so they are registered
// for CompositeImplicitAutograd: the dispatcher calls them for every backend
// and autograd records the Function.
TORCH_LIBRARY_IMPL(rmsnorm, CompositeImplicitAutograd, m) {
  m.impl("rms_norm", &rmsnorm::torch::rms_norm);
  m.impl("layer_norm", &rmsnorm::torch::layer_norm);
  m.impl("fused_add_rms_norm", &rmsnorm::torch::fused_add_rms_norm_op);
}

