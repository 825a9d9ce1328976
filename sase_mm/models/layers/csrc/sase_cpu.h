// What the compiled CPU kernels of sase_mm share (SASE, arXiv 2411.08333):
// the statistics' (layers/csrc/sase_stats.cpp) and the fused block's
// (models/sase/fast/csrc/sase_fused.cpp). The loader (layers/compiled.py)
// keys each build by this header as well as its source, and compiles the
// source from a copy with this header beside it.
#pragma once

#include <torch/extension.h>

#include <algorithm>

// The loops are compiled for AVX-512 and AVX2 beside the baseline, and the
// loader picks the CPU's best at run time (GCC's function multiversioning;
// other compilers build the baseline only).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    defined(__linux__)
#define SASE_CLONES \
  __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SASE_CLONES
#endif

namespace sase_cpu {

// Tasks of less work than this many values run on one thread (ATen's
// GRAIN_SIZE): at the small CIFAR shapes, waking a second thread costs more
// than it saves.
constexpr int64_t kGrain = 32768;

// Items per task for items of about `work` values each.
inline int64_t grain(int64_t work) {
  return std::max<int64_t>(1, kGrain / std::max<int64_t>(1, work));
}

// A tensor argument of a kernel: on the CPU and contiguous, else an error
// that names it.
inline void check(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

}  // namespace sase_cpu
