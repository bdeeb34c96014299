// The core's own float32 multiply-add limit, for bench/train.py: twelve independent chains of
// fused multiply-adds on the widest vectors of the build target (the vector type of
// trainer/src/trainer/csrc/fused_layer.cpp: 16 lanes with AVX-512, 8 with AVX), enough to cover
// the FMA latency on every x86 core this runs on. Built with the kernels' flags (-O3
// -march=native); the products of the kernels cannot run faster than this on one thread.
#include <cstdint>

#include "vector_width.h"  // trainer/src/trainer/csrc: ZS_VEC_BYTES

typedef float vf __attribute__((vector_size(ZS_VEC_BYTES)));
constexpr int kLanes = ZS_VEC_BYTES / sizeof(float);

extern "C" float zs_fma_loop(int64_t iterations) {
  constexpr int kChains = 12;
  vf acc[kChains];
  vf a = vf{} + 0.999999f, b = vf{} + 1e-7f;
  for (int c = 0; c < kChains; c++) acc[c] = vf{} + float(c);
  for (int64_t i = 0; i < iterations; i++) {
#pragma GCC unroll 16
    for (int c = 0; c < kChains; c++) acc[c] = acc[c] * a + b;
    __asm__ volatile("" : "+v"(a));  // a is opaque: no chain is folded or hoisted
  }
  float s = 0;
  for (int c = 0; c < kChains; c++) s += acc[c][0];
  return s;  // returned so that no chain is dead
}

// FLOPs of one iteration: chains x lanes x 2.
extern "C" int64_t zs_fma_flops_per_iteration() { return 12 * kLanes * 2; }
