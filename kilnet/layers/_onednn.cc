// oneDNN's kernels called by XLA on CPU through its FFI (kilnet/layers/_onednn.py builds
// and registers this file): convolutions (forward, input gradient, kernel gradient; wrapped
// by _conv_onednn.py) and training-mode batch normalization (forward, backward; wrapped by
// _batch_norm_onednn.py).
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

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
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
// (N, C, spatial) shapes, strides, dilation and pads.
std::string describe(int kind, const Geometry& g) {
  return std::string(kKindNames[kind]) + " src " + dims_text(g.src) + " weights " +
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
  memory::desc plain(g.weights, memory::data_type::f32, g.kernel_tag);
  memory::desc src(g.src, memory::data_type::f32, g.image_tag);
  memory::desc dst(g.dst, memory::data_type::f32, g.image_tag);
  auto weights_of = [](const auto& pd) { return pd.weights_desc(); };
  // The gradients' descriptors point at their forward hint (oneDNN reads it again in
  // next_impl), so each closure keeps a copy of it alive.
  auto hint = forward_desc(g, tag::any);
  std::vector<Candidate> candidates;
  tag first = kind == kForward ? g.kernel_tag : tag::any;
  tag second = kind == kForward ? tag::any : g.kernel_tag;
  for (tag kernel_tag : {first, second}) {
    memory::desc kernel(g.weights, memory::data_type::f32, kernel_tag);
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
// Choices measured earlier on this machine (see _onednn.py), by description: (index, name).
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

ffi::Error Forward(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> kernel,
                   ffi::ResultBuffer<ffi::F32> y, ffi::Span<const int64_t> g) {
  return guarded([&] {
    Geometry geo = geometry(x.dimensions(), kernel.dimensions(), y->dimensions(), g);
    dnnl::stream stream(cpu_engine());
    Run run = reading_kernel(stream, wrap(geo.weights, geo.kernel_tag, kernel.typed_data()),
                             DNNL_ARG_SRC, wrap(geo.src, geo.image_tag, x.typed_data()),
                             DNNL_ARG_DST, wrap(geo.dst, geo.image_tag, y->typed_data()));
    run(*plan_for(kForward, geo, run));
  });
}

ffi::Error InputGradient(ffi::Buffer<ffi::F32> dy, ffi::Buffer<ffi::F32> kernel,
                         ffi::ResultBuffer<ffi::F32> dx, ffi::Span<const int64_t> g) {
  return guarded([&] {
    Geometry geo = geometry(dx->dimensions(), kernel.dimensions(), dy.dimensions(), g);
    dnnl::stream stream(cpu_engine());
    Run run = reading_kernel(stream, wrap(geo.weights, geo.kernel_tag, kernel.typed_data()),
                             DNNL_ARG_DIFF_DST, wrap(geo.dst, geo.image_tag, dy.typed_data()),
                             DNNL_ARG_DIFF_SRC, wrap(geo.src, geo.image_tag, dx->typed_data()));
    run(*plan_for(kInputGradient, geo, run));
  });
}

ffi::Error KernelGradient(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> dy,
                          ffi::ResultBuffer<ffi::F32> dk, ffi::Span<const int64_t> g) {
  return guarded([&] {
    Geometry geo = geometry(x.dimensions(), dk->dimensions(), dy.dimensions(), g);
    dnnl::stream stream(cpu_engine());
    memory plain = wrap(geo.weights, geo.kernel_tag, dk->typed_data());
    memory src = wrap(geo.src, geo.image_tag, x.typed_data());
    memory diff_dst = wrap(geo.dst, geo.image_tag, dy.typed_data());
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

// For _onednn.py. KilnetConvPlans: one line per plan made in this process, "description:
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
