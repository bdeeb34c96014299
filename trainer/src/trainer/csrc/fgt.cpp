// The MMD of S segments by the 1-D fast Gauss transform (trainer.losses._fgt_mmd), in double:
// the same expansions as the torch version, in loops instead of ~40 small tensor ops (a
// mini-batch step's losses went from 4.9 to 1.6-2.1 CPU ms, docs/speed.md).
//
// Values fall into boxes of width `width` starting at `lo`. Each segment's box moments are
// A_a = sum_s ((s - c) / delta)^a / a! (x and y separately); a source box's moments become the
// Taylor coefficients of its field in a target box k boxes to its right through
// T[g, K_max - k, a, b] (trainer.losses._fgt_constants); only boxes within K_max of each other
// and holding values are visited (the others add exact zeros). The estimate and each x value's
// gradient then follow as in _fgt_mmd. One thread, sums in a fixed order: the same on every run.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "vector_width.h"

namespace {

constexpr int kTerms = 16;  // trainer.losses._FGT_TERMS

// The 16 terms of an expansion as vectors of the target's width (vector_width.h: a vector wider
// than the registers goes through the stack at every operation). Each term is its own lane, so
// the sums are the same whatever the width.
typedef double vd __attribute__((vector_size(ZS_VEC_BYTES), aligned(8)));
constexpr int kLanes = ZS_VEC_BYTES / sizeof(double);
constexpr int kVecs = kTerms / kLanes;
static_assert(kTerms % kLanes == 0, "the terms must fill whole vectors");
inline vd load(const double* p) { return *reinterpret_cast<const vd*>(p); }
inline void store(double* p, vd v) { *reinterpret_cast<vd*>(p) = v; }
// A vector of p[0 .. kLanes) put together in registers. Not load(p) after p[] was written as
// scalars: a vector load of what scalar stores just wrote waits for them to reach the cache (no
// store-to-load forwarding); the power sums of a mini-batch step's MMD spent most of their time so.
template <std::size_t... I> inline vd lanes_of(const double* p, std::index_sequence<I...>) { return vd{p[I]...}; }
inline vd lanes(const double* p) { return lanes_of(p, std::make_index_sequence<kLanes>{}); }
// Lane l of the kLanes vectors P[0 .. kLanes), as one vector (a column of the square they make).
template <std::size_t... I> inline vd column_of(const vd* P, int l, std::index_sequence<I...>) {
  return vd{P[I][l]...};
}
inline vd column(const vd* P, int l) { return column_of(P, l, std::make_index_sequence<kLanes>{}); }

// x, y: the segments' values one after another (xs[k], ys[k] values each); scale [G, kTerms]
// (delta_g^-a), inv_fact [kTerms], T [G, 2 K_max + 1, kTerms, kTerms]. Writes value[S] (mean over
// the G bandwidths) and, when gx is not null, gx[sum xs].
void fgt_mmd(int S, const double* x, const int64_t* xs, const double* y, const int64_t* ys, int G, int K_max,
             const double* scale, const double* inv_fact, const double* T, double width, double lo, int64_t boxes,
             double* value, double* gx) {
  const int64_t J = 2 * K_max + 1;
  // Power sums sum (v - c)^a per side, segment and box: [2][S][boxes][kTerms].
  std::vector<double> sums(2 * S * boxes * kTerms, 0.0);
  std::vector<int64_t> count(2 * S * boxes, 0);
  auto box_of = [&](double v) {  // floor((v - lo) / width) clamped to the boxes, as in _fgt_mmd
    const int64_t b = static_cast<int64_t>((v - lo) / width);
    return b < 0 ? 0 : (b >= boxes ? boxes - 1 : b);
  };
  auto offset = [&](double v, int64_t b) { return v - (lo + (b + 0.5) * width); };  // v - box centre
  for (int side = 0; side < 2; side++) {
    const double* v = side ? y : x;
    const int64_t* sizes = side ? ys : xs;
    int64_t at = 0;
    for (int k = 0; k < S; k++) {
      double* seg = &sums[(side * S + k) * boxes * kTerms];
      int64_t* seg_count = &count[(side * S + k) * boxes];
      int64_t i = 0;
      // kLanes values at a time, one to a lane: each lane's powers are the same products as one
      // value's alone, but the 15 dependent multiplications run once for kLanes values; then
      // each value's 16 powers (a column of P) go into its box's row, the values in order.
      for (; i + kLanes <= sizes[k]; i += kLanes, at += kLanes) {
        int64_t b[kLanes];
        double u[kLanes];
#pragma GCC unroll 16
        for (int l = 0; l < kLanes; l++) u[l] = offset(v[at + l], b[l] = box_of(v[at + l]));
        vd P[kTerms];
        P[0] = vd{} + 1.0;
        P[1] = P[0] * lanes(u);
#pragma GCC unroll 16
        for (int a = 2; a < kTerms; a++) P[a] = P[a - 1] * P[1];
#pragma GCC unroll 16
        for (int l = 0; l < kLanes; l++) {
          double* row = seg + b[l] * kTerms;
#pragma GCC unroll 16
          for (int j = 0; j < kVecs; j++) store(row + j * kLanes, load(row + j * kLanes) + column(P + j * kLanes, l));
          seg_count[b[l]]++;
        }
      }
      for (; i < sizes[k]; i++, at++) {
        const int64_t b = box_of(v[at]);
        const double u = offset(v[at], b);
        double* row = seg + b * kTerms;
        double power[kTerms];
        power[0] = 1.0;
#pragma GCC unroll 16
        for (int a = 1; a < kTerms; a++) power[a] = power[a - 1] * u;
#pragma GCC unroll 16
        for (int j = 0; j < kVecs; j++)  // in registers, not 16 scalar read-modify-writes
          store(row + j * kLanes, load(row + j * kLanes) + lanes(power + j * kLanes));
        seg_count[b]++;
      }
    }
  }
  // Fields: B[side][k][g][c][b], the field of side's values of segment k in box c in powers (t - c)^b.
  std::vector<double> B(2 * S * G * boxes * kTerms, 0.0);
  double A[kTerms];
  for (int side = 0; side < 2; side++)
    for (int k = 0; k < S; k++)
      for (int g = 0; g < G; g++)
        for (int64_t s = 0; s < boxes; s++) {
          if (!count[(side * S + k) * boxes + s]) continue;
          const double* m = &sums[((side * S + k) * boxes + s) * kTerms];
          for (int a = 0; a < kTerms; a++) A[a] = m[a] * inv_fact[a] * scale[g * kTerms + a];
          const int64_t c0 = s - K_max < 0 ? 0 : s - K_max;
          const int64_t c1 = s + K_max >= boxes ? boxes - 1 : s + K_max;
          for (int64_t c = c0; c <= c1; c++) {
            const double* t = &T[(g * J + (K_max - (c - s))) * kTerms * kTerms];
            double* out = &B[(((side * S + k) * G + g) * boxes + c) * kTerms];
            vd acc[kVecs];  // the 16 terms
            for (int j = 0; j < kVecs; j++) acc[j] = load(out + j * kLanes);
            for (int a = 0; a < kTerms; a++)
              for (int j = 0; j < kVecs; j++) acc[j] += A[a] * load(t + a * kTerms + j * kLanes);
            for (int j = 0; j < kVecs; j++) store(out + j * kLanes, acc[j]);
          }
        }
  // The estimates, and each segment's field of its estimate for the gradient.
  std::vector<double> slope(gx ? S * boxes * kTerms : 0, 0.0);  // mean over g of d field / dt, powers b
  int64_t at = 0;
  for (int k = 0; k < S; k++) {
    const double m = static_cast<double>(xs[k]), n = static_cast<double>(ys[k]);
    double total = 0.0;
    for (int g = 0; g < G; g++) {
      double sxx = 0, sxy = 0, syy = 0;
      const double* sc = &scale[g * kTerms];
      const double* Bx = &B[((0 * S + k) * G + g) * boxes * kTerms];
      const double* By = &B[((1 * S + k) * G + g) * boxes * kTerms];
      const double* px = &sums[((0 * S + k) * boxes) * kTerms];
      const double* py = &sums[((1 * S + k) * boxes) * kTerms];
      for (int64_t i = 0; i < boxes * kTerms; i++) {
        const double bx = Bx[i] * sc[i % kTerms], by = By[i] * sc[i % kTerms];
        sxx += bx * px[i];
        sxy += by * px[i];
        syy += by * py[i];
      }
      total += (sxx - m) / (m * (m - 1)) + (syy - n) / (n * (n - 1)) - 2.0 * sxy / (m * n);
      if (gx) {
        const double fx = 2.0 / (m * (m - 1)), fy = 2.0 / (m * n);
        double* sl = &slope[k * boxes * kTerms];
        for (int64_t c = 0; c < boxes; c++)
          for (int b = 1; b < kTerms; b++) {
            const int64_t i = c * kTerms + b;
            sl[c * kTerms + b - 1] += (fx * Bx[i] - fy * By[i]) * sc[b] * b / G;
          }
      }
    }
    value[k] = total / G;
    if (!gx) continue;
    const double* sl = &slope[k * boxes * kTerms];
    for (int64_t i = 0; i < xs[k]; i++, at++) {
      const int64_t b = box_of(x[at]);
      const double u = offset(x[at], b);
      const double* row = sl + b * kTerms;
      double acc = 0.0, power = 1.0;
      for (int a = 0; a < kTerms - 1; a++) {
        acc += row[a] * power;
        power *= u;
      }
      gx[at] = acc;
    }
  }
}

// Python's float floor division a // b for a >= 0 and b > 0 (CPython's float_floor_div), so that
// the boxes below are counted exactly as trainer.losses._fgt_mmd counts them.
double floor_div(double a, double b) {
  const double mod = std::fmod(a, b);
  const double div = (a - mod) / b;
  if (div == 0.0) return 0.0;
  double floordiv = std::floor(div);
  if (div - floordiv > 0.5) floordiv += 1.0;
  return floordiv;
}

}  // namespace

extern "C" {

// fgt_mmd in double from double values at the boxes given (trainer.fused.fgt_mmd). Returns 0, or
// 1 when p is not kTerms.
int zs_fgt_mmd(int S, const double* x, const int64_t* xs, const double* y, const int64_t* ys, int G, int p,
               int K_max, const double* scale, const double* inv_fact, const double* T, double width, double lo,
               int64_t boxes, double* value, double* gx) {
  if (p != kTerms) return 1;  // the one expansion length compiled
  fgt_mmd(S, x, xs, y, ys, G, K_max, scale, inv_fact, T, width, lo, boxes, value, gx);
  return 0;
}

// The same from float values (trainer.fused.fgt_mmd_float, a mini-batch step's case): the values
// in double, their boxes from their least and greatest value as trainer.losses._fgt_mmd finds
// them, then fgt_mmd; value[S] and, when gx is not null, gx[i] = float(dS/dx_i) * w[segment of i]
// written as floats (the casts and the product torch's float32 ops would make). Returns 0; 1 when
// p is not kTerms; 2, with nothing written, when a value is not finite or they span more than
// max_boxes boxes (the caller takes the exact sums).
int zs_fgt_mmd_float(int S, const float* x, const int64_t* xs, const float* y, const int64_t* ys, int G, int p,
                     int K_max, const double* scale, const double* inv_fact, const double* T, double width,
                     int64_t max_boxes, const float* w, float* value, float* gx) {
  if (p != kTerms) return 1;
  int64_t nx = 0, ny = 0;
  for (int k = 0; k < S; k++) nx += xs[k], ny += ys[k];
  std::vector<double> v(nx + ny);
  for (int64_t i = 0; i < nx; i++) v[i] = x[i];
  for (int64_t i = 0; i < ny; i++) v[nx + i] = y[i];
  // The least and greatest value, kLanes at a time (a NaN seen by its own test: it fails both
  // comparisons and is never taken).
  vd vlo = vd{} + INFINITY, vhi = vd{} - INFINITY, nans = vd{};
  int64_t at = 0;
  for (; at + kLanes <= nx + ny; at += kLanes) {
    const vd d = load(&v[at]);
    vlo = d < vlo ? d : vlo;
    vhi = d > vhi ? d : vhi;
    nans = d != d ? d : nans;
  }
  double lo = INFINITY, hi = -INFINITY;
  bool finite = true;
  for (int l = 0; l < kLanes; l++) {
    lo = vlo[l] < lo ? vlo[l] : lo;
    hi = vhi[l] > hi ? vhi[l] : hi;
    finite = finite && nans[l] == 0.0;
  }
  for (; at < nx + ny; at++) {
    finite = finite && v[at] == v[at];
    lo = v[at] < lo ? v[at] : lo;
    hi = v[at] > hi ? v[at] : hi;
  }
  if (!finite || !std::isfinite(lo) || !std::isfinite(hi)) return 2;
  const double span = floor_div(hi - lo, width);
  if (span + 1 > static_cast<double>(max_boxes)) return 2;
  std::vector<double> value64(S), g64(gx ? nx : 0);
  fgt_mmd(S, v.data(), xs, v.data() + nx, ys, G, K_max, scale, inv_fact, T, width, lo,
          static_cast<int64_t>(span) + 1, value64.data(), gx ? g64.data() : nullptr);
  for (int k = 0; k < S; k++) value[k] = static_cast<float>(value64[k]);
  if (gx)
    for (int64_t i = 0, k = 0, end = xs[0]; i < nx; i++) {
      while (i == end) end += xs[++k];
      gx[i] = static_cast<float>(g64[i]) * w[k];
    }
  return 0;
}
}
