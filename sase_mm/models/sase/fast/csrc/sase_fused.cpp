// Fused CPU kernels for the fixed SASE block (sase_mm/models/sase/fast/fused/).
//
// SASE: Searching Architecture for Squeeze and Excitation operations
// (arXiv 2411.08333). On CPU the block is memory-bound: each full-size pass
// over the (B, C, H, W) input costs about as much as the whole small part of
// the block. These kernels compute, in one pass each, what the PyTorch path
// computes in several:
//
//   row_stats        sum, max and number of maxima over H*W of every (b, c)
//   gated_pow4_sum   sum_c g4[b, c] * x[b, c, n]^4 (no x^4 map)
//   pow4_rowdot      sum_n x[b, c, n]^4 * v[b, n]
//   grad_dots        sums over n and over c of grad * x
//   combine          grad * (a_c + b_n) + r_c + s_n + u_c v_n
//                    + [x == mx_c] share_c + k_c x^3 q_n
//   scale            x * (a_c + b_n)
//
// Tensors are contiguous, x viewed as (B, C, N) with N = H * W; float or
// double. Sums accumulate in the scalar type, as the BLAS products of the
// PyTorch path do; "omp simd" lets the compiler vectorise the reductions
// (it may reorder them, as BLAS does). Rows are split over ATen's threads.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

constexpr int64_t kBlock = 512;  // columns per task in column-wise kernels
constexpr int64_t kRows = 16;    // grain of row-wise kernels

void check(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

struct Dims {
  int64_t b, c, n;
  explicit Dims(const torch::Tensor& x)
      : b(x.size(0)), c(x.size(1)), n(x.numel() / (x.size(0) * x.size(1))) {}
};

// ---- per-row and per-block loops (outside the dispatch macro: pragmas) ----
template <typename T>
void row_stats_row(const T* row, int64_t n, T* sum, T* max, T* count) {
  T s = 0, m = row[0];
#pragma omp simd reduction(+ : s) reduction(max : m)
  for (int64_t i = 0; i < n; ++i) {
    s += row[i];
    m = row[i] > m ? row[i] : m;
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
T pow4_dot(const T* row, const T* v, int64_t n) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) {
    const T sq = row[i] * row[i];
    s += sq * sq * v[i];
  }
  return s;
}

template <typename T>
void add_pow4(T* acc, const T* row, T g, int64_t len) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    const T sq = row[i] * row[i];
    acc[i] += g * (sq * sq);
  }
}

template <typename T>
T add_product(T* acc, const T* g, const T* x, int64_t len) {
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
  const T *x, *grad, *a, *b, *r, *s, *u, *v, *mx, *share, *k, *q;
  T* out;
  int64_t c, n;
};

template <typename T>
void combine_row(const CombineArgs<T>& p, int64_t row) {
  const int64_t bi = row / p.c, n = p.n;
  const T *xr = p.x + row * n, *gr = p.grad + row * n, *bb = p.b + bi * n;
  const T ar = p.a[row], rr = p.r ? p.r[row] : T(0);
  T* o = p.out + row * n;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) o[i] = gr[i] * (ar + bb[i]) + rr;
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

template <typename T>
void scale_row(const T* xr, const T* bb, T a, T* o, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) o[i] = xr[i] * (a + bb[i]);
}

template <typename T>
const T* opt_ptr(const c10::optional<torch::Tensor>& t) {
  if (!t.has_value() || !t->defined()) return nullptr;
  check(*t, "combine input");
  return t->data_ptr<T>();
}

// ---- the operators ----
// (sum, max, count of max) over H*W of every (b, c): three (B, C) tensors.
std::vector<torch::Tensor> row_stats(torch::Tensor x) {
  check(x, "x");
  const Dims d(x);
  auto sum = torch::empty({d.b, d.c}, x.options());
  auto mx = torch::empty_like(sum), cnt = torch::empty_like(sum);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "row_stats", [&] {
    const scalar_t* px = x.data_ptr<scalar_t>();
    scalar_t *ps = sum.data_ptr<scalar_t>(), *pm = mx.data_ptr<scalar_t>();
    scalar_t* pc = cnt.data_ptr<scalar_t>();
    at::parallel_for(0, d.b * d.c, kRows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        row_stats_row(px + r * d.n, d.n, ps + r, pm + r, pc + r);
    });
  });
  return {sum, mx, cnt};
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
    at::parallel_for(0, d.b * nb, 1, [&](int64_t t0, int64_t t1) {
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
    at::parallel_for(0, d.b * d.c, kRows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        po[r] = pow4_dot(px + r * d.n, pv + (r / d.c) * d.n, d.n);
    });
  });
  return out;
}

// (row (B, C), col (B, N)): sums over n and over c of grad * x.
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
    at::parallel_for(0, d.b * nb, 1, [&](int64_t t0, int64_t t1) {
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
  return {nb == 1 ? part.view({d.b, d.c}) : part.sum(1), col};
}

// The block's input gradient (B, C, H, W):
// grad * (a_c + b_n) + r_c + s_n + u_c v_n + [x == mx_c] share_c
// + k_c x^3 q_n. Row terms are (B, C), column terms (B, N); every term
// after b is optional (u with v, mx with share, k with q).
torch::Tensor combine(torch::Tensor grad, torch::Tensor x, torch::Tensor a,
                      torch::Tensor b, c10::optional<torch::Tensor> r,
                      c10::optional<torch::Tensor> s,
                      c10::optional<torch::Tensor> u,
                      c10::optional<torch::Tensor> v,
                      c10::optional<torch::Tensor> mx,
                      c10::optional<torch::Tensor> share,
                      c10::optional<torch::Tensor> k,
                      c10::optional<torch::Tensor> q) {
  check(x, "x");
  check(grad, "grad");
  check(a, "a");
  check(b, "b");
  TORCH_CHECK(grad.sizes() == x.sizes(), "grad and x differ in shape");
  const Dims d(x);
  auto out = torch::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "combine", [&] {
    CombineArgs<scalar_t> p{
        x.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(),
        a.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(),
        opt_ptr<scalar_t>(r), opt_ptr<scalar_t>(s), opt_ptr<scalar_t>(u),
        opt_ptr<scalar_t>(v), opt_ptr<scalar_t>(mx), opt_ptr<scalar_t>(share),
        opt_ptr<scalar_t>(k), opt_ptr<scalar_t>(q), out.data_ptr<scalar_t>(),
        d.c, d.n};
    TORCH_CHECK(!p.u == !p.v, "combine: u needs v");
    TORCH_CHECK(!p.mx == !p.share, "combine: mx needs share");
    TORCH_CHECK(!p.k == !p.q, "combine: k needs q");
    at::parallel_for(0, d.b * d.c, kRows, [&](int64_t r0, int64_t r1) {
      for (int64_t row = r0; row < r1; ++row) combine_row(p, row);
    });
  });
  return out;
}

// x * (a_c + b_n): the block's output x * (1 + s2 / 2 + s5 / 2).
torch::Tensor scale(torch::Tensor x, torch::Tensor a, torch::Tensor b) {
  check(x, "x");
  check(a, "a");
  check(b, "b");
  const Dims d(x);
  auto out = torch::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "scale", [&] {
    const scalar_t *px = x.data_ptr<scalar_t>(), *pa = a.data_ptr<scalar_t>();
    const scalar_t* pb = b.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    at::parallel_for(0, d.b * d.c, kRows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        scale_row(px + r * d.n, pb + (r / d.c) * d.n, pa[r], po + r * d.n, d.n);
    });
  });
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("row_stats", &row_stats, "sum, max, count of max over H*W");
  m.def("gated_pow4_sum", &gated_pow4_sum, "sum_c g4 x^4");
  m.def("pow4_rowdot", &pow4_rowdot, "sum_n x^4 v");
  m.def("grad_dots", &grad_dots, "sums of grad * x over n and over c");
  m.def("combine", &combine, "the block's input gradient");
  m.def("scale", &scale, "x * (a_c + b_n)");
}
