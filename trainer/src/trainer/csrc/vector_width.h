// The bytes of the kernels' vectors: the build target's widest, AVX-512's 64, else AVX's 32, else
// SSE's 16. A vector type wider than the target's registers is a memory object to GCC (each
// operation loads and stores it through the stack): with 64-byte vectors on an AVX2 core (Zen 3)
// a mini-batch step's layers took ~15x as long as with 32-byte ones (docs/speed.md). Included by
// fused_layer.cpp and by bench/fma_peak.cpp, which measures the limit at the kernels' width.
#pragma once

#if defined(__AVX512F__)
#define ZS_VEC_BYTES 64
#elif defined(__AVX__)
#define ZS_VEC_BYTES 32
#else
#define ZS_VEC_BYTES 16
#endif
