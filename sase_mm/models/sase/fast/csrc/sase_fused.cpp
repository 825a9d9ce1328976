// Fused CPU kernels for the fixed SASE block (sase_mm/models/sase/fast/fused/).
//
// SASE: Searching Architecture for Squeeze and Excitation operations
// (arXiv 2411.08333). On CPU the block is memory-bound: each full-size pass
// over the (B, C, H, W) input costs about as much as the whole small part of
// the block. These kernels compute, in one pass each, what the PyTorch path
// computes in several:
//
//   row_stats        sum, max and number of maxima over H*W of every (b, c),
//                    and the sums over C of every (b, h, w)
//   gated_pow4_sum   sum_c g4[b, c] * x[b, c, n]^4 (no x^4 map)
//   pow4_rowdot      sum_n x[b, c, n]^4 * v[b, n]
//   grad_dots        half the sums over n and over c of grad * x
//   combine          grad * (a_c + b_n) + r_c + s_n + u_c v_n
//                    + [x == mx_c] share_c + k_c x^3 q_n
//   scale            x * (a_c + b_n)
//
// where a_c + b_n = 1 + s2_c / 2 + s5_n / 2 is the block's output factor,
// a = s2 * 0.5 + 1, b = s5 * 0.5 (sase/dag.py's residual_factors) computed
// from the maps s2 (B, C) and s5 (B, N) in the kernels.
//
// and the small maps of the excitations, where per-operator overhead
// dominates (sase_mm/models/sase/fast/map_conv.py, fused/spatial.py):
//
//   map_conv         K "same" convolutions of 1-channel maps (odd kernels,
//                    no bias), and its adjoints in the maps and the kernels
//   chain_gate       sigmoid(conv_L(relu(... conv_0(x)))), and its backward
//   mixer_forward    relu(bn(w0 a + w1 b)), BN of one channel, and its
//                    backward
//
// Tensors are contiguous, x viewed as (B, C, N) with N = H * W; float or
// double. Sums accumulate in the scalar type, as the BLAS products of the
// PyTorch path do (the mixer's BN statistics in double, as ATen's);
// "omp simd" lets the compiler vectorise the reductions (it may reorder
// them, as BLAS does). Rows are split over ATen's threads.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "sase_cpu.h"

namespace {

using sase_cpu::check;
using sase_cpu::grain;
using sase_cpu::kGrain;

// Columns per task in column-wise kernels: a task streams through the C
// rows of its batch (the hardware prefetcher follows one row at a time)
// and keeps its columns' sums (64 KiB of floats at most) in L1 / L2.
constexpr int64_t kBlock = 16384;

struct Dims {
  int64_t b, c, n;
  explicit Dims(const torch::Tensor& x)
      : b(x.size(0)), c(x.size(1)), n(x.numel() / (x.size(0) * x.size(1))) {}
};

// ---- per-row and per-block loops (outside the dispatch macro: pragmas) ----
// Sum, max and number of maxima of a row; adds the row to col.
template <typename T>
SASE_CLONES void row_stats_row(const T* row, int64_t n, T* sum, T* max,
                               T* count, T* col) {
  T s = 0, m = row[0];
#pragma omp simd reduction(+ : s) reduction(max : m)
  for (int64_t i = 0; i < n; ++i) {
    s += row[i];
    m = row[i] > m ? row[i] : m;
    col[i] += row[i];
  }
  if (std::isnan(s)) {  // a NaN (or inf - inf): amax propagates NaN
    for (int64_t i = 0; i < n; ++i)
      if (std::isnan(row[i])) m = row[i];
  }
  T k = 0;
#pragma omp simd reduction(+ : k)
  for (int64_t i = 0; i < n; ++i) k += row[i] == m ? T(1) : T(0);
  *sum = s;
  *max = m;
  *count = k;
}

template <typename T>
SASE_CLONES T pow4_dot(const T* row, const T* v, int64_t n) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) {
    const T sq = row[i] * row[i];
    s += sq * sq * v[i];
  }
  return s;
}

template <typename T>
SASE_CLONES void add_pow4(T* acc, const T* row, T g, int64_t len) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    const T sq = row[i] * row[i];
    acc[i] += g * (sq * sq);
  }
}

template <typename T>
SASE_CLONES T add_product(T* acc, const T* g, const T* x, int64_t len) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < len; ++i) {
    const T p = g[i] * x[i];
    acc[i] += p;
    s += p;
  }
  return s;
}

template <typename T>
struct CombineArgs {
  const T *x, *grad, *s2, *s5, *r, *s, *u, *v, *mx, *share, *k, *q;
  T* out;
  int64_t c, n;
};

template <typename T>
SASE_CLONES void combine_row(const CombineArgs<T>& p, int64_t row) {
  const int64_t bi = row / p.c, n = p.n;
  const T *xr = p.x + row * n, *gr = p.grad + row * n, *s5 = p.s5 + bi * n;
  const T ar = p.s2[row] * T(0.5) + T(1), rr = p.r ? p.r[row] : T(0);
  T* o = p.out + row * n;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) o[i] = gr[i] * (ar + s5[i] * T(0.5)) + rr;
  if (p.s) {
    const T* sr = p.s + bi * n;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) o[i] += sr[i];
  }
  if (p.u) {
    const T ur = p.u[row];
    const T* vr = p.v + bi * n;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) o[i] += ur * vr[i];
  }
  if (p.mx) {
    const T m = p.mx[row], sh = p.share[row];
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) o[i] += xr[i] == m ? sh : T(0);
  }
  if (p.k) {
    const T kr = p.k[row];
    const T* qr = p.q + bi * n;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) o[i] += kr * (xr[i] * xr[i] * xr[i]) * qr[i];
  }
}

// o = x (a + s5 / 2), a = s2 / 2 + 1 of the row.
template <typename T>
SASE_CLONES void scale_row(const T* xr, const T* s5, T a, T* o, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) o[i] = xr[i] * (a + s5[i] * T(0.5));
}

template <typename T>
const T* opt_ptr(const c10::optional<torch::Tensor>& t) {
  if (!t.has_value() || !t->defined()) return nullptr;
  check(*t, "combine input");
  return t->data_ptr<T>();
}

// ---- convolutions of 1-channel maps (excitation convs) ----
// K kernels of odd sizes (kh_j, kw_j), zero "same" padding, no bias, on
// maps x of (B, Cx, H, W) with Cx = 1 (every kernel reads map 0) or K
// (kernel j reads map j); the kernels flattened and concatenated in w.
struct Taps {
  std::vector<int64_t> kh, kw, off;  // sizes and offsets into w
  int64_t total = 0, mh = 1, mw = 1;  // taps; largest kh, kw
  explicit Taps(const std::vector<int64_t>& sizes) {
    TORCH_CHECK(!sizes.empty() && sizes.size() % 2 == 0,
                "map_conv: sizes must be (kh, kw) pairs");
    for (size_t i = 0; i < sizes.size(); i += 2) {
      TORCH_CHECK(sizes[i] > 0 && sizes[i + 1] > 0 && sizes[i] % 2 == 1 &&
                      sizes[i + 1] % 2 == 1,
                  "map_conv: kernel sizes must be odd and positive");
      kh.push_back(sizes[i]);
      kw.push_back(sizes[i + 1]);
      off.push_back(total);
      total += sizes[i] * sizes[i + 1];
      mh = std::max(mh, sizes[i]);
      mw = std::max(mw, sizes[i + 1]);
    }
  }
  int64_t k() const { return static_cast<int64_t>(kh.size()); }
};

template <typename T>
SASE_CLONES void relu_row(T* out, const T* in, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = in[i] > T(0) ? in[i] : T(0);
}

// A map in a zero border of (mh / 2, mw / 2), rows of wp = W + 2 (mw / 2),
// so that every tap of a kernel is one contiguous loop over h * wp values
// (the wp - W columns past each row's end are computed and dropped). Its
// slack at the end keeps the last row's overreach inside the buffer.
template <typename T>
struct Padded {
  int64_t h, w, ph, pw, wp;
  std::vector<T> buf;
  Padded(int64_t h_, int64_t w_, int64_t mh, int64_t mw)
      : h(h_), w(w_), ph(mh / 2), pw(mw / 2), wp(w_ + 2 * (mw / 2)),
        buf((h_ + 2 * (mh / 2)) * (w_ + 2 * (mw / 2)) + mw, T(0)) {}
  void load(const T* map, bool relu = false) {  // the border stays zero
    for (int64_t r = 0; r < h; ++r) {
      T* row = buf.data() + (r + ph) * wp + pw;
      if (!relu) {
        std::copy(map + r * w, map + (r + 1) * w, row);
        continue;
      }
      relu_row(row, map + r * w, w);
    }
  }
  // The value read at tap (u, v) of a (kh, kw) kernel for output 0.
  const T* at(int64_t u, int64_t v, int64_t kh, int64_t kw) const {
    return buf.data() + (u + ph - kh / 2) * wp + (v + pw - kw / 2);
  }
};

// acc[i] += sum over taps of k[u, v] (flipped: k[kh-1-u, kw-1-v])
// in.at(u, v)[i], for i < len.
template <typename T>
SASE_CLONES void taps_axpy(T* acc, const Padded<T>& in, const T* k,
                           int64_t kh, int64_t kw, bool flip, int64_t len) {
  for (int64_t u = 0; u < kh; ++u)
    for (int64_t v = 0; v < kw; ++v) {
      const T w = flip ? k[(kh - 1 - u) * kw + (kw - 1 - v)] : k[u * kw + v];
      const T* src = in.at(u, v, kh, kw);
#pragma omp simd
      for (int64_t i = 0; i < len; ++i) acc[i] += w * src[i];
    }
}

// out[u, v] += sum over i < len of in.at(u, v)[i] g[i].
template <typename T>
SASE_CLONES void taps_dot(T* out, const Padded<T>& in, const T* g, int64_t kh,
                          int64_t kw, int64_t len) {
  for (int64_t u = 0; u < kh; ++u)
    for (int64_t v = 0; v < kw; ++v) {
      const T* src = in.at(u, v, kh, kw);
      T dot = 0;
#pragma omp simd reduction(+ : dot)
      for (int64_t i = 0; i < len; ++i) dot += src[i] * g[i];
      out[u * kw + v] += dot;
    }
}

// The (h, wp) rows of acc without their dropped columns, into out (h, w).
template <typename T>
void unpad(T* out, const T* acc, int64_t h, int64_t w, int64_t wp) {
  for (int64_t r = 0; r < h; ++r)
    std::copy(acc + r * wp, acc + r * wp + w, out + r * w);
}

// Convolves maps (B, K or Cx, H, W) with the kernels (flip: transposed),
// summing kernel outputs that land on one map (Cx = 1 and flip).
template <typename T>
void conv_maps(const T* in, int64_t cin, T* out, int64_t cout, const T* w,
               const Taps& t, int64_t b, int64_t h, int64_t wd, bool flip) {
  const int64_t n = h * wd, k = t.k();
  // One task per output map; the K kernels of a shared input map (Cx = 1)
  // write K maps (forward) or sum into one (transposed).
  at::parallel_for(0, b * cout, grain(n * t.total / k),
                   [&](int64_t p0, int64_t p1) {
    Padded<T> pad(h, wd, t.mh, t.mw);
    std::vector<T> acc(h * pad.wp);
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t bi = p / cout, c = p % cout;
      std::fill(acc.begin(), acc.end(), T(0));
      const int64_t j0 = cout == 1 && cin == k ? 0 : c;
      const int64_t j1 = cout == 1 && cin == k ? k : c + 1;
      for (int64_t j = j0; j < j1; ++j) {
        pad.load(in + (bi * cin + (cin == 1 ? 0 : j)) * n);
        taps_axpy(acc.data(), pad, w + t.off[j], t.kh[j], t.kw[j], flip,
                  h * pad.wp);
      }
      unpad(out + p * n, acc.data(), h, wd, pad.wp);
    }
  });
}

// ---- the operators ----
// (sum, max, count of max) over H*W of every (b, c): three (B, C) tensors;
// and the sum over C of every (b, n): (B, N).
std::vector<torch::Tensor> row_stats(torch::Tensor x) {
  check(x, "x");
  const Dims d(x);
  auto sum = torch::empty({d.b, d.c}, x.options());
  auto mx = torch::empty_like(sum), cnt = torch::empty_like(sum);
  auto col = torch::zeros({d.b, d.n}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "row_stats", [&] {
    const scalar_t* px = x.data_ptr<scalar_t>();
    scalar_t *ps = sum.data_ptr<scalar_t>(), *pm = mx.data_ptr<scalar_t>();
    scalar_t *pc = cnt.data_ptr<scalar_t>(), *pcol = col.data_ptr<scalar_t>();
    // By batch: its column sums add up its C rows in order.
    at::parallel_for(0, d.b, grain(d.c * d.n), [&](int64_t b0, int64_t b1) {
      for (int64_t bi = b0; bi < b1; ++bi)
        for (int64_t r = bi * d.c; r < (bi + 1) * d.c; ++r)
          row_stats_row(px + r * d.n, d.n, ps + r, pm + r, pc + r,
                        pcol + bi * d.n);
    });
  });
  return {sum, mx, cnt, col};
}

// out[b, n] = sum_c g4[b, c] * x[b, c, n]^4: (B, N).
torch::Tensor gated_pow4_sum(torch::Tensor x, torch::Tensor g4) {
  check(x, "x");
  check(g4, "g4");
  const Dims d(x);
  auto out = torch::empty({d.b, d.n}, x.options());
  const int64_t nb = (d.n + kBlock - 1) / kBlock;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gated_pow4_sum", [&] {
    const scalar_t *px = x.data_ptr<scalar_t>(), *pg = g4.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    at::parallel_for(0, d.b * nb, grain(d.c * std::min(kBlock, d.n)),
                     [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t bi = t / nb, lo = (t % nb) * kBlock;
        const int64_t len = std::min(kBlock, d.n - lo);
        scalar_t* acc = po + bi * d.n + lo;
        std::fill(acc, acc + len, scalar_t(0));
        for (int64_t ci = 0; ci < d.c; ++ci)
          add_pow4(acc, px + (bi * d.c + ci) * d.n + lo, pg[bi * d.c + ci], len);
      }
    });
  });
  return out;
}

// out[b, c] = sum_n x[b, c, n]^4 * v[b, n]: (B, C).
torch::Tensor pow4_rowdot(torch::Tensor x, torch::Tensor v) {
  check(x, "x");
  check(v, "v");
  const Dims d(x);
  auto out = torch::empty({d.b, d.c}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "pow4_rowdot", [&] {
    const scalar_t *px = x.data_ptr<scalar_t>(), *pv = v.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    at::parallel_for(0, d.b * d.c, grain(d.n), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        po[r] = pow4_dot(px + r * d.n, pv + (r / d.c) * d.n, d.n);
    });
  });
  return out;
}

// (row (B, C), col (B, N)): half the sums over n and over c of grad * x,
// the gradients of the maps s2 and s5 of x (1 + s2 / 2 + s5 / 2).
std::vector<torch::Tensor> grad_dots(torch::Tensor grad, torch::Tensor x) {
  check(x, "x");
  check(grad, "grad");
  TORCH_CHECK(grad.sizes() == x.sizes(), "grad and x differ in shape");
  const Dims d(x);
  const int64_t nb = (d.n + kBlock - 1) / kBlock;
  auto col = torch::empty({d.b, d.n}, x.options());
  auto part = torch::empty({d.b, nb, d.c}, x.options());  // per-block rows
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "grad_dots", [&] {
    const scalar_t *px = x.data_ptr<scalar_t>(), *pg = grad.data_ptr<scalar_t>();
    scalar_t *pc = col.data_ptr<scalar_t>(), *pp = part.data_ptr<scalar_t>();
    at::parallel_for(0, d.b * nb, grain(d.c * std::min(kBlock, d.n)),
                     [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t bi = t / nb, blk = t % nb, lo = blk * kBlock;
        const int64_t len = std::min(kBlock, d.n - lo);
        scalar_t* acc = pc + bi * d.n + lo;
        std::fill(acc, acc + len, scalar_t(0));
        for (int64_t ci = 0; ci < d.c; ++ci) {
          const int64_t off = (bi * d.c + ci) * d.n + lo;
          pp[(bi * nb + blk) * d.c + ci] = add_product(acc, pg + off, px + off, len);
        }
      }
    });
  });
  return {(nb == 1 ? part.view({d.b, d.c}) : part.sum(1)).mul_(0.5),
          col.mul_(0.5)};
}

// The block's input gradient (B, C, H, W):
// grad * (a_c + b_n) + r_c + s_n + u_c v_n + [x == mx_c] share_c
// + k_c x^3 q_n, a and b from the maps s2 (B, C) and s5 (B, N). Row terms
// are (B, C), column terms (B, N); every term after s5 is optional (u with
// v, mx with share, k with q).
torch::Tensor combine(torch::Tensor grad, torch::Tensor x, torch::Tensor s2,
                      torch::Tensor s5, c10::optional<torch::Tensor> r,
                      c10::optional<torch::Tensor> s,
                      c10::optional<torch::Tensor> u,
                      c10::optional<torch::Tensor> v,
                      c10::optional<torch::Tensor> mx,
                      c10::optional<torch::Tensor> share,
                      c10::optional<torch::Tensor> k,
                      c10::optional<torch::Tensor> q) {
  check(x, "x");
  check(grad, "grad");
  check(s2, "s2");
  check(s5, "s5");
  TORCH_CHECK(grad.sizes() == x.sizes(), "grad and x differ in shape");
  const Dims d(x);
  auto out = torch::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "combine", [&] {
    CombineArgs<scalar_t> p{
        x.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(),
        s2.data_ptr<scalar_t>(), s5.data_ptr<scalar_t>(),
        opt_ptr<scalar_t>(r), opt_ptr<scalar_t>(s), opt_ptr<scalar_t>(u),
        opt_ptr<scalar_t>(v), opt_ptr<scalar_t>(mx), opt_ptr<scalar_t>(share),
        opt_ptr<scalar_t>(k), opt_ptr<scalar_t>(q), out.data_ptr<scalar_t>(),
        d.c, d.n};
    TORCH_CHECK(!p.u == !p.v, "combine: u needs v");
    TORCH_CHECK(!p.mx == !p.share, "combine: mx needs share");
    TORCH_CHECK(!p.k == !p.q, "combine: k needs q");
    at::parallel_for(0, d.b * d.c, grain(d.n), [&](int64_t r0, int64_t r1) {
      for (int64_t row = r0; row < r1; ++row) combine_row(p, row);
    });
  });
  return out;
}

// x * (a_c + b_n): the block's output x * (1 + s2 / 2 + s5 / 2), for the
// maps s2 (B, C) and s5 (B, N).
torch::Tensor scale(torch::Tensor x, torch::Tensor s2, torch::Tensor s5) {
  check(x, "x");
  check(s2, "s2");
  check(s5, "s5");
  const Dims d(x);
  auto out = torch::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "scale", [&] {
    const scalar_t *px = x.data_ptr<scalar_t>();
    const scalar_t *p2 = s2.data_ptr<scalar_t>(), *p5 = s5.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    at::parallel_for(0, d.b * d.c, grain(d.n), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        scale_row(px + r * d.n, p5 + (r / d.c) * d.n,
                  p2[r] * scalar_t(0.5) + scalar_t(1), po + r * d.n, d.n);
    });
  });
  return out;
}

// ---- convolutions of 1-channel maps ----
// y[b, j] = conv(x[b, cx(j)], w_j): (B, K, H, W).
torch::Tensor map_conv(torch::Tensor x, torch::Tensor w,
                       std::vector<int64_t> sizes) {
  check(x, "x");
  check(w, "w");
  const Taps t(sizes);
  TORCH_CHECK(x.dim() == 4, "map_conv: x must be (B, Cx, H, W)");
  TORCH_CHECK(w.numel() == t.total, "map_conv: ", t.total,
              " kernel taps expected, got ", w.numel());
  const int64_t b = x.size(0), cx = x.size(1), h = x.size(2), wd = x.size(3);
  TORCH_CHECK(cx == 1 || cx == t.k(), "map_conv: x has ", cx,
              " maps; 1 or one per kernel (", t.k(), ") expected");
  auto y = torch::empty({b, t.k(), h, wd}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "map_conv", [&] {
    conv_maps(x.data_ptr<scalar_t>(), cx, y.data_ptr<scalar_t>(), t.k(),
              w.data_ptr<scalar_t>(), t, b, h, wd, false);
  });
  return y;
}

// The adjoint of map_conv in x: gx[b, c] = the sum over the kernels j
// that read map c of the transposed convolution of g[b, j] with w_j (the
// convolution with the flipped kernel): (B, Cx, H, W).
torch::Tensor map_conv_input_grad(torch::Tensor g, torch::Tensor w,
                                  std::vector<int64_t> sizes, int64_t cx) {
  check(g, "g");
  check(w, "w");
  const Taps t(sizes);
  TORCH_CHECK(g.dim() == 4 && g.size(1) == t.k(),
              "map_conv_input_grad: g must be (B, K, H, W)");
  TORCH_CHECK(w.numel() == t.total, "map_conv_input_grad: ", t.total,
              " kernel taps expected, got ", w.numel());
  TORCH_CHECK(cx == 1 || cx == t.k(),
              "map_conv_input_grad: cx must be 1 or K");
  const int64_t b = g.size(0), h = g.size(2), wd = g.size(3);
  auto gx = torch::empty({b, cx, h, wd}, g.options());
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "map_conv_input_grad", [&] {
    conv_maps(g.data_ptr<scalar_t>(), t.k(), gx.data_ptr<scalar_t>(), cx,
              w.data_ptr<scalar_t>(), t, b, h, wd, true);
  });
  return gx;
}

// The adjoint of map_conv in w: gw_j[u, v] = sum over b, r, s of
// x[b, cx(j), r + u - kh_j / 2, s + v - kw_j / 2] g[b, j, r, s], flat as w.
// Batches are summed in chunks of a fixed size, then the chunks in order,
// so the result does not depend on the number of threads.
torch::Tensor map_conv_weight_grad(torch::Tensor x, torch::Tensor g,
                                   std::vector<int64_t> sizes) {
  check(x, "x");
  check(g, "g");
  const Taps t(sizes);
  TORCH_CHECK(x.dim() == 4 && g.dim() == 4,
              "map_conv_weight_grad: x and g must be 4-D");
  const int64_t b = g.size(0), k = g.size(1), h = g.size(2), wd = g.size(3);
  const int64_t cx = x.size(1), n = h * wd;
  TORCH_CHECK(k == t.k() && (cx == 1 || cx == k) && x.size(0) == b &&
                  x.size(2) == h && x.size(3) == wd,
              "map_conv_weight_grad: x and g do not match the kernels");
  constexpr int64_t kChunk = 8;  // batches per partial sum
  const int64_t nc = (b + kChunk - 1) / kChunk;
  auto part = torch::zeros({nc, t.total}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "map_conv_weight_grad", [&] {
    const scalar_t *px = x.data_ptr<scalar_t>(), *pg = g.data_ptr<scalar_t>();
    scalar_t* pp = part.data_ptr<scalar_t>();
    at::parallel_for(0, nc, grain(kChunk * n * t.total),
                     [&](int64_t c0, int64_t c1) {
      Padded<scalar_t> pad(h, wd, t.mh, t.mw);
      std::vector<scalar_t> gp(h * pad.wp, scalar_t(0));  // g in wp rows
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t bi = c * kChunk; bi < std::min(b, (c + 1) * kChunk);
             ++bi)
          for (int64_t j = 0; j < k; ++j) {
            if (cx != 1 || j == 0) pad.load(px + (bi * cx + j) * n);
            const scalar_t* gj = pg + (bi * k + j) * n;
            for (int64_t r = 0; r < h; ++r)
              std::copy(gj + r * wd, gj + (r + 1) * wd,
                        gp.begin() + r * pad.wp);
            taps_dot(pp + c * t.total + t.off[j], pad, gp.data(), t.kh[j],
                     t.kw[j], h * pad.wp);
          }
    });
  });
  return nc == 1 ? part.view({t.total}) : part.sum(0);
}

// d = g s (1 - s): the gradient before a sigmoid of output s.
template <typename T>
SASE_CLONES void sigmoid_grad_row(T* d, const T* g, const T* s, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) d[i] = g[i] * s[i] * (T(1) - s[i]);
}

// d = [pre > 0] a: the gradient before a ReLU of input pre.
template <typename T>
SASE_CLONES void relu_grad_row(T* d, const T* a, const T* pre, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) d[i] = pre[i] > T(0) ? a[i] : T(0);
}

// ---- conv chains: an excitation's convolutions, ReLU between, sigmoid ----
// One map per batch (B, 1, H, W); L kernels, layer l convolving the ReLU of
// layer l - 1's output (the input itself for l = 0); the gate is the
// sigmoid of the last layer's output.

// {gate (B, 1, H, W), pre (B, L - 1, H, W)}: the gate and the outputs of
// layers 0 .. L - 2 before their ReLU (for the backward pass).
std::vector<torch::Tensor> chain_gate(torch::Tensor x, torch::Tensor w,
                                      std::vector<int64_t> sizes) {
  check(x, "x");
  check(w, "w");
  const Taps t(sizes);
  TORCH_CHECK(x.dim() == 4 && x.size(1) == 1,
              "chain_gate: x must be (B, 1, H, W)");
  TORCH_CHECK(w.numel() == t.total, "chain_gate: ", t.total,
              " kernel taps expected, got ", w.numel());
  const int64_t b = x.size(0), h = x.size(2), wd = x.size(3), n = h * wd;
  const int64_t layers = t.k();
  auto gate = torch::empty_like(x);
  auto pre = torch::empty({b, layers - 1, h, wd}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "chain_gate", [&] {
    const scalar_t *px = x.data_ptr<scalar_t>(), *pw = w.data_ptr<scalar_t>();
    scalar_t *pg = gate.data_ptr<scalar_t>(), *pp = pre.data_ptr<scalar_t>();
    at::parallel_for(0, b, grain(n * t.total), [&](int64_t b0, int64_t b1) {
      Padded<scalar_t> pad(h, wd, t.mh, t.mw);
      std::vector<scalar_t> acc(h * pad.wp);
      for (int64_t bi = b0; bi < b1; ++bi)
        for (int64_t l = 0; l < layers; ++l) {
          const scalar_t* in =
              l == 0 ? px + bi * n : pp + (bi * (layers - 1) + l - 1) * n;
          pad.load(in, l > 0);
          std::fill(acc.begin(), acc.end(), scalar_t(0));
          taps_axpy(acc.data(), pad, pw + t.off[l], t.kh[l], t.kw[l], false,
                    h * pad.wp);
          unpad(l + 1 < layers ? pp + (bi * (layers - 1) + l) * n
                               : pg + bi * n,
                acc.data(), h, wd, pad.wp);
        }
    });
  });
  gate.sigmoid_();  // ATen's vectorised sigmoid
  return {gate, pre};
}

// {gx (B, 1, H, W) (empty unless need_x), gw (flat as w)} of chain_gate
// for the gate's gradient g. Batches are summed in chunks of a fixed size,
// then the chunks in order (the result does not depend on the threads).
std::vector<torch::Tensor> chain_gate_backward(
    torch::Tensor g, torch::Tensor x, torch::Tensor pre, torch::Tensor gate,
    torch::Tensor w, std::vector<int64_t> sizes, bool need_x) {
  for (const auto& [tensor, name] :
       {std::pair{g, "g"}, {x, "x"}, {pre, "pre"}, {gate, "gate"}, {w, "w"}})
    check(tensor, name);
  const Taps t(sizes);
  const int64_t b = x.size(0), h = x.size(2), wd = x.size(3), n = h * wd;
  const int64_t layers = t.k();
  TORCH_CHECK(g.sizes() == x.sizes() && gate.sizes() == x.sizes() &&
                  pre.size(1) == layers - 1 && w.numel() == t.total,
              "chain_gate_backward: inputs do not match chain_gate's");
  constexpr int64_t kChunk = 8;  // batches per partial sum
  const int64_t nc = (b + kChunk - 1) / kChunk;
  auto part = torch::zeros({nc, t.total}, x.options());
  auto gx = need_x ? torch::empty_like(x) : torch::empty({0}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "chain_gate_backward", [&] {
    const scalar_t *px = x.data_ptr<scalar_t>(), *pw = w.data_ptr<scalar_t>();
    const scalar_t *pg = g.data_ptr<scalar_t>(), *pp = pre.data_ptr<scalar_t>();
    const scalar_t* ps = gate.data_ptr<scalar_t>();
    scalar_t* pgx = need_x ? gx.data_ptr<scalar_t>() : nullptr;
    scalar_t* ppart = part.data_ptr<scalar_t>();
    at::parallel_for(0, nc, grain(2 * kChunk * n * t.total),
                     [&](int64_t c0, int64_t c1) {
      Padded<scalar_t> pin(h, wd, t.mh, t.mw), pd(h, wd, t.mh, t.mw);
      const int64_t wp = pin.wp;
      std::vector<scalar_t> d(h * wp, scalar_t(0)), acc(h * wp);
      std::vector<scalar_t> dn(n);
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t bi = c * kChunk; bi < std::min(b, (c + 1) * kChunk);
             ++bi) {
          // d: the last layer's output gradient, in rows of wp (zeros past
          // each row's end, so that taps_dot ignores those columns).
          for (int64_t r = 0; r < h; ++r)
            sigmoid_grad_row(d.data() + r * wp, pg + bi * n + r * wd,
                             ps + bi * n + r * wd, wd);
          for (int64_t l = layers - 1; l >= 0; --l) {
            const scalar_t* prev =
                l == 0 ? nullptr : pp + (bi * (layers - 1) + l - 1) * n;
            pin.load(l == 0 ? px + bi * n : prev, l > 0);
            taps_dot(ppart + c * t.total + t.off[l], pin, d.data(), t.kh[l],
                     t.kw[l], h * wp);
            if (l == 0 && !need_x) break;
            // The input's gradient: the transposed convolution of d.
            for (int64_t r = 0; r < h; ++r)
              std::copy(d.begin() + r * wp, d.begin() + r * wp + wd,
                        dn.begin() + r * wd);
            pd.load(dn.data());
            std::fill(acc.begin(), acc.end(), scalar_t(0));
            taps_axpy(acc.data(), pd, pw + t.off[l], t.kh[l], t.kw[l], true,
                      h * wp);
            if (l == 0) {
              unpad(pgx + bi * n, acc.data(), h, wd, wp);
              break;
            }
            for (int64_t r = 0; r < h; ++r)  // through the ReLU
              relu_grad_row(d.data() + r * wp, acc.data() + r * wp,
                            prev + r * wd, wd);
          }
        }
    });
  });
  return {gx, nc == 1 ? part.view({t.total}) : part.sum(0)};
}

// ---- the spatial mixer: relu(bn(w0 a + w1 b)), BN of one channel ----
// a, b: (B, 1, H, W) maps, n values each. Sums over them accumulate in
// double within chunks of a fixed size, then the chunks in order (the
// result does not depend on the number of threads).
constexpr int64_t kSumChunk = 4096;

// Sums of f(lo, hi, out) over the chunks of [0, n); f writes `width`
// partial sums of its chunk to out.
template <typename F>
std::vector<double> chunked_sums(int64_t n, int width, const F& f) {
  const int64_t nc = (n + kSumChunk - 1) / kSumChunk;
  std::vector<double> parts(nc * width, 0.0), total(width, 0.0);
  at::parallel_for(0, nc, grain(kSumChunk), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      f(c * kSumChunk, std::min(n, (c + 1) * kSumChunk), &parts[c * width]);
  });
  for (int64_t c = 0; c < nc; ++c)
    for (int k = 0; k < width; ++k) total[k] += parts[c * width + k];
  return total;
}

// m = w0 a + w1 b; returns the sum of m.
template <typename T>
SASE_CLONES double mix_sum(T* m, const T* a, const T* b, T w0, T w1,
                           int64_t n) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) {
    m[i] = w0 * a[i] + w1 * b[i];
    s += m[i];
  }
  return s;
}

// The sum of (m - mean)^2.
template <typename T>
SASE_CLONES double sq_dev_sum(const T* m, double mean, int64_t n) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) {
    const double d = m[i] - mean;
    s += d * d;
  }
  return s;
}

// xhat = (m - mean) istd in place of m; out = relu(xhat gamma + beta).
template <typename T>
SASE_CLONES void normalize_relu(T* x, T* out, T mean, T istd, T gamma,
                                T beta, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    x[i] = (x[i] - mean) * istd;
    const T y = x[i] * gamma + beta;
    out[i] = y > T(0) ? y : T(0);
  }
}

// Sums of gy and gy xhat, gy = g where out > 0 (through the ReLU).
template <typename T>
SASE_CLONES void relu_grad_sums(const T* g, const T* out, const T* x,
                                int64_t n, double* sums) {
  double s = 0, sx = 0;
#pragma omp simd reduction(+ : s, sx)
  for (int64_t i = 0; i < n; ++i) {
    const T gy = out[i] > T(0) ? g[i] : T(0);
    s += gy;
    sx += double(gy) * x[i];
  }
  sums[0] = s;
  sums[1] = sx;
}

// gm = k (gy - mg - xhat mgx); ga = w0 gm, gb = w1 gm; sums of gm a, gm b.
template <typename T>
SASE_CLONES void mixer_grads(T* ga, T* gb, const T* g, const T* out,
                             const T* x, const T* a, const T* b, T k, T mg,
                             T mgx, T w0, T w1, int64_t n, double* sums) {
  double s0 = 0, s1 = 0;
#pragma omp simd reduction(+ : s0, s1)
  for (int64_t i = 0; i < n; ++i) {
    const T gy = out[i] > T(0) ? g[i] : T(0);
    const T gm = k * (gy - mg - x[i] * mgx);
    ga[i] = w0 * gm;
    gb[i] = w1 * gm;
    s0 += double(gm) * a[i];
    s1 += double(gm) * b[i];
  }
  sums[0] = s0;
  sums[1] = s1;
}

template <typename T>
const T* opt_data(const c10::optional<torch::Tensor>& t) {
  return t.has_value() && t->defined() ? t->data_ptr<T>() : nullptr;
}

// {out (B, 1, H, W), xhat (the normalised mix), invstd (1)}. Training:
// batch statistics (the running ones, when given, are updated in place
// with `factor`: r = (1 - factor) r + factor s, the variance unbiased);
// else the running statistics. gamma / beta absent: 1 / 0.
std::vector<torch::Tensor> mixer_forward(
    torch::Tensor a, torch::Tensor b, torch::Tensor w,
    c10::optional<torch::Tensor> gamma, c10::optional<torch::Tensor> beta,
    c10::optional<torch::Tensor> running_mean,
    c10::optional<torch::Tensor> running_var, bool training, double factor,
    double eps) {
  check(a, "a");
  check(b, "b");
  check(w, "w");
  TORCH_CHECK(a.sizes() == b.sizes() && w.numel() == 2,
              "mixer_forward: a, b must match and w have 2 values");
  const int64_t n = a.numel();
  const bool has_running = running_mean.has_value() &&
                           running_mean->defined() &&
                           running_var.has_value() && running_var->defined();
  TORCH_CHECK(training || has_running,
              "mixer_forward: evaluation needs the running statistics");
  auto xhat = torch::empty_like(a), out = torch::empty_like(a);
  auto invstd = torch::empty({1}, a.options());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "mixer_forward", [&] {
    using T = scalar_t;
    const T *pa = a.data_ptr<T>(), *pb = b.data_ptr<T>();
    const T w0 = w.data_ptr<T>()[0], w1 = w.data_ptr<T>()[1];
    const T* pgm = opt_data<T>(gamma);
    const T* pbt = opt_data<T>(beta);
    T* px = xhat.data_ptr<T>();
    double mean, istd;
    if (training) {
      mean = chunked_sums(n, 1, [&](int64_t lo, int64_t hi, double* s) {
               s[0] = mix_sum(px + lo, pa + lo, pb + lo, w0, w1, hi - lo);
             })[0] / n;
      const double ss =
          chunked_sums(n, 1, [&](int64_t lo, int64_t hi, double* s) {
            s[0] = sq_dev_sum(px + lo, mean, hi - lo);
          })[0];
      const double var = ss / n;
      istd = 1.0 / std::sqrt(var + eps);
      if (has_running) {
        T* rm = running_mean->data_ptr<T>();
        T* rv = running_var->data_ptr<T>();
        const double unbiased = n > 1 ? ss / (n - 1) : var;
        rm[0] = T((1 - factor) * rm[0] + factor * mean);
        rv[0] = T((1 - factor) * rv[0] + factor * unbiased);
      }
    } else {
      mean = running_mean->data_ptr<T>()[0];
      istd = 1.0 / std::sqrt(double(running_var->data_ptr<T>()[0]) + eps);
      chunked_sums(n, 1, [&](int64_t lo, int64_t hi, double* s) {
        s[0] = mix_sum(px + lo, pa + lo, pb + lo, w0, w1, hi - lo);
      });
    }
    const T m = T(mean), is = T(istd);
    const T gm = pgm ? pgm[0] : T(1), bt = pbt ? pbt[0] : T(0);
    T* po = out.data_ptr<T>();
    at::parallel_for(0, n, kGrain, [&](int64_t lo, int64_t hi) {
      normalize_relu(px + lo, po + lo, m, is, gm, bt, hi - lo);
    });
    invstd.data_ptr<T>()[0] = is;
  });
  return {out, xhat, invstd};
}

// {ga, gb, gw (2), ggamma (1), gbeta (1)} of mixer_forward for the
// output's gradient g (training: through the batch statistics).
std::vector<torch::Tensor> mixer_backward(
    torch::Tensor g, torch::Tensor a, torch::Tensor b, torch::Tensor w,
    c10::optional<torch::Tensor> gamma, torch::Tensor xhat,
    torch::Tensor out, torch::Tensor invstd, bool training) {
  for (const auto& [tensor, name] :
       {std::pair{g, "g"}, {a, "a"}, {b, "b"}, {w, "w"}, {xhat, "xhat"},
        {out, "out"}})
    check(tensor, name);
  const int64_t n = a.numel();
  TORCH_CHECK(g.sizes() == a.sizes() && b.sizes() == a.sizes() &&
                  xhat.sizes() == a.sizes() && out.sizes() == a.sizes(),
              "mixer_backward: maps differ in shape");
  auto ga = torch::empty_like(a), gb = torch::empty_like(a);
  auto gw = torch::empty({2}, a.options());
  auto ggamma = torch::empty({1}, a.options());
  auto gbeta = torch::empty({1}, a.options());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "mixer_backward", [&] {
    using T = scalar_t;
    const T *pg = g.data_ptr<T>(), *pa = a.data_ptr<T>();
    const T *pb = b.data_ptr<T>(), *px = xhat.data_ptr<T>();
    const T* po = out.data_ptr<T>();
    const T w0 = w.data_ptr<T>()[0], w1 = w.data_ptr<T>()[1];
    const T* pgm = opt_data<T>(gamma);
    const T gm = pgm ? pgm[0] : T(1), is = invstd.data_ptr<T>()[0];
    const auto sums =
        chunked_sums(n, 2, [&](int64_t lo, int64_t hi, double* s) {
          relu_grad_sums(pg + lo, po + lo, px + lo, hi - lo, s);
        });
    const T mg = training ? T(sums[0] / n) : T(0);
    const T mgx = training ? T(sums[1] / n) : T(0);
    T *pga = ga.data_ptr<T>(), *pgb = gb.data_ptr<T>();
    const auto wsums =
        chunked_sums(n, 2, [&](int64_t lo, int64_t hi, double* s) {
          mixer_grads(pga + lo, pgb + lo, pg + lo, po + lo, px + lo, pa + lo,
                      pb + lo, gm * is, mg, mgx, w0, w1, hi - lo, s);
        });
    gw.data_ptr<T>()[0] = T(wsums[0]);
    gw.data_ptr<T>()[1] = T(wsums[1]);
    ggamma.data_ptr<T>()[0] = T(sums[1]);
    gbeta.data_ptr<T>()[0] = T(sums[0]);
  });
  return {ga, gb, gw, ggamma, gbeta};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("row_stats", &row_stats,
        "sum, max, count of max over H*W; sums over C");
  m.def("gated_pow4_sum", &gated_pow4_sum, "sum_c g4 x^4");
  m.def("pow4_rowdot", &pow4_rowdot, "sum_n x^4 v");
  m.def("grad_dots", &grad_dots, "half the sums of grad * x over n, c");
  m.def("combine", &combine, "the block's input gradient");
  m.def("scale", &scale, "x * (1 + s2_c / 2 + s5_n / 2)");
  m.def("map_conv", &map_conv, "convolutions of 1-channel maps");
  m.def("map_conv_input_grad", &map_conv_input_grad,
        "map_conv's adjoint in x");
  m.def("map_conv_weight_grad", &map_conv_weight_grad,
        "map_conv's adjoint in w");
  m.def("chain_gate", &chain_gate, "a conv chain's gate");
  m.def("chain_gate_backward", &chain_gate_backward,
        "chain_gate's gradients");
  m.def("mixer_forward", &mixer_forward, "the spatial mixer");
  m.def("mixer_backward", &mixer_backward, "mixer_forward's gradients");
}
