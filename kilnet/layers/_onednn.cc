// oneDNN's kernels called by XLA on CPU through its FFI (kilnet/layers/_onednn.py builds
// and registers this file): convolutions (forward, input gradient, kernel gradient; wrapped
// by _conv_onednn.py) and training-mode batch normalization (forward, backward; wrapped by
// _batch_norm_onednn.py).
//
// ---- Convolutions ----------------------------------------------------------------------------
// Layouts are XLA's: activations (batch, height, width, channels) row-major, kernels
// (height, width, in, out). oneDNN runs its fast kernels on those activations directly; only
// the gradients want the kernel in oneDNN's blocked layout, a reorder of a few thousand
// numbers. Measured on a 2-core AMD EPYC (batch 128, the MNIST convnet's 3x3 32 -> 64 on
// 13x13): forward 2.8 ms, input gradient 3.1, kernel gradient 2.9 (its XLA counterparts
// 3.1 / 5.0 / 9.4 in the same loop); with the activations in oneDNN's plain layout only the
// gradients fall back to slower im2col kernels (5.6 / 5.2), hence the kernel reorders.
//
// 1 to 3 spatial axes (Conv1D, Conv2D, Conv3D). Geometry attribute, int64: groups, then for
// each spatial axis its stride, padding before, padding after and dilation (1 = none). With
// groups G the kernel is XLA's (spatial..., in / G, out), output channel g * (out / G) + o
// reading input channels [g * in / G, (g + 1) * in / G): oneDNN's (G, out / G, in / G,
// spatial...) weights in its `hwigo` order (`wigo`, `dhwigo`), the same memory.

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using tag = dnnl::memory::format_tag;

namespace {

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// Scratch buffers per calling thread (XLA may run two convolutions side by side), handed out
// 64-byte aligned as oneDNN's own allocations are.
void* aligned_part(std::vector<char>& buffer, size_t n) {
  constexpr size_t kAlign = 64;
  if (buffer.size() < n + kAlign) buffer.resize(n + kAlign);
  auto address = reinterpret_cast<uintptr_t>(buffer.data());
  return buffer.data() + (kAlign - address % kAlign) % kAlign;
}

struct ThreadBuffers {
  std::vector<char> scratchpad, kernel, rows[3];
  void* scratch(size_t n) { return aligned_part(scratchpad, n); }
  void* blocked_kernel(size_t n) { return aligned_part(kernel, n); }
  // Up to three batches' real samples gathered (batch normalization of a padded batch).
  float* gathered(int slot, size_t floats) {
    return static_cast<float*>(aligned_part(rows[slot], floats * sizeof(float)));
  }
};
thread_local ThreadBuffers buffers;

// Runs a primitive with the calling thread's scratchpad.
void execute(const dnnl::primitive& primitive, size_t scratchpad_bytes, dnnl::stream& stream,
             std::unordered_map<int, memory> args) {
  if (scratchpad_bytes > 0)
    args.emplace(DNNL_ARG_SCRATCHPAD,
                 memory(memory::desc({static_cast<int64_t>(scratchpad_bytes)},
                                     memory::data_type::u8, tag::a),
                        cpu_engine(), buffers.scratch(scratchpad_bytes)));
  primitive.execute(stream, args);
}

struct Geometry {
  memory::dims src, weights, dst, strides, dilation, pad_low, pad_high;
  tag kernel_tag, image_tag;  // XLA's layouts in oneDNN's terms
};

// XLA's shapes -> oneDNN's logical (N, C, spatial...) / ([G,] O, I, spatial...) dims.
Geometry geometry(ffi::Span<const int64_t> x, ffi::Span<const int64_t> k,
                  ffi::Span<const int64_t> y, ffi::Span<const int64_t> g) {
  size_t axes = x.size() - 2;
  int64_t groups = g[0];
  auto attr = [&](size_t axis, size_t field) { return g[1 + 4 * axis + field]; };
  // A one-column image (Conv1D's steps as rows) runs as oneDNN's 1-D convolution, the same
  // memory: its 2-D kernels ran a Conv1D text model's step 1.6x slower than XLA's.
  if (axes == 2 && x[2] == 1 && k[1] == 1 && y[2] == 1 && attr(1, 1) == 0 && attr(1, 2) == 0)
    axes = 1;
  Geometry geo;
  geo.src = {x[0], x[x.size() - 1]};
  geo.dst = {y[0], y[y.size() - 1]};
  int64_t in = k[k.size() - 2], out = k[k.size() - 1];
  geo.weights = groups > 1 ? memory::dims{groups, out / groups, in} : memory::dims{out, in};
  for (size_t a = 0; a < axes; ++a) {
    geo.src.push_back(x[1 + a]);
    geo.dst.push_back(y[1 + a]);
    geo.weights.push_back(k[a]);
    geo.strides.push_back(attr(a, 0));
    geo.pad_low.push_back(attr(a, 1));
    geo.pad_high.push_back(attr(a, 2));
    geo.dilation.push_back(attr(a, 3) - 1);
  }
  static const tag images[] = {tag::nwc, tag::nhwc, tag::ndhwc};
  static const tag kernels[] = {tag::wio, tag::hwio, tag::dhwio};
  static const tag grouped[] = {tag::wigo, tag::hwigo, tag::dhwigo};
  geo.image_tag = images[axes - 1];
  geo.kernel_tag = groups > 1 ? grouped[axes - 1] : kernels[axes - 1];
  return geo;
}

using Key = std::tuple<int, memory::dims, memory::dims, memory::dims, memory::dims,
                       memory::dims, memory::dims, memory::dims>;

Key key_of(int kind, const Geometry& g) {
  return Key{kind, g.src, g.weights, g.dst, g.strides, g.dilation, g.pad_low, g.pad_high};
}

dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

dnnl::convolution_forward::primitive_desc forward_desc(const Geometry& g, tag kernel_tag) {
  auto& eng = cpu_engine();
  return dnnl::convolution_forward::primitive_desc(
      eng, dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
      memory::desc(g.src, memory::data_type::f32, g.image_tag),
      memory::desc(g.weights, memory::data_type::f32, kernel_tag),
      memory::desc(g.dst, memory::data_type::f32, g.image_tag), g.strides, g.dilation,
      g.pad_low, g.pad_high, user_scratchpad());
}

// One cached plan per (direction, geometry): its primitive and, for the gradients, the
// reorder between XLA's kernel layout and the one oneDNN chose.
struct Plan {
  dnnl::primitive conv;
  memory::desc kernel_blocked;
  dnnl::primitive kernel_reorder;  // empty when the chosen layout is XLA's
  size_t scratchpad_bytes = 0;
};

enum Kind { kForward = 0, kInputGradient = 1, kKernelGradient = 2 };

std::shared_ptr<Plan> make_plan(int kind, const Geometry& g) {
  auto& eng = cpu_engine();
  auto plan = std::make_shared<Plan>();
  memory::desc plain_kernel(g.weights, memory::data_type::f32, g.kernel_tag);
  memory::desc src(g.src, memory::data_type::f32, g.image_tag);
  memory::desc dst(g.dst, memory::data_type::f32, g.image_tag);
  memory::desc any_kernel(g.weights, memory::data_type::f32, tag::any);
  if (kind == kForward) {  // XLA's kernel layout as it is: no reorder
    auto fwd = forward_desc(g, g.kernel_tag);
    plan->conv = dnnl::convolution_forward(fwd);
    plan->scratchpad_bytes = fwd.scratchpad_desc().get_size();
    return plan;
  }
  auto hint = forward_desc(g, tag::any);
  if (kind == kInputGradient) {
    dnnl::convolution_backward_data::primitive_desc bwd(
        eng, dnnl::algorithm::convolution_direct, src, any_kernel, dst, g.strides, g.dilation,
        g.pad_low, g.pad_high, hint, user_scratchpad());
    plan->conv = dnnl::convolution_backward_data(bwd);
    plan->kernel_blocked = bwd.weights_desc();
    plan->scratchpad_bytes = bwd.scratchpad_desc().get_size();
    if (plan->kernel_blocked != plain_kernel)
      plan->kernel_reorder = dnnl::reorder(dnnl::reorder::primitive_desc(
          eng, plain_kernel, eng, plan->kernel_blocked));
  } else {
    dnnl::convolution_backward_weights::primitive_desc bwd(
        eng, dnnl::algorithm::convolution_direct, src, any_kernel, dst, g.strides, g.dilation,
        g.pad_low, g.pad_high, hint, user_scratchpad());
    plan->conv = dnnl::convolution_backward_weights(bwd);
    plan->kernel_blocked = bwd.diff_weights_desc();
    plan->scratchpad_bytes = bwd.scratchpad_desc().get_size();
    if (plan->kernel_blocked != plain_kernel)
      plan->kernel_reorder = dnnl::reorder(dnnl::reorder::primitive_desc(
          eng, plan->kernel_blocked, eng, plain_kernel));
  }
  return plan;
}

std::shared_ptr<Plan> plan_for(int kind, const Geometry& g) {
  static std::mutex lock;
  static std::map<Key, std::shared_ptr<Plan>> plans;
  std::lock_guard<std::mutex> hold(lock);
  auto& slot = plans[key_of(kind, g)];
  if (!slot) slot = make_plan(kind, g);
  return slot;
}

memory wrap(const memory::dims& dims, tag t, void* data) {
  return memory(memory::desc(dims, memory::data_type::f32, t), cpu_engine(), data);
}

template <typename F>
ffi::Error guarded(F&& body) {
  try {
    body();
    return ffi::Error::Success();
  } catch (const dnnl::error& e) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("oneDNN: ") + e.what());
  } catch (const std::exception& e) {
    return ffi::Error(ffi::ErrorCode::kInternal, e.what());
  }
}

ffi::Error Forward(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> kernel,
                   ffi::ResultBuffer<ffi::F32> y, ffi::Span<const int64_t> g) {
  return guarded([&] {
    Geometry geo = geometry(x.dimensions(), kernel.dimensions(), y->dimensions(), g);
    auto plan = plan_for(kForward, geo);
    dnnl::stream stream(cpu_engine());
    execute(plan->conv, plan->scratchpad_bytes, stream,
        {{DNNL_ARG_SRC, wrap(geo.src, geo.image_tag, x.typed_data())},
         {DNNL_ARG_WEIGHTS, wrap(geo.weights, geo.kernel_tag, kernel.typed_data())},
         {DNNL_ARG_DST, wrap(geo.dst, geo.image_tag, y->typed_data())}});
    stream.wait();
  });
}

ffi::Error InputGradient(ffi::Buffer<ffi::F32> dy, ffi::Buffer<ffi::F32> kernel,
                         ffi::ResultBuffer<ffi::F32> dx, ffi::Span<const int64_t> g) {
  return guarded([&] {
    Geometry geo = geometry(dx->dimensions(), kernel.dimensions(), dy.dimensions(), g);
    auto plan = plan_for(kInputGradient, geo);
    dnnl::stream stream(cpu_engine());
    memory plain = wrap(geo.weights, geo.kernel_tag, kernel.typed_data());
    memory weights = plain;
    if (plan->kernel_reorder) {
      weights = memory(plan->kernel_blocked, cpu_engine(),
                       buffers.blocked_kernel(plan->kernel_blocked.get_size()));
      plan->kernel_reorder.execute(stream, {{DNNL_ARG_FROM, plain}, {DNNL_ARG_TO, weights}});
    }
    execute(plan->conv, plan->scratchpad_bytes, stream,
        {{DNNL_ARG_DIFF_DST, wrap(geo.dst, geo.image_tag, dy.typed_data())},
         {DNNL_ARG_WEIGHTS, weights},
         {DNNL_ARG_DIFF_SRC, wrap(geo.src, geo.image_tag, dx->typed_data())}});
    stream.wait();
  });
}

ffi::Error KernelGradient(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> dy,
                          ffi::ResultBuffer<ffi::F32> dk, ffi::Span<const int64_t> g) {
  return guarded([&] {
    Geometry geo = geometry(x.dimensions(), dk->dimensions(), dy.dimensions(), g);
    auto plan = plan_for(kKernelGradient, geo);
    dnnl::stream stream(cpu_engine());
    memory plain = wrap(geo.weights, geo.kernel_tag, dk->typed_data());
    memory weights = plain;
    if (plan->kernel_reorder)
      weights = memory(plan->kernel_blocked, cpu_engine(),
                       buffers.blocked_kernel(plan->kernel_blocked.get_size()));
    execute(plan->conv, plan->scratchpad_bytes, stream,
        {{DNNL_ARG_SRC, wrap(geo.src, geo.image_tag, x.typed_data())},
         {DNNL_ARG_DIFF_DST, wrap(geo.dst, geo.image_tag, dy.typed_data())},
         {DNNL_ARG_DIFF_WEIGHTS, weights}});
    if (plan->kernel_reorder)
      plan->kernel_reorder.execute(stream, {{DNNL_ARG_FROM, weights}, {DNNL_ARG_TO, plain}});
    stream.wait();
  });
}

// The three handlers' one signature: two float32 operands, one float32 result, the geometry.
auto two_operands_one_result() {
  return ffi::Ffi::Bind()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Ret<ffi::Buffer<ffi::F32>>()
      .Attr<ffi::Span<const int64_t>>("geometry");
}


// ---- Batch normalization (training mode) over every axis but the last ----------------------
// x is (batch, positions..., channels) row-major: oneDNN's (batch, channels, positions) in
// its `nwc` layout, the same memory. `weights` (batch,) holds 1 for a real sample and 0 for
// the padding of a short last batch: the statistics count the real samples only, which run
// gathered into scratch when there are padding rows (padded rows give y = 0 and dx = 0).

struct Rows {
  int64_t batch, positions, channels;
  size_t sample_size() const { return static_cast<size_t>(positions * channels); }
};

Rows rows_of(ffi::Span<const int64_t> dims) {
  Rows r{dims[0], 1, dims[dims.size() - 1]};
  for (size_t a = 1; a + 1 < dims.size(); ++a) r.positions *= dims[a];
  return r;
}

// Indices of the real samples (weight > 0).
std::vector<int64_t> real_samples(const float* weights, int64_t batch) {
  std::vector<int64_t> real;
  for (int64_t i = 0; i < batch; ++i)
    if (weights[i] > 0) real.push_back(i);
  return real;
}

struct NormPlan {
  dnnl::primitive forward, backward;
  memory::desc data;
  size_t forward_scratch = 0, backward_scratch = 0;
};

std::shared_ptr<NormPlan> norm_plan_for(int64_t batch, int64_t positions, int64_t channels,
                                        float epsilon) {
  static std::mutex lock;
  using Key = std::tuple<int64_t, int64_t, int64_t, float>;
  static std::map<Key, std::shared_ptr<NormPlan>> plans;
  std::lock_guard<std::mutex> hold(lock);
  auto& slot = plans[{batch, positions, channels, epsilon}];
  if (!slot) {
    auto& eng = cpu_engine();
    slot = std::make_shared<NormPlan>();
    slot->data = memory::desc({batch, channels, positions}, memory::data_type::f32, tag::nwc);
    auto flags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
    dnnl::batch_normalization_forward::primitive_desc fwd(
        eng, dnnl::prop_kind::forward_training, slot->data, slot->data, epsilon, flags,
        user_scratchpad());
    dnnl::batch_normalization_backward::primitive_desc bwd(
        eng, dnnl::prop_kind::backward, slot->data, slot->data, slot->data, epsilon, flags, fwd,
        user_scratchpad());
    slot->forward = dnnl::batch_normalization_forward(fwd);
    slot->backward = dnnl::batch_normalization_backward(bwd);
    slot->forward_scratch = fwd.scratchpad_desc().get_size();
    slot->backward_scratch = bwd.scratchpad_desc().get_size();
  }
  return slot;
}

memory vector_memory(int64_t n, const float* data) {
  return wrap({n}, tag::a, const_cast<float*>(data));
}

memory batch_memory(const NormPlan& plan, const float* data) {
  return memory(plan.data, cpu_engine(), const_cast<float*>(data));
}

float* gather(int slot, const float* from, const std::vector<int64_t>& real, size_t size) {
  float* to = buffers.gathered(slot, real.size() * size);
  for (size_t j = 0; j < real.size(); ++j)
    std::copy_n(from + real[j] * size, size, to + j * size);
  return to;
}

void scatter(const float* from, float* to, const std::vector<int64_t>& real, int64_t batch,
             size_t size) {
  std::fill_n(to, batch * size, 0.0f);
  for (size_t j = 0; j < real.size(); ++j)
    std::copy_n(from + j * size, size, to + real[j] * size);
}

ffi::Error NormForward(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> gamma,
                       ffi::Buffer<ffi::F32> beta, ffi::Buffer<ffi::F32> weights,
                       ffi::ResultBuffer<ffi::F32> y, ffi::ResultBuffer<ffi::F32> mean,
                       ffi::ResultBuffer<ffi::F32> variance, float epsilon) {
  return guarded([&] {
    Rows r = rows_of(x.dimensions());
    auto real = real_samples(weights.typed_data(), r.batch);
    int64_t k = static_cast<int64_t>(real.size());
    if (k == 0) {  // nothing real: zeros, as the weighted formula gives
      std::fill_n(y->typed_data(), r.batch * r.sample_size(), 0.0f);
      std::fill_n(mean->typed_data(), r.channels, 0.0f);
      std::fill_n(variance->typed_data(), r.channels, 0.0f);
      return;
    }
    bool all = k == r.batch;
    const float* src = all ? x.typed_data() : gather(0, x.typed_data(), real, r.sample_size());
    float* dst = all ? y->typed_data() : buffers.gathered(1, k * r.sample_size());
    auto plan = norm_plan_for(k, r.positions, r.channels, epsilon);
    dnnl::stream stream(cpu_engine());
    execute(plan->forward, plan->forward_scratch, stream,
        {{DNNL_ARG_SRC, batch_memory(*plan, src)},
         {DNNL_ARG_DST, batch_memory(*plan, dst)},
         {DNNL_ARG_SCALE, vector_memory(r.channels, gamma.typed_data())},
         {DNNL_ARG_SHIFT, vector_memory(r.channels, beta.typed_data())},
         {DNNL_ARG_MEAN, vector_memory(r.channels, mean->typed_data())},
         {DNNL_ARG_VARIANCE, vector_memory(r.channels, variance->typed_data())}});
    stream.wait();
    if (!all) scatter(dst, y->typed_data(), real, r.batch, r.sample_size());
  });
}

ffi::Error NormBackward(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> dy,
                        ffi::Buffer<ffi::F32> mean, ffi::Buffer<ffi::F32> variance,
                        ffi::Buffer<ffi::F32> gamma, ffi::Buffer<ffi::F32> weights,
                        ffi::ResultBuffer<ffi::F32> dx, ffi::ResultBuffer<ffi::F32> dgamma,
                        ffi::ResultBuffer<ffi::F32> dbeta, float epsilon) {
  return guarded([&] {
    Rows r = rows_of(x.dimensions());
    auto real = real_samples(weights.typed_data(), r.batch);
    int64_t k = static_cast<int64_t>(real.size());
    if (k == 0) {
      std::fill_n(dx->typed_data(), r.batch * r.sample_size(), 0.0f);
      std::fill_n(dgamma->typed_data(), r.channels, 0.0f);
      std::fill_n(dbeta->typed_data(), r.channels, 0.0f);
      return;
    }
    bool all = k == r.batch;
    const float* src = all ? x.typed_data() : gather(0, x.typed_data(), real, r.sample_size());
    const float* diff_dst =
        all ? dy.typed_data() : gather(1, dy.typed_data(), real, r.sample_size());
    float* diff_src = all ? dx->typed_data() : buffers.gathered(2, k * r.sample_size());
    auto plan = norm_plan_for(k, r.positions, r.channels, epsilon);
    dnnl::stream stream(cpu_engine());
    execute(plan->backward, plan->backward_scratch, stream,
        {{DNNL_ARG_SRC, batch_memory(*plan, src)},
         {DNNL_ARG_DIFF_DST, batch_memory(*plan, diff_dst)},
         {DNNL_ARG_DIFF_SRC, batch_memory(*plan, diff_src)},
         {DNNL_ARG_MEAN, vector_memory(r.channels, mean.typed_data())},
         {DNNL_ARG_VARIANCE, vector_memory(r.channels, variance.typed_data())},
         {DNNL_ARG_SCALE, vector_memory(r.channels, gamma.typed_data())},
         {DNNL_ARG_DIFF_SCALE, vector_memory(r.channels, dgamma->typed_data())},
         {DNNL_ARG_DIFF_SHIFT, vector_memory(r.channels, dbeta->typed_data())}});
    stream.wait();
    if (!all) scatter(diff_src, dx->typed_data(), real, r.batch, r.sample_size());
  });
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(KilnetConvForward, Forward, two_operands_one_result());
XLA_FFI_DEFINE_HANDLER_SYMBOL(KilnetConvInputGradient, InputGradient,
                              two_operands_one_result());
XLA_FFI_DEFINE_HANDLER_SYMBOL(KilnetConvKernelGradient, KernelGradient,
                              two_operands_one_result());
XLA_FFI_DEFINE_HANDLER_SYMBOL(KilnetBatchNormForward, NormForward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("epsilon"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(KilnetBatchNormBackward, NormBackward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("epsilon"));
