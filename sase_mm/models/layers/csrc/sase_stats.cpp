// CPU kernels of the squeeze statistics (sase_mm/models/layers/).
//
// SASE: Searching Architecture for Squeeze and Excitation operations
// (arXiv 2411.08333). During the search the seven squeezes of an edge read
// the same statistics of one map; on CPU each full-size pass over the map
// costs about as much as all the small work of the edge. These kernels
// compute, in one pass each over memory (a second pass reads a row or a
// block of columns back from cache):
//
//   moments              over H*W of every (b, c), or over C of every
//                        (b, h, w): the sum, the max and its number of
//                        ties, the sum of x^4 and the central sums of
//                        d^2 and d^3, d = x - sum / n (layers/
//                        stat_formulas.py: Sum, Amax, Pow4Sum, CentralSums)
//   moments_backward     dL/dx from the gradients of all of them
//   ln_square_sum        sum_c (w LN_HW(x) + b)^2, LN without affine over
//                        the H*W positions of each (b, c) (layers/
//                        squeeze.py: _LayerNormSquareSum)
//   ln_square_sum_backward  its gradients for x, w and b
//   window_mean          the means of whole kh x kw windows of (M, H, W)
//                        maps (layers/squeeze.py: adaptive_avg_pool with
//                        H, W multiples of the output size)
//   window_mean_backward its adjoint: each output gradient / (kh kw)
//                        spread over its window
//
// Tensors are contiguous, x viewed as (B, C, N) with N = H * W; float or
// double. Statistics over H*W are (B, C), over C (B, N). Sums accumulate in
// the scalar type, as the PyTorch path's do; "omp simd" lets the compiler
// vectorise the reductions (it may reorder them, as BLAS does). Work is
// split over ATen's threads.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "sase_cpu.h"

namespace {

using sase_cpu::check;
using sase_cpu::grain;

constexpr int64_t kBlock = 256;  // columns per task of the over-C kernels
constexpr int64_t kRows = 8;     // grain of row-wise kernels

struct Dims {
  int64_t b, c, n;
  explicit Dims(const torch::Tensor& x)
      : b(x.size(0)), c(x.size(1)), n(x.numel() / (x.size(0) * x.size(1))) {
    TORCH_CHECK(x.dim() >= 2 && x.numel() > 0, "x must be a non-empty "
                "(B, C, ...) tensor");
  }
};

template <typename T>
const T* opt_ptr(const c10::optional<torch::Tensor>& t, const char* name) {
  if (!t.has_value() || !t->defined()) return nullptr;
  check(*t, name);
  return t->data_ptr<T>();
}

// ---------------------------------------------------------------------------
// moments over H*W: one row of n values per (b, c).
// ---------------------------------------------------------------------------
template <typename T>
struct RowOut {
  T *sum, *max, *pow4, *ties, *s2, *s3;  // the last three may be null
};

template <typename T>
SASE_CLONES void moments_row(const T* x, int64_t n, const RowOut<T>& o,
                             int64_t r) {
  T s = 0, m = x[0], q = 0;
#pragma omp simd reduction(+ : s, q) reduction(max : m)
  for (int64_t i = 0; i < n; ++i) {
    s += x[i];
    m = x[i] > m ? x[i] : m;
    const T sq = x[i] * x[i];
    q += sq * sq;
  }
  if (std::isnan(s)) {  // a NaN (or inf - inf): amax propagates NaN
    for (int64_t i = 0; i < n; ++i)
      if (std::isnan(x[i])) m = x[i];
  }
  o.sum[r] = s;
  o.max[r] = m;
  o.pow4[r] = q;
  if (!o.ties) return;
  // Second pass over the row (in cache): centred on the mean, as
  // CentralSums.value is, not a difference of raw moments.
  const T mean = s / T(n);
  T k = 0, a = 0, c = 0;
#pragma omp simd reduction(+ : k, a, c)
  for (int64_t i = 0; i < n; ++i) {
    const T d = x[i] - mean, d2 = d * d;
    a += d2;
    c += d2 * d;
    k += x[i] == m ? T(1) : T(0);
  }
  o.ties[r] = k;
  o.s2[r] = a;
  o.s3[r] = c;
}

// ---------------------------------------------------------------------------
// moments over C: a block of `len` columns of one batch element, reduced
// over its c rows (x points at row 0, rows n apart).
// ---------------------------------------------------------------------------
template <typename T>
SASE_CLONES void moments_cols(const T* x, int64_t c, int64_t n, int64_t len,
                              const RowOut<T>& o, int64_t off) {
  T *s = o.sum + off, *m = o.max + off, *q = o.pow4 + off;
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    s[i] = x[i];
    m[i] = x[i];
    const T sq = x[i] * x[i];
    q[i] = sq * sq;
  }
  for (int64_t ci = 1; ci < c; ++ci) {
    const T* xr = x + ci * n;
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) {
      s[i] += xr[i];
      m[i] = xr[i] > m[i] ? xr[i] : m[i];
      const T sq = xr[i] * xr[i];
      q[i] += sq * sq;
    }
  }
  for (int64_t i = 0; i < len; ++i) {
    if (std::isnan(s[i])) {  // as in moments_row
      for (int64_t ci = 0; ci < c; ++ci)
        if (std::isnan(x[ci * n + i])) m[i] = x[ci * n + i];
    }
  }
  if (!o.ties) return;
  T mean[kBlock];
  T *k = o.ties + off, *a = o.s2 + off, *b = o.s3 + off;
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    mean[i] = s[i] / T(c);
    k[i] = a[i] = b[i] = T(0);
  }
  for (int64_t ci = 0; ci < c; ++ci) {
    const T* xr = x + ci * n;
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) {
      const T d = xr[i] - mean[i], d2 = d * d;
      a[i] += d2;
      b[i] += d2 * d;
      k[i] += xr[i] == m[i] ? T(1) : T(0);
    }
  }
}

// [sum, max, pow4, ties, s2, s3]: over H*W (B, C) tensors, over C (B, N);
// the last three undefined unless `second` (the max's ties or the central
// sums are wanted: a second pass over the same rows or columns).
std::vector<torch::Tensor> moments(torch::Tensor x, bool over_c,
                                   bool second) {
  check(x, "x");
  const Dims d(x);
  const int64_t cols = over_c ? d.n : d.c;
  auto sum = torch::empty({d.b, cols}, x.options());
  auto mx = torch::empty_like(sum), p4 = torch::empty_like(sum);
  torch::Tensor ties, s2, s3;
  if (second) {
    ties = torch::empty_like(sum);
    s2 = torch::empty_like(sum);
    s3 = torch::empty_like(sum);
  }
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "moments", [&] {
    using T = scalar_t;
    const T* px = x.data_ptr<T>();
    const RowOut<T> o{sum.data_ptr<T>(), mx.data_ptr<T>(), p4.data_ptr<T>(),
                      second ? ties.data_ptr<T>() : nullptr,
                      second ? s2.data_ptr<T>() : nullptr,
                      second ? s3.data_ptr<T>() : nullptr};
    if (!over_c) {
      at::parallel_for(0, d.b * d.c, kRows, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) moments_row(px + r * d.n, d.n, o, r);
      });
    } else {
      const int64_t nb = (d.n + kBlock - 1) / kBlock;
      at::parallel_for(0, d.b * nb, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t bi = t / nb, lo = (t % nb) * kBlock;
          moments_cols(px + bi * d.c * d.n + lo, d.c, d.n,
                       std::min(kBlock, d.n - lo), o, bi * d.n + lo);
        }
      });
    }
  });
  return {sum, mx, p4, ties, s2, s3};
}

// ---------------------------------------------------------------------------
// moments_backward: per element
//   dx = r + [x == mx] share + d (a2 + a3 d) + k4 x^3,   d = x - mean,
// with the coefficients per statistic (per (b, c) over H*W, per (b, n)
// over C): r the broadcast terms, share = g_max / ties, a2 = 2 g_s2,
// a3 = 3 g_s3, k4 = 4 g_pow4.
// ---------------------------------------------------------------------------
template <typename T>
struct Coefs {
  const T *r, *mx, *share, *mean, *a2, *a3, *k4;
};

// A coefficient of the row: one scalar over H*W, a column of it over C.
template <typename T>
struct Scalar {
  T v;
  T operator[](int64_t) const { return v; }
};
template <typename T>
struct Column {
  const T* p;
  T operator[](int64_t i) const { return p[i]; }
};

template <bool MAX, bool CEN, bool POW, typename T, typename C>
SASE_CLONES void backward_row(const T* x, T* o, int64_t n, C r, C mx,
                              C share, C mean, C a2, C a3, C k4) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i];
    T g = r[i];
    if (MAX) {  // both loaded first: a select, which vectorises
      const T m = mx[i], sh = share[i];
      g += v == m ? sh : T(0);
    }
    if (CEN) {
      const T d = v - mean[i];
      g += d * (a2[i] + a3[i] * d);
    }
    if (POW) g += k4[i] * (v * v * v);
    o[i] = g;
  }
}

template <bool MAX, bool CEN, bool POW, typename T>
void backward_all(const T* px, T* po, const Dims& d, bool over_c,
                  const Coefs<T>& k) {
  if (!over_c) {
    at::parallel_for(0, d.b * d.c, kRows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        auto at = [&](const T* p) { return Scalar<T>{p ? p[r] : T(0)}; };
        backward_row<MAX, CEN, POW, T>(px + r * d.n, po + r * d.n, d.n,
                                       at(k.r), at(k.mx), at(k.share),
                                       at(k.mean), at(k.a2), at(k.a3),
                                       at(k.k4));
      }
    });
  } else {
    at::parallel_for(0, d.b * d.c, kRows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t off = (r / d.c) * d.n;
        auto at = [&](const T* p) { return Column<T>{p ? p + off : p}; };
        backward_row<MAX, CEN, POW, T>(px + r * d.n, po + r * d.n, d.n,
                                       at(k.r), at(k.mx), at(k.share),
                                       at(k.mean), at(k.a2), at(k.a3),
                                       at(k.k4));
      }
    });
  }
}

// dL/dx (x's shape). `r` is required; (mx, share) together, (mean, a2, a3)
// together, k4 alone are optional: a missing group adds nothing.
torch::Tensor moments_backward(torch::Tensor x, bool over_c, torch::Tensor r,
                               c10::optional<torch::Tensor> mx,
                               c10::optional<torch::Tensor> share,
                               c10::optional<torch::Tensor> mean,
                               c10::optional<torch::Tensor> a2,
                               c10::optional<torch::Tensor> a3,
                               c10::optional<torch::Tensor> k4) {
  check(x, "x");
  check(r, "r");
  const Dims d(x);
  TORCH_CHECK(r.numel() == d.b * (over_c ? d.n : d.c),
              "moments_backward: r has the wrong size");
  auto out = torch::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "moments_backward", [&] {
    using T = scalar_t;
    const Coefs<T> k{r.data_ptr<T>(), opt_ptr<T>(mx, "mx"),
                     opt_ptr<T>(share, "share"), opt_ptr<T>(mean, "mean"),
                     opt_ptr<T>(a2, "a2"), opt_ptr<T>(a3, "a3"),
                     opt_ptr<T>(k4, "k4")};
    TORCH_CHECK(!k.mx == !k.share, "moments_backward: mx needs share");
    TORCH_CHECK(!k.mean == !k.a2 && !k.a2 == !k.a3,
                "moments_backward: mean, a2 and a3 go together");
    for (const auto& t : {mx, share, mean, a2, a3, k4})
      if (t.has_value() && t->defined())
        TORCH_CHECK(t->numel() == r.numel(),
                    "moments_backward: a coefficient has the wrong size");
    const T* px = x.data_ptr<T>();
    T* po = out.data_ptr<T>();
    const bool mxb = k.mx, cen = k.mean, pw = k.k4;
    // One instantiation per combination of terms: no test in the loop.
    if (mxb && cen && pw) backward_all<true, true, true>(px, po, d, over_c, k);
    else if (mxb && cen) backward_all<true, true, false>(px, po, d, over_c, k);
    else if (mxb && pw) backward_all<true, false, true>(px, po, d, over_c, k);
    else if (cen && pw) backward_all<false, true, true>(px, po, d, over_c, k);
    else if (mxb) backward_all<true, false, false>(px, po, d, over_c, k);
    else if (cen) backward_all<false, true, false>(px, po, d, over_c, k);
    else if (pw) backward_all<false, false, true>(px, po, d, over_c, k);
    else backward_all<false, false, false>(px, po, d, over_c, k);
  });
  return out;
}

// ---------------------------------------------------------------------------
// ln_square_sum: out[b, n] = sum_c (w[n] xhat + bias[n])^2, xhat the
// (b, c) row centred and divided by sqrt(var + eps), var its biased
// variance (two passes, centred). One task per batch element: its rows are
// read once from memory, each twice more from cache.
// ---------------------------------------------------------------------------
template <typename T>
SASE_CLONES void row_mean_rstd(const T* x, int64_t n, double eps, T* mean,
                               T* rstd) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += x[i];
  const T mu = s / T(n);
  T v = 0;
#pragma omp simd reduction(+ : v)
  for (int64_t i = 0; i < n; ++i) {
    const T dv = x[i] - mu;
    v += dv * dv;
  }
  *mean = mu;
  *rstd = T(1) / std::sqrt(v / T(n) + T(eps));
}

template <typename T>
SASE_CLONES void ln_square_sum_batch(const T* x, int64_t c, int64_t n,
                                     const T* w, const T* bias, double eps,
                                     T* acc, T* mean, T* rstd) {
  std::fill(acc, acc + n, T(0));
  for (int64_t ci = 0; ci < c; ++ci) {
    const T* xr = x + ci * n;
    row_mean_rstd(xr, n, eps, mean + ci, rstd + ci);
    const T mu = mean[ci], rs = rstd[ci];
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const T y = w[i] * ((xr[i] - mu) * rs) + bias[i];
      acc[i] += y * y;
    }
  }
}

// [out (B, N), mean (B, C), rstd (B, C)].
std::vector<torch::Tensor> ln_square_sum(torch::Tensor x, torch::Tensor w,
                                         torch::Tensor bias, double eps) {
  check(x, "x");
  check(w, "weight");
  check(bias, "bias");
  const Dims d(x);
  TORCH_CHECK(w.numel() == d.n && bias.numel() == d.n,
              "weight and bias must have H * W elements");
  auto out = torch::empty({d.b, d.n}, x.options());
  auto mean = torch::empty({d.b, d.c}, x.options());
  auto rstd = torch::empty_like(mean);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ln_square_sum", [&] {
    using T = scalar_t;
    const T *px = x.data_ptr<T>(), *pw = w.data_ptr<T>();
    const T* pb = bias.data_ptr<T>();
    T *po = out.data_ptr<T>(), *pm = mean.data_ptr<T>();
    T* pr = rstd.data_ptr<T>();
    at::parallel_for(0, d.b, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t bi = b0; bi < b1; ++bi)
        ln_square_sum_batch(px + bi * d.c * d.n, d.c, d.n, pw, pb, eps,
                            po + bi * d.n, pm + bi * d.c, pr + bi * d.c);
    });
  });
  return {out, mean, rstd};
}

template <typename T>
SASE_CLONES void ln_square_sum_grad_row(const T* x, const T* g, const T* w,
                                        const T* bias, T mu, T rs, int64_t n,
                                        T* gw, T* gb, T* o) {
  T m1 = 0, m2 = 0;
#pragma omp simd reduction(+ : m1, m2)
  for (int64_t i = 0; i < n; ++i) {
    const T xh = (x[i] - mu) * rs;
    const T gy = T(2) * g[i] * (w[i] * xh + bias[i]);
    gw[i] += gy * xh;
    gb[i] += gy;
    const T gh = gy * w[i];
    m1 += gh;
    m2 += gh * xh;
  }
  if (!o) return;
  m1 /= T(n);
  m2 /= T(n);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const T xh = (x[i] - mu) * rs;
    const T gh = T(2) * g[i] * (w[i] * xh + bias[i]) * w[i];
    o[i] = rs * (gh - m1 - xh * m2);
  }
}

// [grad_x (x's shape) or undefined, grad_w (N), grad_b (N)] for the
// output gradient g (B, N). With gy = 2 g (w xhat + bias) and
// gh = gy w (the gradient of xhat), LayerNorm's:
//   grad_x = rstd (gh - mean_n(gh) - xhat mean_n(gh xhat)),
//   grad_w = sum_{b, c} gy xhat,  grad_b = sum_{b, c} gy.
// Per row: one pass from memory (the two means, the parameter sums in a
// buffer per thread), one from cache (grad_x).
std::vector<torch::Tensor> ln_square_sum_backward(
    torch::Tensor x, torch::Tensor w, torch::Tensor bias, torch::Tensor mean,
    torch::Tensor rstd, torch::Tensor g, bool need_x) {
  check(x, "x");
  check(w, "weight");
  check(bias, "bias");
  check(mean, "mean");
  check(rstd, "rstd");
  check(g, "grad");
  const Dims d(x);
  TORCH_CHECK(g.numel() == d.b * d.n, "grad must be (B, 1, H, W)");
  const int64_t nt = at::get_num_threads();
  auto part = torch::zeros({nt, 2, d.n}, x.options());
  torch::Tensor gx;
  if (need_x) gx = torch::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ln_square_sum_backward", [&] {
    using T = scalar_t;
    const T *px = x.data_ptr<T>(), *pw = w.data_ptr<T>();
    const T *pb = bias.data_ptr<T>(), *pm = mean.data_ptr<T>();
    const T *pr = rstd.data_ptr<T>(), *pg = g.data_ptr<T>();
    T* pp = part.data_ptr<T>();
    T* po = need_x ? gx.data_ptr<T>() : nullptr;
    at::parallel_for(0, d.b * d.c, kRows, [&](int64_t r0, int64_t r1) {
      const int64_t tid = at::get_thread_num();
      TORCH_CHECK(tid < nt, "ln_square_sum_backward: thread ", tid,
                  " beyond ", nt);
      T* gw = pp + tid * 2 * d.n;
      for (int64_t r = r0; r < r1; ++r)
        ln_square_sum_grad_row(px + r * d.n, pg + (r / d.c) * d.n, pw, pb,
                               pm[r], pr[r], d.n, gw, gw + d.n,
                               po ? po + r * d.n : nullptr);
    });
  });
  auto sums = part.sum(0);  // (2, N)
  return {gx, sums[0], sums[1]};
}

// ---------------------------------------------------------------------------
// window means: (M, H, W) -> (M, H / kh, W / kw). The maps are M * H rows of
// W values; output row r (of M * H / kh) covers input rows r kh ..
// r kh + kh - 1. Per output row: the kh input rows summed into one row
// (vectorised), then groups of kw of it; the sums in the scalar type.
// ---------------------------------------------------------------------------
void check_windows(const torch::Tensor& t, int64_t kh, int64_t kw,
                   const char* name) {
  check(t, name);
  TORCH_CHECK(t.dim() == 3 && kh >= 1 && kw >= 1, name,
              " must be (M, H, W) and the window at least 1 x 1");
}

template <typename T>
SASE_CLONES void window_mean_row(const T* in, int64_t kh, int64_t kw,
                                 int64_t w, T scale, T* acc, T* out) {
  std::copy(in, in + w, acc);
  for (int64_t i = 1; i < kh; ++i) {
    const T* row = in + i * w;
#pragma omp simd
    for (int64_t j = 0; j < w; ++j) acc[j] += row[j];
  }
  for (int64_t o = 0; o < w / kw; ++o) {
    T s = 0;
    for (int64_t t = 0; t < kw; ++t) s += acc[o * kw + t];
    out[o] = s * scale;
  }
}

// [out (M, H / kh, W / kw)].
torch::Tensor window_mean(torch::Tensor x, int64_t kh, int64_t kw) {
  check_windows(x, kh, kw, "window_mean: x");
  const int64_t m = x.size(0), h = x.size(1), w = x.size(2);
  TORCH_CHECK(h % kh == 0 && w % kw == 0, "window_mean: H, W (", h, ", ",
              w, ") must be multiples of the window (", kh, ", ", kw, ")");
  const int64_t rows = m * (h / kh), ow = w / kw;
  auto out = torch::empty({m, h / kh, ow}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "window_mean", [&] {
    using T = scalar_t;
    const T* px = x.data_ptr<T>();
    T* po = out.data_ptr<T>();
    const T scale = T(1) / T(kh * kw);
    at::parallel_for(0, rows, grain(kh * w), [&](int64_t r0, int64_t r1) {
      std::vector<T> acc(w);
      for (int64_t r = r0; r < r1; ++r)
        window_mean_row(px + r * kh * w, kh, kw, w, scale, acc.data(),
                        po + r * ow);
    });
  });
  return out;
}

// [grad_x (M, H, W)] of window_mean for the output gradient g
// (M, H / kh, W / kw): g / (kh kw) at every position of its window.
torch::Tensor window_mean_backward(torch::Tensor g, int64_t kh, int64_t kw) {
  check_windows(g, kh, kw, "window_mean_backward: grad");
  const int64_t m = g.size(0), oh = g.size(1), ow = g.size(2);
  const int64_t w = ow * kw;
  auto gx = torch::empty({m, oh * kh, w}, g.options());
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "window_mean_backward", [&] {
    using T = scalar_t;
    const T* pg = g.data_ptr<T>();
    T* po = gx.data_ptr<T>();
    const T scale = T(1) / T(kh * kw);
    at::parallel_for(0, m * oh, grain(kh * w), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* gr = pg + r * ow;
        T* first = po + r * kh * w;
        for (int64_t o = 0; o < ow; ++o)
          std::fill(first + o * kw, first + (o + 1) * kw, gr[o] * scale);
        for (int64_t i = 1; i < kh; ++i)
          std::copy(first, first + w, first + i * w);
      }
    });
  });
  return gx;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("moments", &moments,
        "sum, max, sum x^4, ties of the max, central sums (over H*W or C)");
  m.def("moments_backward", &moments_backward,
        "dL/dx from the gradients of all the moments");
  m.def("ln_square_sum", &ln_square_sum,
        "sum over C of (w * LayerNorm_HW(x) + b)^2");
  m.def("ln_square_sum_backward", &ln_square_sum_backward,
        "gradients of ln_square_sum for x, w and b");
  m.def("window_mean", &window_mean,
        "means of whole kh x kw windows of (M, H, W) maps");
  m.def("window_mean_backward", &window_mean_backward,
        "the adjoint of window_mean");
}
