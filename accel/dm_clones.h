/* DM_VECTOR_CLONES: a function whose entry loops vectorize with AVX2 (four 64-bit entries an
 * instruction) is built twice by GCC on x86-64, for AVX2 and for processors without it, the
 * right one chosen at load time. Not part of the cffi declarations (build_cffi.py's HEADERS). */
#ifndef DM_CLONES_H
#define DM_CLONES_H

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define DM_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define DM_VECTOR_CLONES
#endif

#endif
