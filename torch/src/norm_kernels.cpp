// The kernels behind torch.ops.rmsnorm.*_forward / *_backward and the out=
// and in-place forms, registered for CPU (and CUDA in CUDA builds) and for
// Meta. Each op is one function that checks its arguments and allocates its
// outputs, then runs the engine only when it has data: the Meta kernel is the
// same function stopped before the engine, so shapes, dtypes and errors agree
// between a meta tensor and a real one.
#include <torch/library.h>

#include <array>
#include <limits>
#include <tuple>

#include "norm_layout.hpp"
#include "op_support.hpp"
#include "output_memory.hpp"
#include "rmsnorm/rmsnorm.hpp"

#ifdef RMSNORM_TORCH_CUDA  // built against a CUDA LibTorch, with the CUDA backend
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "rmsnorm/cuda.hpp"
#endif

namespace rmsnorm::torch {
namespace {

using Mask = std::array<bool, 3>;
using Pair = std::tuple<at::Tensor, at::Tensor>;
using Triple = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

// Whether a kernel runs the engine (CPU, CUDA) or stops after its checks and
// allocations (Meta).
enum class Run { kEngine, kShapesOnly };

// ---------------------------------------------------------------- devices

// rmsnorm::cuda::CALL in CUDA builds; never reached in the others.
#ifdef RMSNORM_TORCH_CUDA
#define RMSNORM_CUDA_CALL(call) rmsnorm::cuda::call
#else
#define RMSNORM_CUDA_CALL(call) (void)stream
#endif

void check_device(const at::Tensor& input) {
#ifdef RMSNORM_TORCH_CUDA
  TORCH_CHECK(input.device().is_cpu() || input.device().is_cuda(), "rmsnorm: input is on ", input.device(),
              "; CPU and CUDA tensors are supported");
#else
  TORCH_CHECK(input.device().is_cpu(), "rmsnorm: input is on ", input.device(),
              "; only CPU tensors are supported by this build (built against a LibTorch without CUDA)");
#endif
}

// The engine on `on`'s device: the CPU engine, or the CUDA backend on
// PyTorch's current stream for that device (CUDA builds only). Engine errors
// become PyTorch errors.
template <class CpuCall, class CudaCall>
void on_device(const at::Tensor& on, CpuCall&& cpu, CudaCall&& gpu) {
  check_device(on);
  engine_call([&] {
#ifdef RMSNORM_TORCH_CUDA
    if (on.is_cuda()) {
      const c10::cuda::CUDAGuard guard(on.device());
      gpu(c10::cuda::getCurrentCUDAStream(on.device().index()).stream());
      return;
    }
#endif
    (void)gpu;
    cpu();
  });
}

// ---------------------------------------------------------------- arguments

// Weight and bias as the engine takes them: one dtype, float32 unless either
// is the input's dtype.
struct EngineParameters {
  at::Tensor weight, bias;
  DType dtype = DType::kFloat32;
};

EngineParameters engine_parameters(const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
                                   const at::Tensor& input) {
  EngineParameters p;
  p.weight = engine_parameter(weight.value_or(at::Tensor()), input.scalar_type());
  p.bias = engine_parameter(bias.value_or(at::Tensor()), input.scalar_type());
  if (p.weight.defined() && p.bias.defined() && p.weight.scalar_type() != p.bias.scalar_type()) {
    p.weight = p.weight.to(input.scalar_type());
    p.bias = p.bias.to(input.scalar_type());
  }
  const at::Tensor& any = p.weight.defined() ? p.weight : p.bias;
  if (any.defined()) p.dtype = engine_dtype(any, "weight");
  return p;
}

ConstVector const_vector(const at::Tensor& t, DType dtype) { return {t.defined() ? t.data_ptr() : nullptr, dtype}; }
ConstMatrix const_matrix(const at::Tensor& t, int64_t n) { return {t.data_ptr(), engine_dtype(t, "input"), n}; }
Matrix matrix(const at::Tensor& t, int64_t n) { return {t.data_ptr(), engine_dtype(t, "output"), n}; }

// An out= tensor: input's dtype and device, contiguous; resized when empty
// (as PyTorch's out= ops do), otherwise of input's shape.
void check_out(at::Tensor& out, const at::Tensor& input) {
  TORCH_CHECK(out.scalar_type() == input.scalar_type(), "rmsnorm: out must have input's dtype ", input.scalar_type(),
              ", got ", out.scalar_type());
  TORCH_CHECK(out.device() == input.device(), "rmsnorm: out is on ", out.device(), ", input on ", input.device());
  if (out.numel() == 0 && out.sizes() != input.sizes()) out.resize_(input.sizes());
  TORCH_CHECK(out.sizes() == input.sizes(), "rmsnorm: out must have input's shape ", input.sizes(), ", got ",
              out.sizes());
  TORCH_CHECK(out.is_contiguous(), "rmsnorm: out must be contiguous");
}

// A row of no elements has no statistic.
void fill_undefined_statistics(std::initializer_list<at::Tensor*> stats) {
  for (at::Tensor* s : stats)
    if (s->defined()) s->fill_(std::numeric_limits<double>::quiet_NaN());
}

// Gradients of the parameters in their own dtypes and shapes.
at::Tensor as_parameter(const at::Tensor& grad, const c10::optional<at::Tensor>& param) {
  if (!grad.defined()) return grad;
  return grad.to(param->scalar_type()).view(param->sizes());
}

// ---------------------------------------------------------------- forward

// RMSNorm or LayerNorm forward of input into y (contiguous, input's shape),
// with the statistics written to inv_rms (and mean for LayerNorm).
void forward_into(const at::Tensor& input, const NormLayout& layout, const c10::optional<at::Tensor>& weight,
                  const c10::optional<at::Tensor>& bias, const NormOptions& options, at::Tensor& y,
                  at::Tensor& inv_rms, at::Tensor& mean) {
  if (layout.rows == 0) return;
  if (layout.n == 0) return fill_undefined_statistics({&inv_rms, &mean});
  const at::Tensor x = input.contiguous();
  const EngineParameters params = engine_parameters(weight, bias, input);
  ForwardArgs a;
  a.rows = layout.rows;
  a.n = layout.n;
  a.x = const_matrix(x, layout.n);
  a.y = matrix(y, layout.n);
  a.weight = const_vector(params.weight, params.dtype);
  a.bias = const_vector(params.bias, params.dtype);
  a.saved = {inv_rms.defined() ? inv_rms.data_ptr() : nullptr, mean.defined() ? mean.data_ptr() : nullptr};
  on_device(
      x, [&] { rmsnorm::forward(options, a); }, [&](auto stream) { RMSNORM_CUDA_CALL(forward(options, a, stream)); });
}

template <Run kRun>
Pair rms_norm_forward(const at::Tensor& input, at::IntArrayRef normalized_shape, const c10::optional<at::Tensor>& weight,
                      const c10::optional<at::Tensor>& bias, double eps, double p, c10::string_view eps_placement,
                      double weight_offset, c10::string_view rounding) {
  const NormLayout layout = norm_layout(input, normalized_shape, weight, bias);
  check_settings(eps, p, weight_offset, present(weight));
  const NormOptions options = norm_options(false, eps, p, static_cast<int64_t>(parse_placement(eps_placement)),
                                           weight_offset, parse_rounding(rounding));
  at::Tensor y = empty_output(input), inv_rms = empty_statistics(input, layout), mean;
  if constexpr (kRun == Run::kEngine) forward_into(input, layout, weight, bias, options, y, inv_rms, mean);
  return {y, inv_rms};
}

template <Run kRun>
Triple layer_norm_forward(const at::Tensor& input, at::IntArrayRef normalized_shape,
                          const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias, double eps,
                          double weight_offset, c10::string_view rounding) {
  const NormLayout layout = norm_layout(input, normalized_shape, weight, bias);
  check_settings(eps, 1.0, weight_offset, present(weight));
  const NormOptions options =
      norm_options(true, eps, 1.0, static_cast<int64_t>(EpsPlacement::kInside), weight_offset, parse_rounding(rounding));
  at::Tensor y = empty_output(input), mean = empty_statistics(input, layout), inv_rms = empty_statistics(input, layout);
  if constexpr (kRun == Run::kEngine) forward_into(input, layout, weight, bias, options, y, inv_rms, mean);
  return {y, mean, inv_rms};
}

// out= and in-place forms: the output only (no statistics: these are the
// inference forms, and the Autograd kernel refuses them under grad).
template <Run kRun>
at::Tensor& rms_norm_out(const at::Tensor& input, at::IntArrayRef normalized_shape,
                         const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
                         c10::optional<double> eps, double p, c10::string_view eps_placement, double weight_offset,
                         c10::string_view rounding, at::Tensor& out) {
  const NormLayout layout = norm_layout(input, normalized_shape, weight, bias);
  const double e = eps.value_or(default_rms_eps(input));
  check_settings(e, p, weight_offset, present(weight));
  const NormOptions options = norm_options(false, e, p, static_cast<int64_t>(parse_placement(eps_placement)),
                                           weight_offset, parse_rounding(rounding));
  check_out(out, input);
  at::Tensor none;
  if constexpr (kRun == Run::kEngine) forward_into(input, layout, weight, bias, options, out, none, none);
  return out;
}

template <Run kRun>
at::Tensor& rms_norm_inplace(at::Tensor& input, at::IntArrayRef normalized_shape,
                             const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
                             c10::optional<double> eps, double p, c10::string_view eps_placement, double weight_offset,
                             c10::string_view rounding) {
  TORCH_CHECK(input.is_contiguous(), "rmsnorm: rms_norm_ works in place on a contiguous input");
  return rms_norm_out<kRun>(input, normalized_shape, weight, bias, eps, p, eps_placement, weight_offset, rounding, input);
}

template <Run kRun>
at::Tensor& layer_norm_out(const at::Tensor& input, at::IntArrayRef normalized_shape,
                           const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias, double eps,
                           double weight_offset, c10::string_view rounding, at::Tensor& out) {
  const NormLayout layout = norm_layout(input, normalized_shape, weight, bias);
  check_settings(eps, 1.0, weight_offset, present(weight));
  const NormOptions options =
      norm_options(true, eps, 1.0, static_cast<int64_t>(EpsPlacement::kInside), weight_offset, parse_rounding(rounding));
  check_out(out, input);
  at::Tensor none;
  if constexpr (kRun == Run::kEngine) forward_into(input, layout, weight, bias, options, out, none, none);
  return out;
}

template <Run kRun>
at::Tensor& layer_norm_inplace(at::Tensor& input, at::IntArrayRef normalized_shape,
                               const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
                               double eps, double weight_offset, c10::string_view rounding) {
  TORCH_CHECK(input.is_contiguous(), "rmsnorm: layer_norm_ works in place on a contiguous input");
  return layer_norm_out<kRun>(input, normalized_shape, weight, bias, eps, weight_offset, rounding, input);
}

// ---------------------------------------------------------------- backward

// The gradient outputs asked for by output_mask (dx, dweight, dbias), with
// dweight and dbias in the engine's dtypes (the caller converts them).
struct Gradients {
  at::Tensor dx, dweight, dbias;
};

Gradients empty_gradients(const at::Tensor& input, const NormLayout& layout, const EngineParameters& params,
                          const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
                          const Mask& mask) {
  Gradients g;
  g.dx = empty_output(input);  // the engine always writes dx
  if (mask[1] && present(weight)) g.dweight = at::empty({layout.n}, params.weight.defined() ? params.weight.options() : weight->options());
  // dbias: float32, or float64 for float64 data (the engine takes either).
  if (mask[2] && present(bias)) g.dbias = at::empty({layout.n}, input.options().dtype(statistics_type(input.scalar_type())));
  return g;
}

Triple finish_gradients(Gradients g, const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
                        const Mask& mask) {
  return {mask[0] ? g.dx : at::Tensor(), as_parameter(g.dweight, weight), as_parameter(g.dbias, bias)};
}

// Backward of RMSNorm (mean undefined) or LayerNorm.
template <Run kRun>
Triple norm_backward(const at::Tensor& grad_y, const at::Tensor& input, at::IntArrayRef normalized_shape,
                     const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
                     const at::Tensor& mean, const at::Tensor& inv_rms, const NormOptions& options, const Mask& mask) {
  const NormLayout layout = norm_layout(input, normalized_shape, weight, bias);
  check_like(grad_y, input, "grad_y", "input");
  check_statistics(inv_rms, input, layout.rows, "inv_rms");
  if (mean.defined()) check_statistics(mean, input, layout.rows, "mean");
  const EngineParameters params = kRun == Run::kEngine ? engine_parameters(weight, bias, input) : EngineParameters{};
  Gradients g = empty_gradients(input, layout, params, weight, bias, mask);
  if (kRun == Run::kShapesOnly) return finish_gradients(g, weight, bias, mask);
  if (layout.rows == 0 || layout.n == 0) {
    if (g.dweight.defined()) g.dweight.zero_();
    if (g.dbias.defined()) g.dbias.zero_();
    return finish_gradients(g, weight, bias, mask);
  }
  const at::Tensor x = input.contiguous();
  const at::Tensor dy = grad_y.to(input.scalar_type()).contiguous();
  const at::Tensor inv = inv_rms.contiguous(), mu = mean.defined() ? mean.contiguous() : mean;
  BackwardArgs a;
  a.rows = layout.rows;
  a.n = layout.n;
  a.x = const_matrix(x, layout.n);
  a.dy = const_matrix(dy, layout.n);
  a.weight = const_vector(params.weight, params.dtype);
  a.saved = {inv.data_ptr(), mu.defined() ? mu.data_ptr() : nullptr};
  a.dx = matrix(g.dx, layout.n);
  a.dweight = {g.dweight.defined() ? g.dweight.data_ptr() : nullptr, params.dtype};
  a.dbias = {g.dbias.defined() ? g.dbias.data_ptr() : nullptr, engine_dtype(input, "input") == DType::kFloat64 ? DType::kFloat64 : DType::kFloat32};
  on_device(
      x, [&] { rmsnorm::backward(options, a); }, [&](auto stream) { RMSNORM_CUDA_CALL(backward(options, a, stream)); });
  return finish_gradients(g, weight, bias, mask);
}

template <Run kRun>
Triple rms_norm_backward(const at::Tensor& grad_y, const at::Tensor& input, at::IntArrayRef normalized_shape,
                         const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
                         const at::Tensor& inv_rms, double eps, double p, c10::string_view eps_placement,
                         double weight_offset, Mask mask) {
  check_settings(eps, p, weight_offset, present(weight));
  const NormOptions options =
      norm_options(false, eps, p, static_cast<int64_t>(parse_placement(eps_placement)), weight_offset);
  return norm_backward<kRun>(grad_y, input, normalized_shape, weight, bias, at::Tensor(), inv_rms, options, mask);
}

template <Run kRun>
Triple layer_norm_backward(const at::Tensor& grad_y, const at::Tensor& input, at::IntArrayRef normalized_shape,
                           const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
                           const at::Tensor& mean, const at::Tensor& inv_rms, double eps, double weight_offset,
                           Mask mask) {
  check_settings(eps, 1.0, weight_offset, present(weight));
  const NormOptions options = norm_options(true, eps, 1.0, static_cast<int64_t>(EpsPlacement::kInside), weight_offset);
  return norm_backward<kRun>(grad_y, input, normalized_shape, weight, bias, mean, inv_rms, options, mask);
}

// ---------------------------------------------------------------- fused residual add (SPEC section 8)

void check_residual(const at::Tensor& residual, const at::Tensor& input) {
  check_like(residual, input, "residual", "input");
  TORCH_CHECK(residual.scalar_type() == input.scalar_type(), "rmsnorm: residual must have input's dtype ",
              input.scalar_type(), ", got ", residual.scalar_type());
}

// (y, h, inv_rms): h = input + residual rounded to their dtype (the new
// residual stream), y = rms_norm(h). Functional: residual is not modified.
// h is formed by at::add (one pass: read both, write h; the same rounding as
// the engine's fused add) and then normalized: five matrix passes. Copying
// residual into h for the engine's in-place fused add would take six; an
// engine form that reads residual and writes h elsewhere would take four.
template <Run kRun>
Triple add_rms_norm_forward(const at::Tensor& input, const at::Tensor& residual, at::IntArrayRef normalized_shape,
                            const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias, double eps,
                            double p, c10::string_view eps_placement, double weight_offset,
                            c10::string_view rounding) {
  const NormLayout layout = norm_layout(input, normalized_shape, weight, bias);
  check_residual(residual, input);
  check_settings(eps, p, weight_offset, present(weight));
  const NormOptions options = norm_options(false, eps, p, static_cast<int64_t>(parse_placement(eps_placement)),
                                           weight_offset, parse_rounding(rounding));
  at::Tensor y = empty_output(input), inv_rms = empty_statistics(input, layout), mean;
  if (kRun == Run::kShapesOnly) return {y, empty_output(input), inv_rms};
  at::Tensor h = at::add(input, residual).contiguous();
  forward_into(h, layout, weight, bias, options, y, inv_rms, mean);
  return {y, h, inv_rms};
}

// (dh, dweight, dbias): dh = rms_norm's input gradient + grad_h, the gradient
// of both input and residual.
template <Run kRun>
Triple add_rms_norm_backward(const at::Tensor& grad_y, const c10::optional<at::Tensor>& grad_h, const at::Tensor& h,
                             at::IntArrayRef normalized_shape, const c10::optional<at::Tensor>& weight,
                             const c10::optional<at::Tensor>& bias, const at::Tensor& inv_rms, double eps, double p,
                             c10::string_view eps_placement, double weight_offset, Mask mask) {
  const NormLayout layout = norm_layout(h, normalized_shape, weight, bias);
  check_like(grad_y, h, "grad_y", "h");
  if (present(grad_h)) check_like(*grad_h, h, "grad_h", "h");
  check_statistics(inv_rms, h, layout.rows, "inv_rms");
  check_settings(eps, p, weight_offset, present(weight));
  const NormOptions options =
      norm_options(false, eps, p, static_cast<int64_t>(parse_placement(eps_placement)), weight_offset);
  const EngineParameters params = kRun == Run::kEngine ? engine_parameters(weight, bias, h) : EngineParameters{};
  Gradients g = empty_gradients(h, layout, params, weight, bias, mask);
  if (kRun == Run::kShapesOnly) return finish_gradients(g, weight, bias, mask);
  if (layout.rows == 0 || layout.n == 0) {
    if (g.dweight.defined()) g.dweight.zero_();
    if (g.dbias.defined()) g.dbias.zero_();
    if (present(grad_h)) g.dx.copy_(*grad_h);
    return finish_gradients(g, weight, bias, mask);
  }
  const at::Tensor x = h.contiguous();
  const at::Tensor dy = grad_y.to(h.scalar_type()).contiguous();
  const at::Tensor dh_out = present(grad_h) ? grad_h->to(h.scalar_type()).contiguous() : at::Tensor();
  const at::Tensor inv = inv_rms.contiguous();
  FusedAddBackwardArgs a;
  a.rows = layout.rows;
  a.n = layout.n;
  a.h = const_matrix(x, layout.n);
  a.dy = const_matrix(dy, layout.n);
  if (dh_out.defined()) a.dh_out = const_matrix(dh_out, layout.n);
  a.weight = const_vector(params.weight, params.dtype);
  a.saved = {inv.data_ptr(), nullptr};
  a.dh = matrix(g.dx, layout.n);
  a.dweight = {g.dweight.defined() ? g.dweight.data_ptr() : nullptr, params.dtype};
  a.dbias = {g.dbias.defined() ? g.dbias.data_ptr() : nullptr, engine_dtype(h, "h") == DType::kFloat64 ? DType::kFloat64 : DType::kFloat32};
  // The CUDA backend has no fused residual backward: CUDA tensors are refused by name.
  on_device(
      x, [&] { rmsnorm::fused_add_backward(options, a); },
      [&](auto stream) {
        (void)stream;
        TORCH_CHECK(false, "rmsnorm: add_rms_norm's backward runs on CPU tensors only (the CUDA backend has no "
                           "fused residual backward); h is on ", x.device());
      });
  return finish_gradients(g, weight, bias, mask);
}

// vLLM's inference op, in place: residual += input, input = rms_norm(residual)
// * weight over the last dimension, eps inside.
template <Run kRun>
void fused_add_rms_norm_inplace(at::Tensor& input, at::Tensor& residual, const at::Tensor& weight, double eps) {
  TORCH_CHECK(input.dim() >= 1, "rmsnorm: input must have at least one dimension");
  check_residual(residual, input);
  TORCH_CHECK(input.is_contiguous() && residual.is_contiguous(),
              "rmsnorm: fused_add_rms_norm updates input and residual in place; both must be contiguous");
  const NormLayout layout = norm_layout(input, {input.size(-1)}, weight, c10::nullopt);
  check_settings(eps, 1.0, 0.0, true);
  if (kRun == Run::kShapesOnly || layout.rows == 0 || layout.n == 0) return;
  const EngineParameters params = engine_parameters(weight, c10::nullopt, input);
  NormOptions options = norm_options(false, eps, 1.0, static_cast<int64_t>(EpsPlacement::kInside));
  FusedAddArgs a;
  a.rows = layout.rows;
  a.n = layout.n;
  a.x = const_matrix(input, layout.n);
  a.residual = matrix(residual, layout.n);
  a.y = matrix(input, layout.n);
  a.weight = const_vector(params.weight, params.dtype);
  on_device(
      input, [&] { rmsnorm::fused_add_forward(options, a); },
      [&](auto stream) { RMSNORM_CUDA_CALL(fused_add_forward(options, a, stream)); });
}

// ---------------------------------------------------------------- gated and grouped RMSNorm (SPEC section 10)

Gate parse_gate(c10::string_view s) {
  if (s == "none") return Gate::kNone;
  if (s == "before") return Gate::kBeforeNorm;
  if (s == "after") return Gate::kAfterNorm;
  TORCH_CHECK(false, "rmsnorm: gate must be \"none\", \"before\" or \"after\", got \"", std::string(s), "\"");
}

struct GatedLayout {
  NormLayout layout;
  Gate gate = Gate::kNone;
  int64_t group_size = 0, groups = 0;
};

// The gated norm works over the last dimension in groups of group_size (0:
// the whole row); z, the gate, has input's shape and dtype when gate is not "none".
GatedLayout gated_layout(const at::Tensor& input, const c10::optional<at::Tensor>& z,
                         const c10::optional<at::Tensor>& weight, int64_t group_size, c10::string_view gate) {
  TORCH_CHECK(input.dim() >= 1, "rmsnorm: gated_rms_norm needs an input with at least one dimension");
  // The engine's gated kernels are CPU kernels (the CUDA backend has none).
  TORCH_CHECK(input.device().is_cpu() || input.device().is_meta(), "rmsnorm: gated_rms_norm takes CPU tensors; input is on ",
              input.device());
  GatedLayout g;
  g.layout = norm_layout(input, {input.size(-1)}, weight, c10::nullopt);
  g.gate = parse_gate(gate);
  const int64_t n = g.layout.n;
  TORCH_CHECK(group_size >= 0, "rmsnorm: group_size must be >= 0 (0: the whole row), got ", group_size);
  g.group_size = group_size == 0 ? n : group_size;
  TORCH_CHECK(n == 0 || n % g.group_size == 0, "rmsnorm: group_size ", group_size,
              " must divide the last dimension ", n);
  g.groups = n == 0 ? 0 : n / g.group_size;
  if (g.gate == Gate::kNone) {
    TORCH_CHECK(!present(z), "rmsnorm: z is given but gate is \"none\"; pass gate=\"before\" or \"after\"");
  } else {
    TORCH_CHECK(present(z), "rmsnorm: gate \"", std::string(gate), "\" needs z");
    check_like(*z, input, "z", "input");
    TORCH_CHECK(z->scalar_type() == input.scalar_type(), "rmsnorm: z must have input's dtype ", input.scalar_type(),
                ", got ", z->scalar_type());
  }
  return g;
}

at::Tensor empty_group_statistics(const at::Tensor& input, const GatedLayout& g) {
  std::vector<int64_t> shape = g.layout.leading;
  shape.push_back(g.groups);
  return at::empty(shape, input.options().dtype(statistics_type(input.scalar_type())));
}

NormOptions gated_options(double eps, c10::string_view eps_placement, double weight_offset) {
  return norm_options(false, eps, 1.0, static_cast<int64_t>(parse_placement(eps_placement)), weight_offset);
}

// (y, inv_rms): inv_rms holds 1/r of every group, shape [*leading, groups].
template <Run kRun>
Pair gated_rms_norm_forward(const at::Tensor& input, const c10::optional<at::Tensor>& z,
                            const c10::optional<at::Tensor>& weight, int64_t group_size, c10::string_view gate,
                            double eps, c10::string_view eps_placement, double weight_offset) {
  const GatedLayout g = gated_layout(input, z, weight, group_size, gate);
  check_settings(eps, 1.0, weight_offset, present(weight));
  const NormOptions options = gated_options(eps, eps_placement, weight_offset);
  at::Tensor y = empty_output(input), inv_rms = empty_group_statistics(input, g);
  if (kRun == Run::kShapesOnly || g.layout.rows == 0 || g.layout.n == 0) return {y, inv_rms};
  const at::Tensor x = input.contiguous();
  const at::Tensor zc = present(z) ? z->contiguous() : at::Tensor();
  const EngineParameters params = engine_parameters(weight, c10::nullopt, input);
  GatedForwardArgs a;
  a.rows = g.layout.rows;
  a.n = g.layout.n;
  a.group_size = g.group_size;
  a.gate = g.gate;
  a.x = const_matrix(x, a.n);
  if (zc.defined()) a.z = const_matrix(zc, a.n);
  a.y = matrix(y, a.n);
  a.weight = const_vector(params.weight, params.dtype);
  a.saved = {inv_rms.data_ptr(), nullptr};
  check_device(x);
  engine_call([&] { rmsnorm::gated_forward(options, a); });
  return {y, inv_rms};
}

// (dx, dz, dweight); dz is undefined without a gate.
template <Run kRun>
Triple gated_rms_norm_backward(const at::Tensor& grad_y, const at::Tensor& input, const c10::optional<at::Tensor>& z,
                               const c10::optional<at::Tensor>& weight, const at::Tensor& inv_rms, int64_t group_size,
                               c10::string_view gate, double eps, c10::string_view eps_placement, double weight_offset,
                               Mask mask) {
  const GatedLayout g = gated_layout(input, z, weight, group_size, gate);
  check_like(grad_y, input, "grad_y", "input");
  check_statistics(inv_rms, input, g.layout.rows * g.groups, "inv_rms");
  check_settings(eps, 1.0, weight_offset, present(weight));
  const NormOptions options = gated_options(eps, eps_placement, weight_offset);
  at::Tensor dx = empty_output(input);
  at::Tensor dz = g.gate == Gate::kNone ? at::Tensor() : empty_output(input);
  const EngineParameters params = kRun == Run::kEngine ? engine_parameters(weight, c10::nullopt, input) : EngineParameters{};
  at::Tensor dweight;
  if (mask[2] && present(weight))
    dweight = at::empty({g.layout.n}, params.weight.defined() ? params.weight.options() : weight->options());
  auto finish = [&]() -> Triple {
    return {mask[0] ? dx : at::Tensor(), mask[1] ? dz : at::Tensor(), as_parameter(dweight, weight)};
  };
  if (kRun == Run::kShapesOnly) return finish();
  if (g.layout.rows == 0 || g.layout.n == 0) {
    if (dweight.defined()) dweight.zero_();
    return finish();
  }
  const at::Tensor x = input.contiguous();
  const at::Tensor zc = present(z) ? z->contiguous() : at::Tensor();
  const at::Tensor dy = grad_y.to(input.scalar_type()).contiguous();
  const at::Tensor inv = inv_rms.contiguous();
  GatedBackwardArgs a;
  a.rows = g.layout.rows;
  a.n = g.layout.n;
  a.group_size = g.group_size;
  a.gate = g.gate;
  a.x = const_matrix(x, a.n);
  if (zc.defined()) a.z = const_matrix(zc, a.n);
  a.dy = const_matrix(dy, a.n);
  a.weight = const_vector(params.weight, params.dtype);
  a.saved = {inv.data_ptr(), nullptr};
  a.dx = matrix(dx, a.n);
  if (dz.defined()) a.dz = matrix(dz, a.n);
  a.dweight = {dweight.defined() ? dweight.data_ptr() : nullptr, params.dtype};
  check_device(x);
  engine_call([&] { rmsnorm::gated_backward(options, a); });
  return finish();
}

}  // namespace
}  // namespace rmsnorm::torch

namespace {
namespace rt = rmsnorm::torch;
using rt::Run;
}  // namespace

// Registered for each key that has data (CPU; CUDA in CUDA builds, where the
// gated ops, CPU-only in the engine, reject CUDA tensors) and for Meta.
#define RMSNORM_REGISTER_NORM_KERNELS(m, kRun)                                \
  m.impl("rms_norm_forward", &rt::rms_norm_forward<kRun>);                    \
  m.impl("rms_norm_backward", &rt::rms_norm_backward<kRun>);                  \
  m.impl("layer_norm_forward", &rt::layer_norm_forward<kRun>);                \
  m.impl("layer_norm_backward", &rt::layer_norm_backward<kRun>);              \
  m.impl("add_rms_norm_forward", &rt::add_rms_norm_forward<kRun>);            \
  m.impl("add_rms_norm_backward", &rt::add_rms_norm_backward<kRun>);          \
  m.impl("gated_rms_norm_forward", &rt::gated_rms_norm_forward<kRun>);        \
  m.impl("gated_rms_norm_backward", &rt::gated_rms_norm_backward<kRun>);      \
  m.impl("rms_norm.out", &rt::rms_norm_out<kRun>);                            \
  m.impl("rms_norm_", &rt::rms_norm_inplace<kRun>);                           \
  m.impl("layer_norm.out", &rt::layer_norm_out<kRun>);                        \
  m.impl("layer_norm_", &rt::layer_norm_inplace<kRun>);                       \
  m.impl("fused_add_rms_norm", &rt::fused_add_rms_norm_inplace<kRun>)

TORCH_LIBRARY_IMPL(rmsnorm, CPU, m) { RMSNORM_REGISTER_NORM_KERNELS(m, Run::kEngine); }
TORCH_LIBRARY_IMPL(rmsnorm, Meta, m) { RMSNORM_REGISTER_NORM_KERNELS(m, Run::kShapesOnly); }
#ifdef RMSNORM_TORCH_CUDA
TORCH_LIBRARY_IMPL(rmsnorm, CUDA, m) { RMSNORM_REGISTER_NORM_KERNELS(m, Run::kEngine); }
#endif
