// Convolutions (forward, input gradient, kernel gradient) from oneDNN, called by XLA on
// CPU through its FFI (kilnet/layers/_conv_onednn.py builds and registers this file).
//
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
  std::vector<char> scratchpad, kernel;
  void* scratch(size_t n) { return aligned_part(scratchpad, n); }
  void* blocked_kernel(size_t n) { return aligned_part(kernel, n); }
};
thread_local ThreadBuffers buffers;

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

// Runs the plan's convolution with the calling thread's scratchpad.
void run(const Plan& plan, dnnl::stream& stream, std::unordered_map<int, memory> args) {
  if (plan.scratchpad_bytes > 0)
    args.emplace(DNNL_ARG_SCRATCHPAD,
                 memory(memory::desc({static_cast<int64_t>(plan.scratchpad_bytes)},
                                     memory::data_type::u8, tag::a),
                        cpu_engine(), buffers.scratch(plan.scratchpad_bytes)));
  plan.conv.execute(stream, args);
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
    run(*plan, stream,
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
    run(*plan, stream,
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
    run(*plan, stream,
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

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(KilnetConvForward, Forward, two_operands_one_result());
XLA_FFI_DEFINE_HANDLER_SYMBOL(KilnetConvInputGradient, InputGradient,
                              two_operands_one_result());
XLA_FFI_DEFINE_HANDLER_SYMBOL(KilnetConvKernelGradient, KernelGradient,
                              two_operands_one_result());
