// One message-passing layer of SpacingGNN, forward and backward, fused (trainer.fused):
//
//     agg  = sum_j weight[i, j] h[index[i, j]]              the gather-sum (trainer.model.Neighbours)
//     z    = agg W_rel^T + b_rel + own W_root^T             own: the layer's own rows of h
//     u    = LayerNorm(z) (xhat gamma + beta), or z          without a norm
//     y    = GELU(u) + own, or GELU(u)                       without the residual
//
// Eager torch makes a [rows, hidden] tensor of each step and reads it back from memory (the step
// is bound by memory traffic, docs/speed.md); here six rows at a time go through every step
// while they are in registers and L1, and the matrix products are register-blocked (6 rows x
// hidden). The forward keeps xhat (or z), 1/std per row and GELU'(u) for the backward. The
// backward needs no gather-sum: it takes gz, the gradient of z, of every row, then gathers gz
// over the transposed table (what each input row sent) for both the input rows' gradient and
// W_rel's: one gather per row, where recomputing the gather-sum would take two. It takes the
// input rows in panels of 48: the weight gradients' sums stay in registers over a whole panel,
// the input gradients' products run in blocks of six rows as the forward's.
//
// Plain C++ with GCC vector extensions, no torch headers: trainer.fused compiles it with the
// host's g++ (-O3 -march=native) in about a second and calls it through ctypes. With T threads
// (torch's, passed in) the rows are cut into T fixed ranges, one per thread; the sums over rows
// (the weight gradients) are taken per range and added in range order. Every sum runs in an order
// fixed by the shapes and T, so results are the same on every run with the same T; the forward's
// are the same for every T (each row is its own). GELU is the exact (erf)
// GELU, with erf by the same Abramowitz-Stegun 7.1.26 formula as torch's vectorised CPU kernel
// (absolute error < 1.5e-7) for float; double (the gradient checks) uses std::erf and std::exp.
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <system_error>
#include <thread>
#include <type_traits>
#include <vector>

#include "vector_width.h"

namespace {

// The fewest rows a thread takes: a range is worth more than starting a thread (~20 us).
constexpr int64_t kMinRowsPerThread = 512;

// How many ranges `rows` rows are cut into with `threads` threads: a function of both alone.
inline int parts_for(int64_t rows, int threads) {
  const int64_t most = rows / kMinRowsPerThread;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, most)));
}

// Range t of `parts` over [0, n): boundaries at multiples of `step`, the last range ends at n.
inline void range_of(int64_t n, int parts, int t, int64_t step, int64_t& begin, int64_t& end) {
  const int64_t per = ((n + parts - 1) / parts + step - 1) / step * step;
  begin = std::min(n, t * per);
  end = std::min(n, begin + per);
}

// f(t) for every t in [0, parts): t = 0 on the calling thread, each other on a thread of its own.
// Where no more threads can be started (a process limit), the parts left run on the calling
// thread: each part writes only its own rows and sums, so the results are the same.
template <typename F> void parallel(int parts, F&& f) {
  // Each part ends with a store fence: its streaming stores (stream) are then done before
  // the part's thread is joined or the call returns.
  auto part = [&f](int t) {
    f(t);
#ifdef __AVX512F__
    _mm_sfence();
#endif
  };
  std::vector<std::thread> pool;
  int started = 1;
  try {
    for (; started < parts; started++) pool.emplace_back([&part, t = started] { part(t); });
  } catch (const std::system_error&) {
  }
  part(0);
  for (int t = started; t < parts; t++) part(t);
  for (auto& thread : pool) thread.join();
}

// dst[k] += src[k], k < n (a range's partial sums into the total; none where dst is null).
template <typename T> void add_into(T* dst, const T* src, int64_t n) {
  if (dst)
    for (int64_t k = 0; k < n; k++) dst[k] += src[k];
}

// Cache lines to be read soon, fetched a few at a time between the products' tiles (`outer`):
// what the one-thread backward reads next from memory (the next panel's rows of xhat and GELU',
// which the forward streamed past the caches, and its input rows of h, written long before), so
// that their ~100 ns from DRAM overlap the products instead of stalling the gz pass that reads
// them. A burst of them at once fills the core's line-fill buffers and stalls as the reads would
// (docs/speed.md item 40). Only fetches: no result depends on it.
struct Ahead {
  static constexpr int kRanges = 3;  // the backward's: xhat, GELU' and h
  const char* at[kRanges] = {};  // each range's next line
  const char* end[kRanges] = {};
  int ranges = 0, next = 0;      // ranges queued; the one being fetched
  int per_tile = 0;              // lines fetched at each tile

  void clear() { ranges = next = 0; }
  // The rows [from, to) of a [rows, row_bytes] array p (none where p is null or the range empty).
  void add(const void* p, int64_t row_bytes, int64_t from, int64_t to) {
    if (!p || from >= to || ranges == kRanges) return;
    at[ranges] = static_cast<const char*>(p) + from * row_bytes;
    end[ranges++] = static_cast<const char*>(p) + to * row_bytes;
  }
  // Spread what is queued over `tiles` calls of tile() (none: nothing is fetched; a layer whose
  // weights are frozen has no weight-gradient products to spread the lines over).
  void spread(int tiles) {
    int64_t lines = 0;
    for (int k = next; k < ranges; k++) lines += (end[k] - at[k] + 63) / 64;
    per_tile = tiles > 0 ? static_cast<int>((lines + tiles - 1) / tiles) : 0;
  }
  void tile() {
    for (int q = 0; q < per_tile && next < ranges; q++) {
      __builtin_prefetch(at[next]);
      if ((at[next] += 64) >= end[next]) next++;
    }
  }
};

template <typename T> struct Vec;
// Vector typedefs with the element's alignment: loads and stores of any row are unaligned moves.
template <> struct Vec<float> { typedef float type __attribute__((vector_size(ZS_VEC_BYTES), aligned(4))); };
template <> struct Vec<double> { typedef double type __attribute__((vector_size(ZS_VEC_BYTES), aligned(8))); };

// *p = v, past the caches (no read of the line first, and no cache line taken) where p is
// 64-byte aligned: for what only the backward reads back (a layer's xhat, GELU' of the layers and
// the encoder), after the other layers' forward and backward have gone through the caches. A
// mini-batch step takes 2-5% less.
template <typename T> void stream(T* p, typename Vec<T>::type v) {
#ifdef __AVX512F__
  if ((reinterpret_cast<uintptr_t>(p) & 63) == 0) {
    if constexpr (sizeof(T) == 4) return _mm512_stream_ps(reinterpret_cast<float*>(p), reinterpret_cast<__m512>(v));
    if constexpr (sizeof(T) == 8) return _mm512_stream_pd(reinterpret_cast<double*>(p), reinterpret_cast<__m512d>(v));
  }
#endif
  *reinterpret_cast<typename Vec<T>::type*>(p) = v;
}

// Rows per register block. The products hold a block of kRows rows x kColVecs(NV) vectors of
// columns in registers: with AVX-512's 32, 6 rows of all 64 floats (24 registers); with AVX's 16,
// 6 rows of 16 floats (12 registers; the 64 columns in four such blocks), as BLIS's Haswell kernel.
constexpr int kRows = 6;

// Vectors of columns per register block of a product, of a row's nv: all of them with AVX-512
// (one block: the products are the same code as before the blocks), else two.
constexpr int kColVecs(int nv) { return ZS_VEC_BYTES == 64 || nv % 2 ? nv : 2; }

typedef float vf __attribute__((vector_size(ZS_VEC_BYTES), aligned(4)));
typedef int32_t vi __attribute__((vector_size(ZS_VEC_BYTES)));

inline vf exp_nonpositive(vf x) {
  // exp(x) for x <= 0, lane by lane (Cephes expf: Cody-Waite reduction by ln 2 and a degree-6
  // polynomial, ~1 ulp). Rounding by the 1.5 * 2^23 trick: |x log2 e| < 2^22.
  const vf lo = vf{} - 87.0f;
  x = x < lo ? lo : x;
  const vf n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  vf r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  vf p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
  return p * (vf)bits;  // a vector cast is a bit cast
}

// GELU(u) = u cdf and GELU'(u) = cdf + u phi(u) of N vectors, lane by lane: they share
// erf(u / sqrt 2) and exp(-u^2 / 2). GELU' is summed here, in the statement that makes its product
// u phi(u), so that the two are one FMA wherever this is compiled (summed by the caller, they were
// one FMA where this was inlined and two operations where not: an ulp of GELU' that moved with the
// compiler's inlining choices, which a change anywhere in the file can move; docs/speed.md item
// 42). Each step runs on all N vectors before the next, so that N independent chains of ~35
// dependent operations sit side by side in the instruction stream: one vector at a time is bound
// by the chain's latency (AVX2, Zen 3: a layer's forward on 10,000 rows 3.30-3.35 -> 3.02-3.10 ms
// with N = 8, bench/layer_kernel.py; kGeluGroup picks N). The same operations on each lane
// whatever N.
template <int N> inline void gelu_parts(const vf* u, vf* cdf, vf* dgelu) {
  // |x| and the sign of a negative x as bit masks: one logical operation each where a select
  // takes a compare, a negation and a blend (the same values).
  vf x[N], t[N], r[N], e[N];
  vi neg[N];
#pragma GCC unroll 16
  for (int i = 0; i < N; i++) {
    x[i] = u[i] * float(M_SQRT1_2);
    neg[i] = (x[i] < 0) & INT32_MIN;
    const vf ax = (vf)((vi)x[i] & INT32_MAX);
    t[i] = 1.0f / (ax * 0.3275911f + 1.0f);
  }
#pragma GCC unroll 16
  for (int i = 0; i < N; i++)
    r[i] = (((t[i] * 1.061405429f - 1.453152027f) * t[i] + 1.421413741f) * t[i] - 0.284496736f) * t[i] + 0.254829592f;
#pragma GCC unroll 16
  for (int i = 0; i < N; i++) e[i] = exp_nonpositive(-x[i] * x[i]);
#pragma GCC unroll 16
  for (int i = 0; i < N; i++) {
    const vf a = 1.0f - r[i] * t[i] * e[i];
    cdf[i] = (vf)((vi)a ^ neg[i]) * 0.5f + 0.5f;  // 0.5 (1 -+ a), exactly: halving is exact
    dgelu[i] = u[i] * float(0.5 * M_2_SQRTPI * M_SQRT1_2) * e[i] + cdf[i];
  }
}

template <int N, typename V> inline void gelu_parts(const V* u, V* cdf, V* dgelu) {  // double: libm
  for (int i = 0; i < N; i++)
    for (int l = 0; l < int(sizeof(V) / sizeof(double)); l++) {
      const double x = u[i][l] * M_SQRT1_2;
      cdf[i][l] = 0.5 * (1.0 + std::erf(x));
      dgelu[i][l] = u[i][l] * (0.5 * M_2_SQRTPI * M_SQRT1_2) * std::exp(-x * x) + cdf[i][l];
    }
}

// Vectors per group of gelu_parts for n of them: the largest divisor of n up to 8 with AVX-512's 32
// registers, up to 4 with AVX's 16. Each chain keeps ~5 vectors alive (x, its sign, t, r, e): with
// more chains than the registers hold, the compiler spills them to the stack and back (AVX2, Zen 3:
// 4 against 8 took 0.33 ms off a mini-batch step's three layer forwards, faster in 14 of 14 paired
// blocks of bench/kernel_ab.py; the same values, each lane's operations do not depend on N).
constexpr int kGeluGroup(int n) {
  for (int g = ZS_VEC_BYTES == 64 ? 8 : 4; g > 1; g--)
    if (n % g == 0) return g;
  return 1;
}

// Where the backward writes (null: not wanted). gz is scratch of [m, H], always given; the weight
// gradients are added to (the caller zeroes them).
template <typename T> struct Grads {
  T *gh, *gz, *gw_rel, *gb_rel, *gw_root, *ggamma, *gbeta;
};

// What the kernels below share about rows of H values of T: the vector type, its lanes, a row's
// vectors, their loads and stores, and the lanes' sum.
template <typename T, int H> struct Rows {
  using V = typename Vec<T>::type;
  static constexpr int L = ZS_VEC_BYTES / sizeof(T);  // lanes per vector
  static constexpr int NV = H / L;          // vectors per row
  static constexpr int CB = kColVecs(NV);   // vectors of columns per register block of a product
  static_assert(H % L == 0, "hidden must be a multiple of the vector width");

  static V load(const T* p) { return *reinterpret_cast<const V*>(p); }
  static void store(T* p, V v) { *reinterpret_cast<V*>(p) = v; }
  // The lanes' sum in a fixed order: halves added, then their halves, ... With AVX-512 the
  // instruction set's own reduction (~5% off a layer's forward against a lane-by-lane chain of
  // adds); with AVX2 the same tree on 8 floats (3 dependent adds where the chain has 7: the gz
  // pass waits on two such sums a row; a mini-batch step 0.47 ms faster, the layers' backward in
  // 16 of 16 paired blocks, docs/speed.md item 34). Other widths and double: lane by lane.
  static T hsum(V v) {
#ifdef __AVX512F__
    if constexpr (sizeof(T) == 4) return _mm512_reduce_add_ps(reinterpret_cast<__m512>(v));
    if constexpr (sizeof(T) == 8) return _mm512_reduce_add_pd(reinterpret_cast<__m512d>(v));
#endif
#ifdef __AVX2__
    if constexpr (sizeof(T) == 4 && L == 8) {
      const __m256 x = reinterpret_cast<__m256>(v);
      __m128 q = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
      q = _mm_add_ps(q, _mm_movehl_ps(q, q));
      q = _mm_add_ss(q, _mm_movehdup_ps(q));
      return _mm_cvtss_f32(q);
    }
#endif
    T s = 0;
    for (int l = 0; l < L; l++) s += v[l];
    return s;
  }

  // Weight gradients' products run over panels of kPanel rows (the layer's backward, the encoder's),
  // in tiles of up to kOuts outputs.
  static constexpr int kPanel = 8 * kRows;
  static constexpr int kOuts = 4;

  // G[i, c0 block] += sum_r a[r as + i] x[r H + c0 block], i < NO, over n rows in order: one tile of
  // a weight gradient's products, its NO x CB sums held in registers while the rows go by (NO x CB
  // independent chains of FMAs; G through the caches once per n rows). G: rows of H, the tile's
  // first; a: the rows' NO values each, as stride as apart.
  template <int NO>
  static void outer_tile(int n, const T* a, int64_t as, const T* x, T* G, int c0) {
    V acc[NO][CB];
#pragma GCC unroll 32
    for (int i = 0; i < NO; i++)
#pragma GCC unroll 32
      for (int v = 0; v < CB; v++) acc[i][v] = load(G + i * H + (c0 + v) * L);
    // Eight rows a trip: the backward ~0.15 ms faster than one (4 and 16 were no better).
#pragma GCC unroll 8
    for (int r = 0; r < n; r++) {
      V xv[CB];
#pragma GCC unroll 32
      for (int v = 0; v < CB; v++) {
        xv[v] = load(x + r * H + (c0 + v) * L);
        asm("" : "+x"(xv[v]));  // in a register, not loaded again by each of the NO FMAs reading it
      }
#pragma GCC unroll 32
      for (int i = 0; i < NO; i++) {
        const T s = a[r * as + i];
#pragma GCC unroll 32
        for (int v = 0; v < CB; v++) acc[i][v] += s * xv[v];
      }
    }
#pragma GCC unroll 32
    for (int i = 0; i < NO; i++)
#pragma GCC unroll 32
      for (int v = 0; v < CB; v++) store(G + i * H + (c0 + v) * L, acc[i][v]);
  }
};

template <typename T, int H> struct Layer : Rows<T, H> {
  using R = Rows<T, H>;
  using typename R::V;
  using R::L, R::NV, R::CB, R::kPanel, R::kOuts, R::load, R::store, R::hsum;

  // out[r] = init[r] + xa[r] Ba (+ xb[r] Bb), for NR rows; B: [H (in), H (out)] row-major. In blocks
  // of CB vectors of columns: each output's sum runs over k in the same order whatever CB.
  template <int NR>
  static void matmul(const T* const* xa, const T* Ba, const T* const* xb, const T* Bb, const T* const* init,
                     T* const* out) {
    for (int c0 = 0; c0 < NV; c0 += CB) {
      V acc[NR][CB];
#pragma GCC unroll 32
      for (int r = 0; r < NR; r++)
#pragma GCC unroll 32
        for (int v = 0; v < CB; v++) acc[r][v] = init ? load(init[r] + (c0 + v) * L) : V{};
      for (int pass = 0; pass < 2; pass++) {
        const T* const* x = pass ? xb : xa;
        const T* B = pass ? Bb : Ba;
        if (!x) continue;
        // Two k a trip: the loop's own count, compare and branch between each k's twelve FMAs
        // cost a step's products ~0.1 ms (unrolled 2: faster in 20 of 20 paired blocks with
        // the outer's 8 below, bench/kernel_ab.py; 4, 8 and 16 were no better).
#pragma GCC unroll 2
        for (int k = 0; k < H; k++) {
          V b[CB];
#pragma GCC unroll 32
          for (int v = 0; v < CB; v++) b[v] = load(B + k * H + (c0 + v) * L);
#pragma GCC unroll 32
          for (int r = 0; r < NR; r++) {
            const T a = x[r][k];
#pragma GCC unroll 32
            for (int v = 0; v < CB; v++) acc[r][v] += a * b[v];
          }
        }
      }
#pragma GCC unroll 32
      for (int r = 0; r < NR; r++)
#pragma GCC unroll 32
        for (int v = 0; v < CB; v++) store(out[r] + (c0 + v) * L, acc[r][v]);
    }
  }

  // G[o, :] += sum_r g[r H + o] x[r H : (r + 1) H] over n rows (each of g and x n rows one after
  // another: no pointer to load per row): a weight gradient ([out, in] row-major), in tiles of
  // kOuts outputs x CB vectors of columns (outer_tile). Each element's sum runs G + row 0, 1, ...
  // in order, as one row at a time would.
  static_assert(H % kOuts == 0, "hidden must be a multiple of kOuts");
  static constexpr int kTiles = NV / CB * (H / kOuts);  // tiles of one outer()
  static void outer(int n, const T* g, const T* x, T* G, Ahead* ahead) {
    for (int c0 = 0; c0 < NV; c0 += CB)
      for (int o0 = 0; o0 < H; o0 += kOuts) {
        if (ahead) ahead->tile();
        R::template outer_tile<kOuts>(n, g + o0, H, x, G + o0 * H, c0);
      }
  }

  // out = sum_j w[j] h[idx[j]] over the K entries of one table row.
  static void gather(const int32_t* idx, const T* w, int K, const T* h, T* out) {
    V acc[NV] = {};
    for (int j = 0; j < K; j++) {
      const T* src = h + static_cast<int64_t>(idx[j]) * H;
      const T wj = w[j];
#pragma GCC unroll 32
      for (int v = 0; v < NV; v++) acc[v] += wj * load(src + v * L);
    }
#pragma GCC unroll 32
    for (int v = 0; v < NV; v++) store(out + v * L, acc[v]);
  }

  // Rows [i0, i0 + NR) of the forward.
  template <int NR>
  static void forward_rows(int64_t i0, int K, const int32_t* index, const T* weight, const T* h, const T* own,
                           const T* wt_rel, const T* wt_root, const T* b_rel, const T* gamma, const T* beta,
                           T eps, bool residual, T* y, T* saved, T* rstd, T* dgelu) {
    alignas(64) T agg[NR][H];
    alignas(64) T zb[NR][H];
    const T* xa[NR];
    const T* xb[NR];
    T* zr[NR];
    for (int r = 0; r < NR; r++) {
      const int64_t i = i0 + r;
      gather(index + i * K, weight + i * K, K, h, agg[r]);
      xa[r] = agg[r];
      xb[r] = own + i * H;
      zr[r] = zb[r];
    }
    const T* bias[NR];
    for (int r = 0; r < NR; r++) bias[r] = b_rel;
    matmul<NR>(xa, wt_rel, xb, wt_root, b_rel ? bias : nullptr, zr);
    // The norm's statistics of all NR rows first, row beside row: each row's are two chains of
    // dependent adds (its lanes' sums), which the rows' interleaving overlaps.
    T mean[NR], rs[NR];
    if (gamma) {
#pragma GCC unroll 8
      for (int r = 0; r < NR; r++) {
        V acc = {};
        for (int v = 0; v < NV; v++) acc += load(zb[r] + v * L);
        mean[r] = hsum(acc) / H;
      }
#pragma GCC unroll 8
      for (int r = 0; r < NR; r++) {
        V acc = {};
        for (int v = 0; v < NV; v++) {
          const V z = load(zb[r] + v * L);
          acc += (z - mean[r]) * (z - mean[r]);
        }
        rs[r] = T(1) / std::sqrt(hsum(acc) / H + eps);
      }
    }
    for (int r = 0; r < NR; r++) {
      const int64_t i = i0 + r;
      T* s = saved + i * H;
      T* out = y + i * H;
      const T* o = own + i * H;
      V u[NV];
      if (gamma) {
        rstd[i] = rs[r];
        for (int v = 0; v < NV; v++) {
          const V xhat = (load(zb[r] + v * L) - mean[r]) * rs[r];
          stream(s + v * L, xhat);
          u[v] = xhat * load(gamma + v * L) + load(beta + v * L);
        }
      } else {
        for (int v = 0; v < NV; v++) stream(s + v * L, u[v] = load(zb[r] + v * L));
      }
      finish_row(u, o, residual, out, dgelu ? dgelu + i * H : nullptr);
    }
  }

  // y = GELU(u) (+ own) of one row, and GELU'(u) where dg is not null.
  static void finish_row(const V* u, const T* own, bool residual, T* y, T* dg) {
    constexpr int G = kGeluGroup(NV);
    for (int v0 = 0; v0 < NV; v0 += G) {
      V cdf[G], dgelu[G];
      gelu_parts<G>(u + v0, cdf, dgelu);
      for (int g = 0; g < G; g++) {
        const int v = v0 + g;
        store(y + v * L, residual ? u[v] * cdf[g] + load(own + v * L) : u[v] * cdf[g]);
        if (dg) stream(dg + v * L, dgelu[g]);
      }
    }
  }

  // The forward's output and GELU' again from what it kept (saved: xhat, or z without a norm), row
  // by row: u = xhat gamma + beta as the forward makes it, then the same finish_row; no gather, no
  // products. The same values as the forward's up to rounding: the compiler may contract a sum
  // into an FMA in one and not in the other (an ulp here and there).
  static void restore(int64_t n_in, int64_t m, const T* h, const T* gamma, const T* beta, bool residual,
                      const T* saved, T* y, T* dgelu, int threads) {
    const T* own = h + (n_in - m) * H;
    const int parts = parts_for(m, threads);
    parallel(parts, [&](int t) {
      int64_t i, end;
      range_of(m, parts, t, 1, i, end);
      for (; i < end; i++) {
        const T* s = saved + i * H;
        V u[NV];
        for (int v = 0; v < NV; v++) {
          const V xhat = load(s + v * L);
          u[v] = gamma ? xhat * load(gamma + v * L) + load(beta + v * L) : xhat;
        }
        finish_row(u, own + i * H, residual, y + i * H, dgelu ? dgelu + i * H : nullptr);
      }
    });
  }

  static void forward(int64_t n_in, int64_t m, int K, const int32_t* index, const T* weight, const T* h,
                      const T* wt_rel, const T* wt_root, const T* b_rel, const T* gamma, const T* beta, T eps,
                      bool residual, T* y, T* saved, T* rstd, T* dgelu, int threads) {
    const T* own = h + (n_in - m) * H;
    const int parts = parts_for(m, threads);
    parallel(parts, [&](int t) {
      int64_t i, end;
      range_of(m, parts, t, kRows, i, end);
      for (; i + kRows <= end; i += kRows)
        forward_rows<kRows>(i, K, index, weight, h, own, wt_rel, wt_root, b_rel, gamma, beta, eps, residual, y,
                            saved, rstd, dgelu);
      for (; i < end; i++)
        forward_rows<1>(i, K, index, weight, h, own, wt_rel, wt_root, b_rel, gamma, beta, eps, residual, y,
                        saved, rstd, dgelu);
    });
  }

  // gz, the gradient of z, of own row i (the GELU's and the LayerNorm's backward), and its share of
  // the gradients of b_rel, gamma and beta.
  static void backward_norm(int64_t i, const T* gamma, const T* saved, const T* rstd, const T* dgelu, const T* gy,
                            const Grads<T>& g) {
    const T* s = saved + i * H;
    const T* dg = dgelu + i * H;
    const T* gyi = gy + i * H;
    V gz_[NV];
    if (gamma) {
      V xhat[NV], gx[NV], c1 = {}, c2 = {};
      for (int v = 0; v < NV; v++) {
        xhat[v] = load(s + v * L);
        const V gam = load(gamma + v * L);
        const V gu = load(gyi + v * L) * load(dg + v * L);
        if (g.ggamma) store(g.ggamma + v * L, load(g.ggamma + v * L) + gu * xhat[v]);
        if (g.gbeta) store(g.gbeta + v * L, load(g.gbeta + v * L) + gu);
        gx[v] = gu * gam;
        c1 += gx[v];
        c2 += gx[v] * xhat[v];
      }
      const T m1 = hsum(c1) / H, m2 = hsum(c2) / H, rs = rstd[i];
      for (int v = 0; v < NV; v++) gz_[v] = rs * (gx[v] - m1 - xhat[v] * m2);
    } else {
      for (int v = 0; v < NV; v++) gz_[v] = load(gyi + v * L) * load(dg + v * L);
    }
    for (int v = 0; v < NV; v++) {
      store(g.gz + i * H + v * L, gz_[v]);
      if (g.gb_rel) store(g.gb_rel + v * L, load(g.gb_rel + v * L) + gz_[v]);
    }
  }

  // The backward of input rows [begin, end), with g's weight gradients added to, in panels of up to
  // kPanel rows (no panel spans the halo rows and the own rows); make(need) first makes gz of the
  // own rows [0, need), and ahead (when not null) fetches, over the panel's products, what the next
  // panel reads: fetch(ahead, need, next need) queues what makes gz of those own rows reads, the
  // panel the next input rows of h. With t_s = sum_j weight_t[s, j] gz[index_t[s, j]] (the
  // gather-sum's backward: what row s sent, weighted):
  //   gW_rel += t_s^T h_s,   gh_s = t_s W_rel,   and for an own row i = s - halo also
  //   gW_root += gz_i^T h_s, gh_s += gz_i W_root (+ gy_i through the residual).
  // A panel's weight gradients are summed in registers over all its rows (outer); its input
  // gradients in register blocks of kRows rows (matmul).
  template <typename Make, typename Fetch>
  static void input_rows(int64_t begin, int64_t end, int64_t n_in, int64_t halo, int K, const int32_t* index_t,
                         const T* weight_t, const T* h, const T* w_rel, const T* w_root, bool residual, const T* gy,
                         const Grads<T>& g, Make&& make, Ahead* ahead, Fetch&& fetch) {
    alignas(64) T t[kPanel][H];
    const T *tr[kPanel], *gzr[kPanel], *gyr[kPanel];
    T* ghr[kPanel];
    // The panel from s0: its rows (n) and the own rows whose gz it reads (need: [0, need)).
    auto panel = [&](int64_t s0, int& n, int64_t& need) {
      const bool own = s0 >= halo;
      n = static_cast<int>(std::min<int64_t>(kPanel, std::min(end, own ? n_in : halo) - s0));
      need = own ? s0 + n - halo : 0;
      for (int64_t e = s0 * K; e < (s0 + n) * K; e++) need = index_t[e] + 1 > need ? index_t[e] + 1 : need;
    };
    int n, next_n = 0;
    int64_t need, next_need = 0;
    if (begin < end) panel(begin, n, need);
    for (int64_t s0 = begin; s0 < end; s0 += n, n = next_n, need = next_need) {
      const bool own = s0 >= halo;
      make(need);
      if (s0 + n < end) panel(s0 + n, next_n, next_need);
      if (ahead) {
        ahead->clear();
        if (s0 + n < end) {
          fetch(*ahead, need, next_need);
          ahead->add(h, H * sizeof(T), s0 + n, s0 + n + next_n);
        }
        ahead->spread((g.gw_rel ? kTiles : 0) + (own && g.gw_root ? kTiles : 0));
      }
      for (int r = 0; r < n; r++) {
        const int64_t s = s0 + r;
        gather(index_t + s * K, weight_t + s * K, K, g.gz, t[r]);
        tr[r] = t[r];
        gzr[r] = own ? g.gz + (s - halo) * H : nullptr;  // a halo row has no gz or gy of its own
        gyr[r] = own ? gy + (s - halo) * H : nullptr;
        ghr[r] = g.gh ? g.gh + s * H : nullptr;
      }
      if (g.gw_rel) outer(n, t[0], h + s0 * H, g.gw_rel, ahead);
      if (own && g.gw_root) outer(n, g.gz + (s0 - halo) * H, h + s0 * H, g.gw_root, ahead);
      if (g.gh) {
        int r = 0;
        for (; r + kRows <= n; r += kRows)
          matmul<kRows>(tr + r, w_rel, own ? gzr + r : nullptr, w_root, own && residual ? gyr + r : nullptr, ghr + r);
        for (; r < n; r++)
          matmul<1>(tr + r, w_rel, own ? gzr + r : nullptr, w_root, own && residual ? gyr + r : nullptr, ghr + r);
      }
    }
  }

  // On one thread, one pass over the input rows with gz made row by row just ahead of the block
  // that first reads it (the rows the block gathers, and its own): gz is read back from L1 or L2,
  // not from memory. gz's rows are made in order whatever the table, so every sum runs in the same
  // order as two separate passes would. On T > 1 threads, two passes: gz of every own row (its
  // ranges side by side), then the input rows' ranges side by side; each range after the first
  // adds its weight gradients into sums of its own, added to g's in range order at the end.
  static void backward(int64_t n_in, int64_t m, int K, const int32_t* index_t, const T* weight_t, const T* h,
                       const T* w_rel, const T* w_root, const T* gamma, bool residual, const T* saved,
                       const T* rstd, const T* dgelu, const T* gy, const Grads<T>& g, int threads) {
    const int64_t halo = n_in - m;
    const bool inputs = g.gh || g.gw_rel || g.gw_root;
    const int parts = parts_for(n_in, threads);
    if (parts == 1) {
      int64_t made = 0;  // gz of own rows [0, made) is done
      auto make_until = [&](int64_t need) {
        for (need = need < m ? need : m; made < need; made++) backward_norm(made, gamma, saved, rstd, dgelu, gy, g);
      };
      // What making gz of own rows [from, to) reads from memory: their xhat (or z) and GELU',
      // streamed there by the forward. (Their gy too, the layer above's gh: fetching it as well
      // was slower, bench/kernel_ab.py.)
      auto fetch = [&](Ahead& ahead, int64_t from, int64_t to) {
        to = to < m ? to : m;
        ahead.add(saved, H * sizeof(T), from, to);
        ahead.add(dgelu, H * sizeof(T), from, to);
      };
      Ahead ahead;
      if (inputs)
        input_rows(0, n_in, n_in, halo, K, index_t, weight_t, h, w_rel, w_root, residual, gy, g, make_until, &ahead,
                   fetch);
      make_until(m);  // rows no input row reads still add to the gradients of b_rel, gamma and beta
      return;
    }
    constexpr int64_t kSums = 2 * H * H + 3 * H;  // gw_rel, gw_root, gb_rel, ggamma, gbeta
    std::vector<T> sums((parts - 1) * kSums, T(0));
    auto grads_of = [&](int t) {
      if (t == 0) return g;
      T* p = sums.data() + (t - 1) * kSums;
      Grads<T> r = g;
      r.gw_rel = g.gw_rel ? p : nullptr;
      r.gw_root = g.gw_root ? p + H * H : nullptr;
      r.gb_rel = g.gb_rel ? p + 2 * H * H : nullptr;
      r.ggamma = g.ggamma ? p + 2 * H * H + H : nullptr;
      r.gbeta = g.gbeta ? p + 2 * H * H + 2 * H : nullptr;
      return r;
    };
    const int norm_parts = parts_for(m, threads);
    parallel(norm_parts, [&](int t) {
      const Grads<T> gt = grads_of(t);
      int64_t i, end;
      range_of(m, norm_parts, t, 1, i, end);
      for (; i < end; i++) backward_norm(i, gamma, saved, rstd, dgelu, gy, gt);
    });
    if (inputs)
      parallel(parts, [&](int t) {
        int64_t begin, end;
        range_of(n_in, parts, t, kRows, begin, end);
        input_rows(begin, end, n_in, halo, K, index_t, weight_t, h, w_rel, w_root, residual, gy, grads_of(t),
                   [](int64_t) {}, nullptr, [](Ahead&, int64_t, int64_t) {});
      });
    for (int t = 1; t < parts; t++) {
      const Grads<T> gt = grads_of(t);
      add_into(g.gw_rel, gt.gw_rel, H * H);
      add_into(g.gw_root, gt.gw_root, H * H);
      add_into(g.gb_rel, gt.gb_rel, H);
      add_into(g.ggamma, gt.ggamma, H);
      add_into(g.gbeta, gt.gbeta, H);
    }
  }
};

// The encoder, h = GELU(x W^T + b) for x [n, F] (any F), and its backward: Linear and GELU in
// one pass over register blocks of rows, keeping GELU'(u), u = x W^T + b, for the backward (as
// the layers do: the backward then needs no erf or exp). torch's own matrix products run at a
// third of their speed at K = F = 19 (the default features).
template <typename T, int H> struct Encoder : Rows<T, H> {
  using R = Rows<T, H>;
  using typename R::V;
  using R::L, R::NV, R::CB, R::kPanel, R::kOuts, R::load, R::store;

  // Rows [i0, i0 + NR): u = x wt + b (wt: [F, H] row-major), h = GELU(u), dgelu = GELU'(u); in
  // blocks of CB vectors of columns, as Layer::matmul.
  template <int NR>
  static void forward_rows(int64_t i0, int F, const T* x, const T* wt, const T* b, T* dgelu, T* h) {
    for (int c0 = 0; c0 < NV; c0 += CB) {
      V acc[NR][CB];
#pragma GCC unroll 32
      for (int r = 0; r < NR; r++)
#pragma GCC unroll 32
        for (int v = 0; v < CB; v++) acc[r][v] = b ? load(b + (c0 + v) * L) : V{};
      for (int k = 0; k < F; k++) {
        V w[CB];
#pragma GCC unroll 32
        for (int v = 0; v < CB; v++) w[v] = load(wt + k * H + (c0 + v) * L);
#pragma GCC unroll 32
        for (int r = 0; r < NR; r++) {
          const T a = x[(i0 + r) * F + k];
#pragma GCC unroll 32
          for (int v = 0; v < CB; v++) acc[r][v] += a * w[v];
        }
      }
      V* u = &acc[0][0];  // the block's NR x CB sums, row after row
      constexpr int G = kGeluGroup(NR * CB);
      for (int k0 = 0; k0 + G <= NR * CB; k0 += G) {
        V cdf[G], dg[G];
        gelu_parts<G>(u + k0, cdf, dg);
        for (int g = 0; g < G; g++) {
          const int r = (k0 + g) / CB, v = (k0 + g) % CB;
          stream(dgelu + (i0 + r) * H + (c0 + v) * L, dg[g]);
          store(h + (i0 + r) * H + (c0 + v) * L, u[k0 + g] * cdf[g]);
        }
      }
    }
  }

  // Rows [i0, i0 + n), n <= kPanel: gu = gy GELU'(u) (kept in gu_out when wanted), gb += sum_r gu[r]
  // and gwt[k] += sum_r x[r, k] gu[r], each sum over the rows in order (as one row at a time would).
  // gu of the panel is made first into L1; the weight gradient then goes as Layer::outer does, in
  // tiles of up to kOuts features x CB vectors of columns held in registers while the panel's rows
  // go by: kOuts x CB independent chains of FMAs. (Six rows at a time, each feature's sum was a
  // chain of six dependent FMAs: 0.53 -> 0.47 ms a mini-batch step, docs/speed.md item 41; the
  // rest is mostly its reads of gy and GELU'.)
  static void backward_panel(int64_t i0, int n, int F, const T* x, const T* dgelu, const T* gy, T* gu_out, T* gwt,
                             T* gb) {
    alignas(64) T gu[kPanel][H];
    V sb[NV];
    if (gb)
      for (int v = 0; v < NV; v++) sb[v] = load(gb + v * L);
    for (int r = 0; r < n; r++)
      for (int v = 0; v < NV; v++) {
        const int64_t at = (i0 + r) * H + v * L;
        const V g = load(gy + at) * load(dgelu + at);
        store(gu[r] + v * L, g);
        if (gu_out) store(gu_out + at, g);
        if (gb) sb[v] += g;
      }
    if (gb)
      for (int v = 0; v < NV; v++) store(gb + v * L, sb[v]);
    if (!gwt) return;
    for (int k0 = 0; k0 < F; k0 += kOuts) switch (std::min(kOuts, F - k0)) {
        case 4: features<4>(k0, i0, n, F, x, gu, gwt); break;
        case 3: features<3>(k0, i0, n, F, x, gu, gwt); break;
        case 2: features<2>(k0, i0, n, F, x, gu, gwt); break;
        default: features<1>(k0, i0, n, F, x, gu, gwt);
      }
  }

  // gwt[k0 + i] += sum_r x[i0 + r, k0 + i] gu[r], i < NK, over the panel's n rows in order.
  template <int NK>
  static void features(int k0, int64_t i0, int n, int F, const T* x, const T (*gu)[H], T* gwt) {
    for (int c0 = 0; c0 < NV; c0 += CB) R::template outer_tile<NK>(n, x + i0 * F + k0, F, gu[0], gwt + k0 * H, c0);
  }

  static void forward(int64_t n, int F, const T* x, const T* wt, const T* b, T* dgelu, T* h, int threads) {
    const int parts = parts_for(n, threads);
    parallel(parts, [&](int t) {
      int64_t i, end;
      range_of(n, parts, t, kRows, i, end);
      for (; i + kRows <= end; i += kRows) forward_rows<kRows>(i, F, x, wt, b, dgelu, h);
      for (; i < end; i++) forward_rows<1>(i, F, x, wt, b, dgelu, h);
    });
  }

  // As Layer::backward: a range after the first adds into sums of its own, added in range order.
  static void backward(int64_t n, int F, const T* x, const T* dgelu, const T* gy, T* gu, T* gwt, T* gb,
                       int threads) {
    const int parts = parts_for(n, threads);
    const int64_t kSums = int64_t(F) * H + H;
    std::vector<T> sums((parts - 1) * kSums, T(0));
    parallel(parts, [&](int t) {
      T* p = t ? sums.data() + (t - 1) * kSums : nullptr;
      T* gwt_t = gwt && p ? p : gwt;
      T* gb_t = gb && p ? p + int64_t(F) * H : gb;
      int64_t i, end;
      range_of(n, parts, t, kRows, i, end);
      for (; i < end; i += kPanel)
        backward_panel(i, static_cast<int>(std::min<int64_t>(kPanel, end - i)), F, x, dgelu, gy, gu, gwt_t, gb_t);
    });
    for (int t = 1; t < parts; t++) {
      add_into(gwt, sums.data() + (t - 1) * kSums, int64_t(F) * H);
      add_into(gb, sums.data() + (t - 1) * kSums + int64_t(F) * H, H);
    }
  }
};

// The model's output, out[i] = (h[i] . w + b) + x[i] . ws for h [n, H] and x [n, F] (any F):
// SpacingGNN's head (a Linear to one output, with its bias) plus its skip (one, without), and the
// backward. torch runs each as a matrix product with one column ([n, H] x [H, 1]): five calls
// of ~0.1 ms in a mini-batch step; one pass over the rows each way takes 0.16 and 0.20 ms (the
// step 0.27 ms shorter, docs/speed.md item 32).
// Each row's sums run in a fixed order (its H lanes, then x's F terms), four rows side by side;
// the weights' gradients over the rows in order, on one thread.
template <typename T, int H> struct Head : Rows<T, H> {
  using R = Rows<T, H>;
  using typename R::V;
  using R::L, R::NV, R::load, R::store, R::hsum;
  static constexpr int kSide = 4;  // rows side by side: each row's sums are chains of their own

  template <int NR>
  static void rows(int64_t i0, int F, const T* h, const T* x, const V* w, T b, const T* ws, T* out) {
    V acc[NR] = {};
    for (int v = 0; v < NV; v++)
#pragma GCC unroll 8
      for (int r = 0; r < NR; r++) acc[r] += load(h + (i0 + r) * H + v * L) * w[v];
    T s[NR], t[NR] = {};
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++) s[r] = hsum(acc[r]) + b;
    for (int k = 0; k < F; k++)
#pragma GCC unroll 8
      for (int r = 0; r < NR; r++) t[r] += x[(i0 + r) * F + k] * ws[k];
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++) out[i0 + r] = s[r] + t[r];
  }

  static void forward(int64_t n, int F, const T* h, const T* x, const T* wh, T b, const T* ws, T* out) {
    V w[NV];
    for (int v = 0; v < NV; v++) w[v] = load(wh + v * L);
    int64_t i = 0;
    for (; i + kSide <= n; i += kSide) rows<kSide>(i, F, h, x, w, b, ws, out);
    for (; i < n; i++) rows<1>(i, F, h, x, w, b, ws, out);
  }

  // From g [n], the gradient of out: gh = g w (each row's H products; when not null), and the
  // gradients of w, b and ws (each when not null) written, summed over the rows in order.
  static void backward(int64_t n, int F, const T* h, const T* x, const T* g, const T* wh, T* gh, T* gw, T* gb,
                       T* gws) {
    V w[NV], acc[NV] = {};
    for (int v = 0; v < NV; v++) w[v] = load(wh + v * L);
    T sb = 0;
    if (gws)
      for (int k = 0; k < F; k++) gws[k] = 0;
    for (int64_t i = 0; i < n; i++) {
      const T gi = g[i];
      if (gh)
        for (int v = 0; v < NV; v++) store(gh + i * H + v * L, gi * w[v]);
      if (gw)
        for (int v = 0; v < NV; v++) acc[v] += gi * load(h + i * H + v * L);
      if (gws)
        for (int k = 0; k < F; k++) gws[k] += gi * x[i * F + k];
      sb += gi;
    }
    if (gw)
      for (int v = 0; v < NV; v++) store(gw + v * L, acc[v]);
    if (gb) *gb = sb;
  }
};

// The extern "C" entries pick the element type and the hidden width at run time: f(T{}, width)
// with the width as a compile-time constant; 1 (the caller falls back to torch) for another
// dtype or width.
template <typename F> int with_type(int dtype_bits, F&& f) {
  if (dtype_bits == 32) return f(float{});
  if (dtype_bits == 64) return f(double{});
  return 1;
}

template <typename F> int with_width(int H, F&& f) {
  switch (H) {
    case 16: return f(std::integral_constant<int, 16>{});
    case 32: return f(std::integral_constant<int, 32>{});
    case 64: return f(std::integral_constant<int, 64>{});
    case 128: return f(std::integral_constant<int, 128>{});
    default: return 1;
  }
}

// Layer<T, H> or Encoder<T, H> of the run-time dtype and width, given to f as a value.
template <template <typename, int> class Kernel, typename F> int with_kernel(int dtype_bits, int H, F&& f) {
  return with_type(dtype_bits, [&](auto t) {
    return with_width(H, [&](auto width) {
      f(Kernel<decltype(t), decltype(width)::value>{}, static_cast<const decltype(t)*>(nullptr));
      return 0;
    });
  });
}

template <typename T> const T* in(const void* p, const T*) { return static_cast<const T*>(p); }
template <typename T> T* out(void* p, const T*) { return static_cast<T*>(p); }

}  // namespace

extern "C" {

// The bytes of the kernels' vectors: the build target's widest (ZS_VEC_BYTES).
int zs_vector_bytes() { return ZS_VEC_BYTES; }

// Returns 0, or 1 when the dtype or hidden width has no compiled variant (the caller falls back
// to torch). saved (xhat, or z without a norm) is also the forward's scratch; rstd is written
// with a norm; dgelu, GELU'(u) for the backward, is written when not null. threads: how many the
// rows may take (trainer.fused passes torch's); each entry below takes the same.
int zs_layer_forward(int dtype_bits, int H, int64_t n_in, int64_t m, int K, const int32_t* index,
                     const void* weight, const void* h, const void* wt_rel, const void* wt_root, const void* b_rel,
                     const void* gamma, const void* beta, double eps, int residual, void* y, void* saved,
                     void* rstd, void* dgelu, int threads) {
  return with_kernel<Layer>(dtype_bits, H, [&](auto layer, auto t) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(t)>>;
    layer.forward(n_in, m, K, index, in(weight, t), in(h, t), in(wt_rel, t), in(wt_root, t), in(b_rel, t),
                  in(gamma, t), in(beta, t), static_cast<T>(eps), residual != 0, out(y, t), out(saved, t),
                  out(rstd, t), out(dgelu, t), threads);
  });
}

// The forward's y and dgelu (when not null) again from its saved (xhat, or z without a norm), for
// the m own rows of h: elementwise, none of the products (Layer::restore).
int zs_layer_restore(int dtype_bits, int H, int64_t n_in, int64_t m, const void* h, const void* gamma,
                     const void* beta, int residual, const void* saved, void* y, void* dgelu, int threads) {
  return with_kernel<Layer>(dtype_bits, H, [&](auto layer, auto t) {
    layer.restore(n_in, m, in(h, t), in(gamma, t), in(beta, t), residual != 0, in(saved, t), out(y, t),
                  out(dgelu, t), threads);
  });
}

int zs_layer_backward(int dtype_bits, int H, int64_t n_in, int64_t m, int K, const int32_t* index_t,
                      const void* weight_t, const void* h, const void* w_rel, const void* w_root, const void* gamma,
                      int residual, const void* saved, const void* rstd, const void* dgelu, const void* gy, void* gh,
                      void* gz, void* gw_rel, void* gb_rel, void* gw_root, void* ggamma, void* gbeta, int threads) {
  return with_kernel<Layer>(dtype_bits, H, [&](auto layer, auto t) {
    const Grads<std::remove_const_t<std::remove_pointer_t<decltype(t)>>> g{
        out(gh, t), out(gz, t), out(gw_rel, t), out(gb_rel, t), out(gw_root, t), out(ggamma, t), out(gbeta, t)};
    layer.backward(n_in, m, K, index_t, in(weight_t, t), in(h, t), in(w_rel, t), in(w_root, t), in(gamma, t),
                   residual != 0, in(saved, t), in(rstd, t), in(dgelu, t), in(gy, t), g, threads);
  });
}
}

namespace {

// GELU or its backward over n values: whole vectors, then the tail through a zero-padded one.
template <typename T, bool Backward> void gelu_t(int64_t n, const T* x, const T* gy, T* out) {
  using V = typename Vec<T>::type;
  constexpr int L = ZS_VEC_BYTES / sizeof(T);
  auto one = [](V u, V g) {
    V cdf, dgelu;
    gelu_parts<1>(&u, &cdf, &dgelu);
    return Backward ? g * dgelu : u * cdf;
  };
  auto load = [](const T* p) { return *reinterpret_cast<const V*>(p); };
  int64_t i = 0;
  for (; i + L <= n; i += L) *reinterpret_cast<V*>(out + i) = one(load(x + i), Backward ? load(gy + i) : V{});
  if (i < n) {
    V u = {}, g = {};
    std::memcpy(&u, x + i, (n - i) * sizeof(T));
    if (Backward) std::memcpy(&g, gy + i, (n - i) * sizeof(T));
    const V o = one(u, g);
    std::memcpy(out + i, &o, (n - i) * sizeof(T));
  }
}

}  // namespace

extern "C" {

// GELU (exact, erf) of n values and its backward: the encoder's activation (trainer.fused.gelu).
int zs_gelu_forward(int dtype_bits, int64_t n, const void* x, void* y) {
  if (dtype_bits == 32)
    gelu_t<float, false>(n, static_cast<const float*>(x), nullptr, static_cast<float*>(y));
  else if (dtype_bits == 64)
    gelu_t<double, false>(n, static_cast<const double*>(x), nullptr, static_cast<double*>(y));
  else
    return 1;
  return 0;
}

int zs_gelu_backward(int dtype_bits, int64_t n, const void* x, const void* gy, void* gx) {
  if (dtype_bits == 32)
    gelu_t<float, true>(n, static_cast<const float*>(x), static_cast<const float*>(gy), static_cast<float*>(gx));
  else if (dtype_bits == 64)
    gelu_t<double, true>(n, static_cast<const double*>(x), static_cast<const double*>(gy), static_cast<double*>(gx));
  else
    return 1;
  return 0;
}
}

extern "C" {

// The encoder GELU(x W^T + b) (trainer.fused.encoder): wt is W^T [F, H]; b may be null. Writes
// h [n, H] and dgelu = GELU'(x W^T + b) [n, H]. Returns 0, or 1 for a width or dtype without a
// variant.
int zs_encoder_forward(int dtype_bits, int H, int64_t n, int F, const void* x, const void* wt, const void* b,
                       void* dgelu, void* h, int threads) {
  return with_kernel<Encoder>(dtype_bits, H, [&](auto encoder, auto t) {
    encoder.forward(n, F, in(x, t), in(wt, t), in(b, t), out(dgelu, t), out(h, t), threads);
  });
}

// Its backward from the forward's dgelu and gy [n, H]: gu = gy dgelu into gu (when not null), and
// added to gwt ([F, H], W's gradient transposed) and gb (each when not null).
int zs_encoder_backward(int dtype_bits, int H, int64_t n, int F, const void* x, const void* dgelu, const void* gy,
                        void* gu, void* gwt, void* gb, int threads) {
  return with_kernel<Encoder>(dtype_bits, H, [&](auto encoder, auto t) {
    encoder.backward(n, F, in(x, t), in(dgelu, t), in(gy, t), out(gu, t), out(gwt, t), out(gb, t), threads);
  });
}

// The output head (Head): out [n] = (h . w + b[0]) + x . ws, h [n, H], x [n, F], w [H], ws [F].
int zs_head_forward(int dtype_bits, int H, int64_t n, int F, const void* h, const void* x, const void* w,
                    const void* b, const void* ws, void* out_) {
  return with_kernel<Head>(dtype_bits, H, [&](auto head, auto t) {
    head.forward(n, F, in(h, t), in(x, t), in(w, t), *in(b, t), in(ws, t), out(out_, t));
  });
}

// Its backward from g [n]: gh [n, H], gw [H], gb [1] and gws [F] written, each when not null.
int zs_head_backward(int dtype_bits, int H, int64_t n, int F, const void* h, const void* x, const void* g,
                     const void* w, void* gh, void* gw, void* gb, void* gws) {
  return with_kernel<Head>(dtype_bits, H, [&](auto head, auto t) {
    head.backward(n, F, in(h, t), in(x, t), in(g, t), in(w, t), out(gh, t), out(gw, t), out(gb, t), out(gws, t));
  });
}
}
