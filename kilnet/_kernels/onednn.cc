// oneDNN's kernels called by XLA on CPU through its FFI (kilnet/_kernels/onednn.py builds
// and registers this file): convolutions (forward, input gradient, kernel gradient; wrapped
// by onednn_conv.py), training-mode batch normalization (forward, backward; wrapped by
// onednn_batch_norm.py) and Keras's Adam update (kilnet/optimizers/_adam_kernel.py).
//
// ---- Convolutions ----------------------------------------------------------------------------
// Layouts are XLA's: activations (batch, height, width, channels) row-major, kernels
// (height, width, in, out). oneDNN runs its fast kernels on those activations directly; many
// want the kernel in one of oneDNN's blocked layouts, a reorder of a few thousand numbers.
// Measured on a 2-core AMD EPYC (batch 128, the MNIST convnet's 3x3 32 -> 64 on 13x13):
// forward 2.8 ms, input gradient 3.1, kernel gradient 2.9 (its XLA counterparts
// 3.1 / 5.0 / 9.4 in the same loop); with the kernel in XLA's layout the gradients fall back
// to slower im2col kernels (5.6 / 5.2), hence the reorders. Which implementation runs each
// direction and shape is measured on its first call (see `plan_for`).
//
// 1 to 3 spatial axes (Conv1D, Conv2D, Conv3D). Geometry attribute, int64: groups, then for
// each spatial axis its stride, padding before, padding after and dilation (1 = none). With
// groups G the kernel is XLA's (spatial..., in / G, out), output channel g * (out / G) + o
// reading input channels [g * in / G, (g + 1) * in / G): oneDNN's (G, out / G, in / G,
// spatial...) weights in its `hwigo` order (`wigo`, `dhwigo`), the same memory.
//
// Operands are float32, or bfloat16 (Keras's mixed_bfloat16 policy) where the processor has
// bfloat16 instructions (`KilnetNativeBfloat16`): images and kernel in bfloat16, the kernel
// gradient summed and returned in float32. Measured in a loop on a 2-core Xeon with AMX (batch
// 128, 3x3 32 -> 64 on 13x13, forward and both gradients): oneDNN float32 16.0 ms, oneDNN
// bfloat16 6.8 ms, XLA's bfloat16 convolution 55 ms.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <vector>

#include <omp.h>
#include <sched.h>

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
  memory::data_type type;     // the images' and kernel's (a kernel gradient is float32)
};

memory::data_type data_type_of(const ffi::AnyBuffer& buffer) {
  switch (buffer.element_type()) {
    case ffi::DataType::F32: return memory::data_type::f32;
    case ffi::DataType::BF16: return memory::data_type::bf16;
    default: throw std::runtime_error("kilnet's oneDNN handlers take float32 or bfloat16");
  }
}

// XLA's shapes -> oneDNN's logical (N, C, spatial...) / ([G,] O, I, spatial...) dims.
Geometry geometry(ffi::Span<const int64_t> x, ffi::Span<const int64_t> k,
                  ffi::Span<const int64_t> y, ffi::Span<const int64_t> g,
                  memory::data_type type) {
  size_t axes = x.size() - 2;
  int64_t groups = g[0];
  auto attr = [&](size_t axis, size_t field) { return g[1 + 4 * axis + field]; };
  // A one-column image (Conv1D's steps as rows) runs as oneDNN's 1-D convolution, the same
  // memory: its 2-D kernels ran a Conv1D text model's step 1.6x slower than XLA's.
  if (axes == 2 && x[2] == 1 && k[1] == 1 && y[2] == 1 && attr(1, 1) == 0 && attr(1, 2) == 0)
    axes = 1;
  Geometry geo;
  geo.type = type;
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

dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

dnnl::convolution_forward::primitive_desc forward_desc(const Geometry& g, tag kernel_tag) {
  auto& eng = cpu_engine();
  return dnnl::convolution_forward::primitive_desc(
      eng, dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
      memory::desc(g.src, g.type, g.image_tag), memory::desc(g.weights, g.type, kernel_tag),
      memory::desc(g.dst, g.type, g.image_tag), g.strides, g.dilation,
      g.pad_low, g.pad_high, user_scratchpad());
}

// One cached plan per (direction, geometry): a primitive and, where its implementation wants
// the kernel in a blocked layout, the reorder between XLA's layout and that one.
struct Plan {
  dnnl::primitive conv;
  memory::desc kernel_layout;
  dnnl::primitive kernel_reorder;  // empty when the implementation takes XLA's layout
  size_t scratchpad_bytes = 0;
  std::string implementation;
  // How it was chosen (see plan_for), its place among the candidates, how many there were,
  // and its measured call when measured.
  std::string chosen_by = "the only candidate";
  size_t index = 0, candidates = 1;
  double milliseconds = 0;
};

enum Kind { kForward = 0, kInputGradient = 1, kKernelGradient = 2 };
const char* const kKindNames[] = {"forward", "input_gradient", "kernel_gradient"};

std::string dims_text(const memory::dims& dims) {
  std::string text;
  for (size_t i = 0; i < dims.size(); ++i) text += (i ? "x" : "") + std::to_string(dims[i]);
  return text;
}

// The plans' key, also the line a choice is remembered under: direction and oneDNN's
// (N, C, spatial) shapes, strides, dilation and pads; "bf16 " before it for bfloat16.
std::string describe(int kind, const Geometry& g) {
  std::string type = g.type == memory::data_type::bf16 ? "bf16 " : "";
  return type + kKindNames[kind] + " src " + dims_text(g.src) + " weights " +
         dims_text(g.weights) + " dst " + dims_text(g.dst) + " strides " +
         dims_text(g.strides) + " dilation " + dims_text(g.dilation) + " pads " +
         dims_text(g.pad_low) + " " + dims_text(g.pad_high);
}

// The plan of `pd`'s current implementation. The kernel gradient reorders out of the
// implementation's kernel layout, the others into it.
template <typename Primitive, typename PD>
std::shared_ptr<Plan> plan_of(const PD& pd, const memory::desc& kernel,
                              const memory::desc& plain, bool kernel_is_result) {
  auto& eng = cpu_engine();
  auto plan = std::make_shared<Plan>();
  plan->conv = Primitive(pd);  // oneDNN generates the implementation's code here
  plan->kernel_layout = kernel;
  plan->scratchpad_bytes = pd.scratchpad_desc().get_size();
  plan->implementation = pd.impl_info_str();
  if (kernel != plain)
    plan->kernel_reorder = dnnl::reorder(
        kernel_is_result ? dnnl::reorder::primitive_desc(eng, kernel, eng, plain)
                         : dnnl::reorder::primitive_desc(eng, plain, eng, kernel));
  return plan;
}

// An implementation oneDNN offers, named and made into a plan only when wanted (making one
// generates its code: a few milliseconds).
struct Candidate {
  std::string implementation;
  memory::desc kernel;
  std::function<std::shared_ptr<Plan>()> make;
};

bool is_reference(const Candidate& c) { return c.implementation.rfind("ref", 0) == 0; }

// Appends every implementation oneDNN offers for the descriptor `make_pd` builds (in its
// order of preference) not already in `candidates`. `make_pd` throws when no implementation
// takes the layouts asked for; then there is nothing to add.
template <typename Primitive, typename MakePd, typename KernelOf>
void add_implementations(MakePd make_pd, KernelOf kernel_of, const memory::desc& plain,
                         bool kernel_is_result, std::vector<Candidate>& candidates) {
  try {
    auto pd = make_pd();
    do {
      memory::desc kernel = kernel_of(pd);
      std::string name = pd.impl_info_str();
      bool known = std::any_of(candidates.begin(), candidates.end(), [&](const auto& c) {
        return c.implementation == name && c.kernel == kernel;
      });
      if (known) continue;
      dnnl_primitive_desc_t copy;  // this implementation's descriptor, kept as it is now
      dnnl::error::wrap_c_api(dnnl_primitive_desc_clone(&copy, pd.get()),
                              "could not copy a primitive descriptor");
      decltype(pd) at(copy);
      // `make_pd` is kept too: a gradient's descriptor points at the forward hint it holds.
      candidates.push_back({name, kernel, [make_pd, at, kernel, plain, kernel_is_result] {
        return plan_of<Primitive>(at, kernel, plain, kernel_is_result);
      }});
    } while (pd.next_impl());
  } catch (const dnnl::error&) {
  }
}

// Every implementation of one direction, for the kernel in XLA's layout and in the layouts
// oneDNN prefers (reordered), reference loops dropped when anything else runs. The first is
// what oneDNN itself would pick: for the forward pass on XLA's layout (no reorder), for the
// gradients on its preferred one.
std::vector<Candidate> candidates_for(int kind, const Geometry& g) {
  auto kernel_type = kind == kKernelGradient ? memory::data_type::f32 : g.type;
  memory::desc plain(g.weights, kernel_type, g.kernel_tag);
  memory::desc src(g.src, g.type, g.image_tag);
  memory::desc dst(g.dst, g.type, g.image_tag);
  auto weights_of = [](const auto& pd) { return pd.weights_desc(); };
  // The gradients' descriptors point at their forward hint (oneDNN reads it again in
  // next_impl), so each closure keeps a copy of it alive.
  auto hint = forward_desc(g, tag::any);
  std::vector<Candidate> candidates;
  tag first = kind == kForward ? g.kernel_tag : tag::any;
  tag second = kind == kForward ? tag::any : g.kernel_tag;
  for (tag kernel_tag : {first, second}) {
    memory::desc kernel(g.weights, kernel_type, kernel_tag);
    if (kind == kForward) {
      add_implementations<dnnl::convolution_forward>(
          [g, kernel_tag] { return forward_desc(g, kernel_tag); }, weights_of, plain, false,
          candidates);
    } else if (kind == kInputGradient) {
      add_implementations<dnnl::convolution_backward_data>([g, src, kernel, dst, hint] {
        return dnnl::convolution_backward_data::primitive_desc(
            cpu_engine(), dnnl::algorithm::convolution_direct, src, kernel, dst, g.strides,
            g.dilation, g.pad_low, g.pad_high, hint, user_scratchpad());
      }, weights_of, plain, false, candidates);
    } else {
      add_implementations<dnnl::convolution_backward_weights>([g, src, kernel, dst, hint] {
        return dnnl::convolution_backward_weights::primitive_desc(
            cpu_engine(), dnnl::algorithm::convolution_direct, src, kernel, dst, g.strides,
            g.dilation, g.pad_low, g.pad_high, hint, user_scratchpad());
      }, [](const auto& pd) { return pd.diff_weights_desc(); }, plain, true, candidates);
    }
  }
  if (std::any_of(candidates.begin(), candidates.end(),
                  [](const auto& c) { return !is_reference(c); }))
    candidates.erase(std::remove_if(candidates.begin(), candidates.end(), is_reference),
                     candidates.end());
  if (candidates.empty())
    throw std::runtime_error("oneDNN has no implementation of this convolution");
  return candidates;
}

using Run = std::function<void(const Plan&)>;

double milliseconds_of(const Run& run, const Plan& plan) {
  auto start = std::chrono::steady_clock::now();
  run(plan);
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

// The fastest candidate on the call's own operands (every implementation computes the same
// convolution, so the results stay valid): each runs once to warm up (one over 3x the best
// so far goes no further), then up to three times, its least time counting (one slower than
// 1.5x the best so far is not run again). oneDNN's first choice is not always its fastest:
// on a 2-core AMD EPYC (batch 128) its strided input gradients ran 1.4-6.9x slower than its
// `jit:avx512_core` kernels (16 -> 32, 1x1 stride 2 on 32x32: 1.44 ms against 0.21).
std::shared_ptr<Plan> fastest(const std::vector<Candidate>& candidates, const Run& run) {
  std::shared_ptr<Plan> best;
  for (size_t i = 0; i < candidates.size(); ++i) {
    auto plan = candidates[i].make();
    plan->index = i;
    double least = milliseconds_of(run, *plan);  // the warm-up
    if (!best || least < 3 * best->milliseconds) {
      least = milliseconds_of(run, *plan);
      for (int again = 0; again < 2 && (!best || least < 1.5 * best->milliseconds); ++again)
        least = std::min(least, milliseconds_of(run, *plan));
    }
    plan->milliseconds = least;
    if (!best || least < best->milliseconds) best = plan;
  }
  return best;
}

// -1: each plan is chosen as plan_for says; k >= 0: candidate k (the last if fewer), so that
// tests can check every implementation's numbers.
std::atomic<int> forced_candidate{-1};

std::mutex plans_lock;  // guards the three below
std::map<std::pair<int, std::string>, std::shared_ptr<Plan>> plans_made;
// Choices measured earlier on this machine (see onednn.py), by description: (index, name).
std::map<std::string, std::pair<size_t, std::string>> remembered;
std::string choices_file;

std::shared_ptr<Plan> cached_plan(const std::pair<int, std::string>& key) {
  std::lock_guard<std::mutex> hold(plans_lock);
  auto found = plans_made.find(key);
  return found == plans_made.end() ? nullptr : found->second;
}

// The candidate remembered for `description` if the same implementation is still at its
// place; -1 otherwise.
long remembered_index(const std::string& description, const std::vector<Candidate>& candidates) {
  std::lock_guard<std::mutex> hold(plans_lock);
  auto found = remembered.find(description);
  if (found == remembered.end()) return -1;
  auto [index, name] = found->second;
  return index < candidates.size() && candidates[index].implementation == name
             ? static_cast<long>(index) : -1;
}

void remember(const std::string& description, const Plan& plan) {
  std::lock_guard<std::mutex> hold(plans_lock);
  remembered[description] = {plan.index, plan.implementation};
  if (choices_file.empty()) return;
  // One line appended whole: processes sharing the file interleave lines, never halves. A
  // file that cannot be written (a read-only home) only costs measuring again next time.
  std::string line = description + "\t" + std::to_string(plan.index) + "\t" +
                     plan.implementation + "\n";
  if (FILE* f = std::fopen(choices_file.c_str(), "a")) {
    std::fwrite(line.data(), 1, line.size(), f);
    std::fclose(f);
  }
}

std::shared_ptr<Plan> make_candidate(const std::vector<Candidate>& candidates, size_t index,
                                     const char* chosen_by) {
  auto plan = candidates[index].make();
  plan->index = index;
  plan->chosen_by = chosen_by;
  return plan;
}

// The plan of one direction and geometry, made on its first call (`run` runs a plan on that
// call's operands) and kept for the process: the only candidate; else the one this machine
// measured fastest before (remembered, so that a resumed run computes as the interrupted one
// did); else the fastest measured now, then remembered.
std::shared_ptr<Plan> plan_for(int kind, const Geometry& g, const Run& run) {
  int forced = forced_candidate.load();
  std::string description = describe(kind, g);
  auto key = std::make_pair(forced, description);
  if (auto plan = cached_plan(key)) return plan;
  // One choice at a time: two convolutions measured side by side would slow each other.
  static std::mutex choosing;
  std::lock_guard<std::mutex> one_at_a_time(choosing);
  if (auto plan = cached_plan(key)) return plan;
  auto candidates = candidates_for(kind, g);
  long earlier = forced >= 0 ? -1 : remembered_index(description, candidates);
  std::shared_ptr<Plan> chosen;
  if (forced >= 0) {
    chosen = make_candidate(candidates, std::min<size_t>(forced, candidates.size() - 1),
                            "forced");
  } else if (candidates.size() == 1) {
    chosen = make_candidate(candidates, 0, "the only candidate");
  } else if (earlier >= 0) {
    chosen = make_candidate(candidates, earlier, "remembered");
  } else {
    chosen = fastest(candidates, run);
    chosen->chosen_by = "measured";
    remember(description, *chosen);
  }
  chosen->candidates = candidates.size();
  std::lock_guard<std::mutex> hold(plans_lock);
  plans_made[key] = chosen;
  return chosen;
}

memory wrap(const memory::dims& dims, tag t, void* data,
            memory::data_type type = memory::data_type::f32) {
  return memory(memory::desc(dims, type, t), cpu_engine(), data);
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

// The kernel memory a plan reads or writes: XLA's own, or the thread's scratch in the plan's
// layout.
memory kernel_memory(const Plan& plan, const memory& plain) {
  if (!plan.kernel_reorder) return plain;
  return memory(plan.kernel_layout, cpu_engine(),
                buffers.blocked_kernel(plan.kernel_layout.get_size()));
}

// Forward and input gradient: the kernel is an operand, reordered into the plan's layout.
Run reading_kernel(dnnl::stream& stream, memory plain, int image_in, memory in, int image_out,
                   memory out) {
  return [&stream, plain, image_in, in, image_out, out](const Plan& plan) {
    memory kernel = kernel_memory(plan, plain);
    if (plan.kernel_reorder)
      plan.kernel_reorder.execute(stream, {{DNNL_ARG_FROM, plain}, {DNNL_ARG_TO, kernel}});
    execute(plan.conv, plan.scratchpad_bytes, stream,
            {{image_in, in}, {DNNL_ARG_WEIGHTS, kernel}, {image_out, out}});
    stream.wait();
  };
}

// The one data type of a call's two operands (float32 or bfloat16).
memory::data_type common_type(const ffi::AnyBuffer& a, const ffi::AnyBuffer& b) {
  auto type = data_type_of(a);
  if (data_type_of(b) != type) throw std::runtime_error("the operands differ in data type");
  return type;
}

// A forward or input-gradient result is in its operands' type.
void check_result(const ffi::AnyBuffer& result, memory::data_type type) {
  if (data_type_of(result) != type)
    throw std::runtime_error("the result's data type is not the operands'");
}

ffi::Error Forward(ffi::AnyBuffer x, ffi::AnyBuffer kernel, ffi::Result<ffi::AnyBuffer> y,
                   ffi::Span<const int64_t> g) {
  return guarded([&] {
    auto type = common_type(x, kernel);
    check_result(*y, type);
    Geometry geo = geometry(x.dimensions(), kernel.dimensions(), y->dimensions(), g, type);
    dnnl::stream stream(cpu_engine());
    Run run = reading_kernel(
        stream, wrap(geo.weights, geo.kernel_tag, kernel.untyped_data(), type), DNNL_ARG_SRC,
        wrap(geo.src, geo.image_tag, x.untyped_data(), type), DNNL_ARG_DST,
        wrap(geo.dst, geo.image_tag, y->untyped_data(), type));
    run(*plan_for(kForward, geo, run));
  });
}

ffi::Error InputGradient(ffi::AnyBuffer dy, ffi::AnyBuffer kernel,
                         ffi::Result<ffi::AnyBuffer> dx, ffi::Span<const int64_t> g) {
  return guarded([&] {
    auto type = common_type(dy, kernel);
    check_result(*dx, type);
    Geometry geo = geometry(dx->dimensions(), kernel.dimensions(), dy.dimensions(), g, type);
    dnnl::stream stream(cpu_engine());
    Run run = reading_kernel(
        stream, wrap(geo.weights, geo.kernel_tag, kernel.untyped_data(), type),
        DNNL_ARG_DIFF_DST, wrap(geo.dst, geo.image_tag, dy.untyped_data(), type),
        DNNL_ARG_DIFF_SRC, wrap(geo.src, geo.image_tag, dx->untyped_data(), type));
    run(*plan_for(kInputGradient, geo, run));
  });
}

// The kernel gradient is float32 whatever the images' type: summed over the batch in float32.
ffi::Error KernelGradient(ffi::AnyBuffer x, ffi::AnyBuffer dy, ffi::Result<ffi::AnyBuffer> dk,
                          ffi::Span<const int64_t> g) {
  return guarded([&] {
    auto type = common_type(x, dy);
    if (dk->element_type() != ffi::DataType::F32)
      throw std::runtime_error("a kernel gradient is float32");
    Geometry geo = geometry(x.dimensions(), dk->dimensions(), dy.dimensions(), g, type);
    dnnl::stream stream(cpu_engine());
    memory plain = wrap(geo.weights, geo.kernel_tag, dk->untyped_data());
    memory src = wrap(geo.src, geo.image_tag, x.untyped_data(), type);
    memory diff_dst = wrap(geo.dst, geo.image_tag, dy.untyped_data(), type);
    Run run = [&](const Plan& plan) {
      memory kernel = kernel_memory(plan, plain);
      execute(plan.conv, plan.scratchpad_bytes, stream,
              {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, diff_dst},
               {DNNL_ARG_DIFF_WEIGHTS, kernel}});
      if (plan.kernel_reorder)
        plan.kernel_reorder.execute(stream, {{DNNL_ARG_FROM, kernel}, {DNNL_ARG_TO, plain}});
      stream.wait();
    };
    run(*plan_for(kKernelGradient, geo, run));
  });
}

// The convolution and product handlers' one signature: two operands, one result, and an int64
// attribute (a convolution's geometry, a product's transposes).
auto two_operands_one_result(const char* attribute = "geometry") {
  return ffi::Ffi::Bind()
      .Arg<ffi::AnyBuffer>()
      .Arg<ffi::AnyBuffer>()
      .Ret<ffi::AnyBuffer>()
      .Attr<ffi::Span<const int64_t>>(attribute);
}


// ---- Batch normalization (training mode) over every axis but the last ----------------------
// x is (batch, positions..., channels) row-major. `weights` (batch,) holds 1 for a real sample
// and 0 for the padding of a short last batch: the statistics count the real samples only,
// which run gathered into scratch when there are padding rows (padded rows give y = 0 and
// dx = 0).
//
// Written here rather than with oneDNN's batch normalization, for accuracy: oneDNN 3.2 sums
// each channel one value after another in float32, so over the 50,000 values per channel of
// a small convnet's feature map its variance came out 3e-4 off (relative) and its outputs
// 1e-3 off, where XLA's (and Keras's) are 1e-7 and 1e-6; given exact statistics, its gradient
// sums were still 7e-6 off over 131,072 values; it has no setting for either. Here sums run
// in float32 over 8 values, 8 of those summed in float32, then in double (kStep), which
// matches XLA's accuracy. The passes are as few as oneDNN's: one over x for both statistics (taken
// about a pivot near the mean, so that the variance's E[d^2] - E[d]^2 loses nothing), one to
// normalize; one over x and dy for the gradient's sums, one for dx. Threads (OpenMP, as
// oneDNN's) take fixed shares of the rows, so a result is the same on every run with the same
// number of threads. Built with -march=native (onednn.py): the vectors are this processor's.

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

#if defined(__AVX512F__)
constexpr int64_t kWidth = 16;  // floats in one vector register
constexpr int64_t kGroup = 4;   // vectors summed side by side (independent additions)
#elif defined(__AVX__)
constexpr int64_t kWidth = 8;
constexpr int64_t kGroup = 2;   // fewer registers
#else
constexpr int64_t kWidth = 4;
constexpr int64_t kGroup = 2;
#endif
// Sums in float32 of kStep values, kStep of those summed in float32, then in double: a
// channel's many equal values (a feature map's zeros) round the same way at every addition,
// so 64 values summed one after another lost 6e-7 of a variance, 8 + 8 keep it at float32's
// rounding (6e-8).
constexpr int64_t kStep = 8;
constexpr int64_t kBlock = kStep * kStep;

typedef float Vec __attribute__((vector_size(kWidth * sizeof(float))));
typedef float Unaligned __attribute__((vector_size(kWidth * sizeof(float)), aligned(4)));
typedef double Wide __attribute__((vector_size(kWidth * sizeof(double))));

// One float, or kWidth consecutive ones, at p: the type of the first argument says which (the
// passes below are written once for both: vectors, then the few numbers left over). Typed
// accesses, not memcpy: a float store then cannot change the pointers the loops hold, which
// stay in registers.
__attribute__((always_inline)) inline float at(float, const float* p) { return *p; }
__attribute__((always_inline)) inline Vec at(Vec, const float* p) {
  return *reinterpret_cast<const Unaligned*>(p);
}
__attribute__((always_inline)) inline void put(float* p, float v) { *p = v; }
__attribute__((always_inline)) inline void put(float* p, Vec v) {
  *reinterpret_cast<Unaligned*>(p) = v;
}

// (rows, channels) numbers seen as `wide` rows of `lanes` numbers (k rows side by side, lanes a
// multiple of kGroup vectors): lane l holds channel l % channels; `tail` numbers (fewer than
// k rows) follow the last wide row.
struct Lanes {
  int64_t rows, channels, lanes, wide, tail;
};

Lanes lanes_of(int64_t rows, int64_t channels) {
  int64_t k = kGroup * kWidth / std::gcd(channels, kGroup * kWidth);
  return {rows, channels, channels * k, rows / k, (rows % k) * channels};
}

// A per-channel vector repeated across the lanes.
std::vector<float> tiled(const Lanes& g, const float* per_channel) {
  std::vector<float> lanes(g.lanes);
  for (int64_t l = 0; l < g.lanes; ++l) lanes[l] = per_channel[l % g.channels];
  return lanes;
}

// Adds K accumulated vectors into `to`'s doubles.
template <int K>
__attribute__((always_inline)) inline void add_wide(const Vec (&acc)[K], double* to,
                                                    int64_t stride) {
  for (int k = 0; k < K; ++k) {
    typedef double Doubles __attribute__((vector_size(sizeof(Wide)), aligned(8)));
    *reinterpret_cast<Doubles*>(to + k * stride) += __builtin_convertvector(acc[k], Wide);
  }
}

// Per-channel sums of K terms of every number: term(like, e, l, acc) adds the terms of number
// e (lane l), kWidth of them when `like` is a Vec, into acc[0..K). Returns sums[k * channels +
// c] in double.
template <int K, typename Term>
std::vector<double> channel_sums(const Lanes& g, Term term) {
  const int threads = omp_get_max_threads();
  const int64_t width = K * g.lanes;
  std::vector<double> partial(static_cast<size_t>(threads) * width, 0.0);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    double* mine = partial.data() + static_cast<size_t>(t) * width;
    const int64_t begin = g.wide * t / n, end = g.wide * (t + 1) / n;
    for (int64_t first = begin; first < end; first += kBlock) {
      const int64_t last = std::min(end, first + kBlock);
      for (int64_t l = 0; l < g.lanes; l += kGroup * kWidth) {
        Vec block[kGroup][K] = {};
        for (int64_t step = first; step < last; step += kStep) {
          Vec acc[kGroup][K] = {};
          for (int64_t w = step; w < std::min(last, step + kStep); ++w)
#pragma GCC unroll 4
            for (int u = 0; u < kGroup; ++u)
              term(Vec{}, w * g.lanes + l + u * kWidth, l + u * kWidth, acc[u]);
#pragma GCC unroll 4
          for (int u = 0; u < kGroup; ++u)
            for (int k = 0; k < K; ++k) block[u][k] += acc[u][k];
        }
#pragma GCC unroll 4
        for (int u = 0; u < kGroup; ++u) add_wide<K>(block[u], mine + l + u * kWidth, g.lanes);
      }
    }
  }
  std::vector<double> sums(K * g.channels, 0.0);
  for (int64_t l = 0; l < g.tail; ++l) {
    float acc[K] = {};
    term(0.0f, g.wide * g.lanes + l, l, acc);
    for (int k = 0; k < K; ++k) sums[k * g.channels + l % g.channels] += acc[k];
  }
  for (int64_t i = 0; i < width; ++i) {
    double total = 0.0;
    for (int t = 0; t < threads; ++t) total += partial[static_cast<size_t>(t) * width + i];
    sums[(i / g.lanes) * g.channels + (i % g.lanes) % g.channels] += total;
  }
  return sums;
}

// out[e] = op(like, e, l) for every number e (lane l), threaded.
template <typename Op>
void for_each_number(const Lanes& g, float* out, Op op) {
#pragma omp parallel for schedule(static)
  for (int64_t w = 0; w < g.wide; ++w)
    for (int64_t l = 0; l < g.lanes; l += kGroup * kWidth)
#pragma GCC unroll 4
      for (int u = 0; u < kGroup; ++u) {
        const int64_t e = w * g.lanes + l + u * kWidth;
        put(out + e, op(Vec{}, e, l + u * kWidth));
      }
  for (int64_t l = 0; l < g.tail; ++l) put(out + g.wide * g.lanes + l, op(0.0f, g.wide * g.lanes + l, l));
}

// Per channel, the mean of up to 256 rows spread over x: near the mean, so that x - pivot
// keeps the variance's digits.
std::vector<float> pivot(const Lanes& g, const float* x) {
  const int64_t samples = std::min<int64_t>(256, g.rows), step = g.rows / samples;
  std::vector<double> sums(g.channels, 0.0);
  for (int64_t i = 0; i < samples; ++i)
    for (int64_t c = 0; c < g.channels; ++c) sums[c] += x[i * step * g.channels + c];
  std::vector<float> p(g.channels);
  for (int64_t c = 0; c < g.channels; ++c) p[c] = static_cast<float>(sums[c] / samples);
  return p;
}

// The mean and (biased) variance of each channel over g.rows rows of x.
void statistics(const Lanes& g, const float* x, float* mean, float* variance) {
  const double n = static_cast<double>(g.rows);
  auto p = pivot(g, x);
  auto p_lanes = tiled(g, p.data());
  const float* pl = p_lanes.data();
  auto sums = channel_sums<2>(g, [x, pl](auto like, int64_t e, int64_t l, auto* acc) {
    auto d = at(like, x + e) - at(like, pl + l);
    acc[0] += d;
    acc[1] += d * d;
  });
  for (int64_t c = 0; c < g.channels; ++c) {
    double shift = sums[c] / n;
    mean[c] = static_cast<float>(p[c] + shift);
    variance[c] = static_cast<float>(std::max(0.0, sums[g.channels + c] / n - shift * shift));
  }
}

// y = (x - mean) * gamma / sqrt(variance + epsilon) + beta.
void normalize(const Lanes& g, const float* x, const float* gamma, const float* beta,
               const float* mean, const float* variance, float epsilon, float* y) {
  std::vector<float> scale(g.channels);
  for (int64_t c = 0; c < g.channels; ++c)
    scale[c] = static_cast<float>(gamma[c] / std::sqrt(double(variance[c]) + epsilon));
  auto s_lanes = tiled(g, scale.data()), m_lanes = tiled(g, mean), b_lanes = tiled(g, beta);
  const float *s = s_lanes.data(), *m = m_lanes.data(), *b = b_lanes.data();
  for_each_number(g, y, [=](auto like, int64_t e, int64_t l) {
    return (at(like, x + e) - at(like, m + l)) * at(like, s + l) + at(like, b + l);
  });
}

// dgamma, dbeta and dx of y = (x - mean) * inv * gamma + beta, inv = 1 / sqrt(var + eps),
// the statistics x's own: dx = gamma * inv * (dy - dbeta / n - (x - mean) * inv * dgamma / n).
void normalize_backward(const Lanes& g, const float* x, const float* dy, const float* mean,
                        const float* variance, const float* gamma, float epsilon, float* dx,
                        float* dgamma, float* dbeta) {
  const double n = static_cast<double>(g.rows);
  auto m_lanes = tiled(g, mean);
  const float* m = m_lanes.data();
  auto sums = channel_sums<2>(g, [x, dy, m](auto like, int64_t e, int64_t l, auto* acc) {
    auto d = at(like, dy + e);
    acc[0] += d;
    acc[1] += d * (at(like, x + e) - at(like, m + l));
  });
  std::vector<float> a(g.channels), p(g.channels), q(g.channels);
  for (int64_t c = 0; c < g.channels; ++c) {
    double inv = 1.0 / std::sqrt(double(variance[c]) + epsilon);
    dbeta[c] = static_cast<float>(sums[c]);
    dgamma[c] = static_cast<float>(sums[g.channels + c] * inv);
    a[c] = static_cast<float>(gamma[c] * inv);
    p[c] = static_cast<float>(sums[c] / n);
    q[c] = static_cast<float>(sums[g.channels + c] * inv * inv / n);
  }
  auto a_lanes = tiled(g, a.data()), p_lanes = tiled(g, p.data()), q_lanes = tiled(g, q.data());
  const float *al = a_lanes.data(), *pl = p_lanes.data(), *ql = q_lanes.data();
  for_each_number(g, dx, [=](auto like, int64_t e, int64_t l) {
    auto centered = at(like, x + e) - at(like, m + l);
    return at(like, al + l) * (at(like, dy + e) - at(like, pl + l) - at(like, ql + l) * centered);
  });
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
    Lanes g = lanes_of(k * r.positions, r.channels);
    statistics(g, src, mean->typed_data(), variance->typed_data());
    normalize(g, src, gamma.typed_data(), beta.typed_data(), mean->typed_data(),
              variance->typed_data(), epsilon, dst);
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
    normalize_backward(lanes_of(k * r.positions, r.channels), src, diff_dst, mean.typed_data(),
                       variance.typed_data(), gamma.typed_data(), epsilon, diff_src,
                       dgamma->typed_data(), dbeta->typed_data());
    if (!all) scatter(diff_src, dx->typed_data(), real, r.batch, r.sample_size());
  });
}


// ---- Matrix products (bfloat16; wrapped by onednn_matmul.py) ------------------------------
// C (m, n) = op(A) @ op(B), row-major, op transposing an operand stored the other way round
// (attribute "transposes": [A's, B's]), so that a product's gradients read their operands
// where they lie; or stacks of them, C[i] = op(A[i]) @ op(B[i]) over a leading batch axis
// (attention's products per head). XLA's CPU backend computes a bfloat16 product in float32
// after converting both operands; oneDNN runs it on AMX or AVX512-BF16, summing in float32 and
// writing C in its result buffer's type (bfloat16, or float32 for a kernel gradient).

struct ProductPlan {
  dnnl::matmul product;
  size_t scratchpad_bytes = 0;
};

// A row-major (batch, rows, cols) stack of matrices, or of their transposes stored as
// (batch, cols, rows); batch 0 means a single matrix (2-D).
memory::desc matrix(int64_t batch, int64_t rows, int64_t cols, memory::data_type type,
                    bool transposed) {
  memory::dims strides = transposed ? memory::dims{1, rows} : memory::dims{cols, 1};
  if (batch == 0) return memory::desc({rows, cols}, type, strides);
  return memory::desc({batch, rows, cols}, type, {rows * cols, strides[0], strides[1]});
}

std::shared_ptr<ProductPlan> product_plan(int64_t batch, int64_t m, int64_t k, int64_t n,
                                          bool ta, bool tb, memory::data_type type,
                                          memory::data_type out) {
  static std::mutex lock;
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, bool, bool, int, int>;
  static std::map<Key, std::shared_ptr<ProductPlan>> plans;
  std::lock_guard<std::mutex> hold(lock);
  auto& slot = plans[{batch, m, k, n, ta, tb, static_cast<int>(type), static_cast<int>(out)}];
  if (!slot) {
    dnnl::matmul::primitive_desc pd(cpu_engine(), matrix(batch, m, k, type, ta),
                                    matrix(batch, k, n, type, tb),
                                    matrix(batch, m, n, out, false), user_scratchpad());
    slot = std::make_shared<ProductPlan>();
    slot->product = dnnl::matmul(pd);
    slot->scratchpad_bytes = pd.scratchpad_desc().get_size();
  }
  return slot;
}

ffi::Error Product(ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> c,
                   ffi::Span<const int64_t> transposes) {
  return guarded([&] {
    auto type = common_type(a, b);
    auto out = data_type_of(*c);
    bool ta = transposes[0] != 0, tb = transposes[1] != 0;
    auto ad = a.dimensions(), bd = b.dimensions(), cd = c->dimensions();
    size_t rank = cd.size();
    if ((rank != 2 && rank != 3) || ad.size() != rank || bd.size() != rank)
      throw std::runtime_error("a matrix product takes matrices, or stacks of them");
    int64_t batch = rank == 3 ? cd[0] : 0;
    if (rank == 3 && (ad[0] != batch || bd[0] != batch))
      throw std::runtime_error("a batched product's stacks differ in length");
    size_t r = rank - 2;
    int64_t m = cd[r], n = cd[r + 1];
    int64_t k = ta ? ad[r] : ad[r + 1];
    if ((ta ? ad[r + 1] : ad[r]) != m || (tb ? bd[r + 1] : bd[r]) != k ||
        (tb ? bd[r] : bd[r + 1]) != n)
      throw std::runtime_error("a matrix product's shapes do not match");
    auto plan = product_plan(batch, m, k, n, ta, tb, type, out);
    dnnl::stream stream(cpu_engine());
    auto& eng = cpu_engine();
    execute(plan->product, plan->scratchpad_bytes, stream,
            {{DNNL_ARG_SRC, memory(matrix(batch, m, k, type, ta), eng, a.untyped_data())},
             {DNNL_ARG_WEIGHTS, memory(matrix(batch, k, n, type, tb), eng, b.untyped_data())},
             {DNNL_ARG_DST, memory(matrix(batch, m, n, out, false), eng, c->untyped_data())}});
    stream.wait();
  });
}

// ---- Keras's Adam update -----------------------------------------------------------------------
// One pass over each weight's gradient g, moments m, v and value p:
//   m <- m + (g - m) c1;  v <- v + (g^2 - v) c2;  p <- p + (-alpha m) / (sqrt(v) + eps)
// (AdamW: p <- p + ((-alpha m) / (sqrt(v) + eps) - lr wd p)), the operations of
// kilnet.optimizers.keras_adam in its order, with fused multiply-adds where XLA's CPU code
// contracts them (`multiply_add`), so the numbers are XLA's to the bit
// (tests/test_adam_kernel.py).
// XLA runs that update as three passes per weight (the two moments, then the weight), each
// split over its threads. Measured on a 2-core Xeon (seed MLP, 784x128 kernel, in its training
// loop): 57 us a step in XLA's three passes, 34-43 us here. The work is shared with XLA's own
// threads (the FFI's thread pool): on threads of our own (OpenMP) the next XLA kernel waited
// for its sleeping threads to wake, 15 -> 48 us.

// x * y + z rounded once where the processor has fused multiply-adds, as XLA's code contracts
// it there (LLVM's rules: a product added to or subtracted from something becomes one
// multiply-add); rounded twice elsewhere, as XLA's code does without them. Written out, not
// left to the compiler's own contraction, whose choices differ from LLVM's (AdamW's
// (-alpha m) r - lr wd p was contracted on the other product).
inline float multiply_add(float x, float y, float z) {
#if defined(__FMA__)
  return __builtin_fmaf(x, y, z);
#else
  return x * y + z;
#endif
}

#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")

struct AdamLeaf {
  const float *g, *m, *v, *p;
  float *m_out, *v_out, *p_out;
  int64_t size;
};

struct AdamStep {
  float neg_alpha, decay, c1, c2, eps;
  bool decoupled;
};

template <bool decoupled>
void adam_loop(const float* __restrict g, const float* __restrict m, const float* __restrict v,
               const float* __restrict p, float* __restrict m_out, float* __restrict v_out,
               float* __restrict p_out, const float neg_alpha, const float decay,
               const float c1, const float c2, const float eps, int64_t lo, int64_t hi) {
#pragma omp simd
  for (int64_t i = lo; i < hi; ++i) {
    const float mi = multiply_add(g[i] - m[i], c1, m[i]);              // m + (g - m) c1
    const float vi = multiply_add(multiply_add(g[i], g[i], -v[i]), c2, v[i]);
    const float r = 1.0f / (std::sqrt(vi) + eps);
    m_out[i] = mi;
    v_out[i] = vi;
    if (decoupled)  // p + ((-alpha m) r - lr wd p)
      p_out[i] = p[i] + multiply_add(neg_alpha * mi, r, -(decay * p[i]));
    else            // p + (-alpha m) r
      p_out[i] = multiply_add(neg_alpha * mi, r, p[i]);
  }
}

void adam_range(const AdamLeaf& l, const AdamStep& s, int64_t lo, int64_t hi) {
  (s.decoupled ? adam_loop<true> : adam_loop<false>)(
      l.g, l.m, l.v, l.p, l.m_out, l.v_out, l.p_out, s.neg_alpha, s.decay, s.c1, s.c2, s.eps,
      lo, hi);
}
#pragma GCC pop_options

// Waits until `done` says all `count` pieces are finished: a short busy wait (a helper's piece
// takes microseconds), then giving the core away, so that a helper that shares it (fewer
// cores than threads; a process pinned to one core) can finish its piece: busy waiting
// alone made each update 4x slower on one core.
void wait_for(const std::atomic<int64_t>& done, int64_t count) {
  for (int spin = 0; done.load(std::memory_order_acquire) < count; ++spin) {
    if (spin < 256) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    } else {
      std::this_thread::yield();
    }
  }
}

// Pieces of at most this many numbers (a multiple of 16: whole cache lines) are the units the
// threads take: a 784x128 kernel is 4 of them, two per thread on 2 cores.
constexpr int64_t kAdamPiece = 25088;

struct AdamWork {
  std::vector<AdamLeaf> leaves;
  std::vector<std::tuple<int, int64_t, int64_t>> pieces;  // leaf, from, to
  AdamStep step;
  std::atomic<int64_t> finished{0};
  std::atomic<uint64_t> range{0};  // (first piece not taken) << 32 | (last piece not taken + 1)

  // Threads on even cores take pieces from the front, the others from the back, so each
  // core updates the same end of every weight from step to step and finds its moments in
  // its own cache: 44 -> 34 us a call for the seed MLP's weights (2-core Xeon), where
  // pieces went to whichever thread came first (XLA runs the call on either of its threads).
  int64_t claim(bool front) {
    uint64_t r = range.load(std::memory_order_relaxed);
    for (;;) {
      const uint64_t first = r >> 32, end = r & 0xffffffffu;
      if (first >= end) return -1;
      const uint64_t taken = front ? ((first + 1) << 32) | end : (first << 32) | (end - 1);
      if (range.compare_exchange_weak(r, taken, std::memory_order_relaxed))
        return static_cast<int64_t>(front ? first : end - 1);
    }
  }

  void run() {  // take pieces until none is left
#if defined(__linux__)
    const bool front = sched_getcpu() % 2 == 0;
#else
    const bool front = true;
#endif
    for (int64_t i; (i = claim(front)) >= 0;) {
      const auto& [leaf, lo, hi] = pieces[i];
      adam_range(leaves[leaf], step, lo, hi);
      finished.fetch_add(1, std::memory_order_release);
    }
  }
};

// Operands: scalars (-alpha, lr * weight decay), then per weight g, m, v, p; results per
// weight m, v, p (XLA may hand m, v, p's own buffers back: in place).
ffi::Error AdamUpdate(ffi::Buffer<ffi::F32> scalars, ffi::RemainingArgs args,
                      ffi::RemainingRets rets, float c1, float c2, float eps, bool decoupled,
                      ffi::ThreadPool pool) {
  if (args.size() % 4 != 0 || rets.size() != args.size() / 4 * 3)
    return ffi::Error::InvalidArgument("adam_update takes g, m, v, p per weight and returns "
                                       "m, v, p per weight");
  auto work = std::make_shared<AdamWork>();
  work->step = {scalars.typed_data()[0], scalars.typed_data()[1], c1, c2, eps, decoupled};
  const size_t weights = args.size() / 4;
  for (size_t w = 0; w < weights; ++w) {
    AdamLeaf leaf;
    const float** in[4] = {&leaf.g, &leaf.m, &leaf.v, &leaf.p};
    float** out[3] = {&leaf.m_out, &leaf.v_out, &leaf.p_out};
    size_t sizes[7];
    for (int k = 0; k < 4; ++k) {
      auto buffer = args.get<ffi::Buffer<ffi::F32>>(4 * w + k);
      if (!buffer.has_value()) return buffer.error();
      *in[k] = buffer->typed_data();
      sizes[k] = buffer->element_count();
    }
    for (int k = 0; k < 3; ++k) {
      auto buffer = rets.get<ffi::Buffer<ffi::F32>>(3 * w + k);
      if (!buffer.has_value()) return buffer.error();
      *out[k] = (*buffer)->typed_data();
      sizes[4 + k] = (*buffer)->element_count();
    }
    if (std::count(sizes, sizes + 7, sizes[0]) != 7)
      return ffi::Error::InvalidArgument("adam_update: a weight's gradient, moments and "
                                         "results differ in size");
    leaf.size = static_cast<int64_t>(sizes[0]);
    for (int64_t lo = 0; lo < leaf.size; lo += kAdamPiece)
      work->pieces.emplace_back(static_cast<int>(w), lo, std::min(leaf.size, lo + kAdamPiece));
    work->leaves.push_back(leaf);
  }
  const int64_t pieces = static_cast<int64_t>(work->pieces.size());
  work->range.store(static_cast<uint64_t>(pieces));
  const int64_t helpers = std::min<int64_t>(pool.num_threads() - 1, pieces - 1);
  // A helper that starts after the pieces are all taken finds none: `work` is shared so that
  // it outlives this call.
  for (int64_t h = 0; h < helpers; ++h) pool.Schedule([work]() { work->run(); });
  work->run();
  wait_for(work->finished, pieces);
  return ffi::Error::Success();
}

}  // namespace

// For onednn.py. KilnetConvPlans: one line per plan made in this process, "description:
// implementation, chosen by, index of candidates, milliseconds", written into `out` when
// `capacity` holds it; returns the text's length.
extern "C" size_t KilnetConvPlans(char* out, size_t capacity) {
  std::ostringstream text;
  std::lock_guard<std::mutex> hold(plans_lock);
  for (const auto& [key, plan] : plans_made)
    text << key.second << ": " << plan->implementation << ", " << plan->chosen_by << ", "
         << plan->index << " of " << plan->candidates << ", " << plan->milliseconds << " ms\n";
  std::string result = text.str();
  if (result.size() < capacity) std::memcpy(out, result.c_str(), result.size() + 1);
  return result.size();
}

// The file of this machine's measured choices: read now, appended to as plans are measured.
extern "C" void KilnetConvChoicesFile(const char* path) {
  std::lock_guard<std::mutex> hold(plans_lock);
  choices_file = path;
  std::ifstream lines(choices_file);
  std::string line;
  while (std::getline(lines, line)) {  // description \t index \t implementation; last wins
    auto first = line.find('\t'), second = line.rfind('\t');
    if (first == std::string::npos || first == second) continue;
    try {
      remembered[line.substr(0, first)] = {std::stoul(line.substr(first + 1, second - first - 1)),
                                           line.substr(second + 1)};
    } catch (const std::exception&) {  // a damaged line: that plan is measured again
    }
  }
}

extern "C" void KilnetConvForceCandidate(int index) { forced_candidate = index; }

// 1 when oneDNN runs bfloat16 on this processor's own instructions (AVX512-BF16, AMX), which
// its ISA masks include; 0 where it would emulate them, slower than float32.
extern "C" int KilnetNativeBfloat16() {
  auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  auto bf16 = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_bf16);
  return (isa & bf16) == bf16;
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(KilnetConvForward, Forward, two_operands_one_result());
XLA_FFI_DEFINE_HANDLER_SYMBOL(KilnetConvInputGradient, InputGradient,
                              two_operands_one_result());
XLA_FFI_DEFINE_HANDLER_SYMBOL(KilnetConvKernelGradient, KernelGradient,
                              two_operands_one_result());
XLA_FFI_DEFINE_HANDLER_SYMBOL(KilnetProduct, Product, two_operands_one_result("transposes"));
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
XLA_FFI_DEFINE_HANDLER_SYMBOL(KilnetAdamUpdate, AdamUpdate,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .RemainingArgs()
                                  .RemainingRets()
                                  .Attr<float>("c1")
                                  .Attr<float>("c2")
                                  .Attr<float>("epsilon")
                                  .Attr<bool>("decoupled")
                                  .Ctx<ffi::ThreadPool>());
