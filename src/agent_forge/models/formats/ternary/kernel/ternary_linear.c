/*
 * Ternary x int8 linear layer for CPU: y = (x_q . w) * gamma / s + bias, straight from 2-bit packed weights.
 *
 * Compiled at first use by agent_forge/stages/bitnet/kernel/__init__.py (gcc -O3 -march=native -fopenmp)
 * and called through ctypes (tl_forward, one call per layer and batch). No weight is ever expanded to floats:
 *   1. each token is quantized to int8 with its own absmax scale s = 127 / max|x| (BitNet b1.58), and the
 *      sum of its codes is kept;
 *   2. weights are stored as code + 1 in {0, 1, 2}, 2 bits each, in blocks of 128 inputs = 32 bytes where
 *      bit pair p of byte t belongs to input 32 * p + t; one shift + mask yields 32 consecutive weights;
 *   3. an unsigned x signed byte multiply-add (AVX2 vpmaddubsw) accumulates (w + 1) * x, and the token's code
 *      sum is subtracted once at the end, which gives sum(w * x) exactly in integers.
 * The scalar path computes the same integers on CPUs without AVX2.
 * Exercise: pytest tests/stages/bitnet/test_bitnet_kernel.py
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#define BLOCK_INPUTS 128
#define BLOCK_BYTES 32
/* below this many weight x token products a parallel region costs more than it saves */
#define PARALLEL_MIN_WORK (1L << 20)

int tl_abi_version(void) { return 3; }

int tl_has_avx2(void) {
#ifdef __AVX2__
    return 1;
#else
    return 0;
#endif
}

/* Quantize one token to int8 (padded with zeros to k_padded); returns the sum of the codes. */
static int32_t quantize_token(const float *x, int64_t k, int64_t k_padded, int q_max, int8_t *codes, float *scale_out) {
    float absmax = 0.0f;
    for (int64_t i = 0; i < k; ++i) {
        float a = fabsf(x[i]);
        absmax = a > absmax ? a : absmax;
    }
    if (absmax < 1e-5f) absmax = 1e-5f;
    const float scale = (float)q_max / absmax;
    const float lo = (float)(-q_max - 1), hi = (float)q_max;
    int32_t sum = 0;
    for (int64_t i = 0; i < k; ++i) {
        float v = nearbyintf(x[i] * scale); /* round half to even, like torch.round */
        v = v < lo ? lo : (v > hi ? hi : v);
        codes[i] = (int8_t)v;
        sum += (int32_t)codes[i];
    }
    memset(codes + k, 0, (size_t)(k_padded - k));
    *scale_out = scale;
    return sum;
}

#ifdef __AVX2__
/* Sums of four rows' (w + 1) * x, one int32 per row, sharing every activation load. */
static inline __m128i dot4_avx2(const uint8_t *w0, const uint8_t *w1, const uint8_t *w2, const uint8_t *w3,
                                const int8_t *x, int64_t blocks) {
    const __m256i mask = _mm256_set1_epi8(3);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
    const uint8_t *rows[4] = {w0, w1, w2, w3};
    for (int64_t b = 0; b < blocks; ++b) {
        const int8_t *xb = x + b * BLOCK_INPUTS;
        const __m256i x0 = _mm256_loadu_si256((const __m256i *)(xb));
        const __m256i x1 = _mm256_loadu_si256((const __m256i *)(xb + 32));
        const __m256i x2 = _mm256_loadu_si256((const __m256i *)(xb + 64));
        const __m256i x3 = _mm256_loadu_si256((const __m256i *)(xb + 96));
        for (int r = 0; r < 4; ++r) {
            const __m256i wb = _mm256_loadu_si256((const __m256i *)(rows[r] + b * BLOCK_BYTES));
            /* each 16-bit lane sums two products of at most 2 * 128: four planes stay far below 2^15 */
            __m256i s = _mm256_maddubs_epi16(_mm256_and_si256(wb, mask), x0);
            s = _mm256_add_epi16(s, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(wb, 2), mask), x1));
            s = _mm256_add_epi16(s, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(wb, 4), mask), x2));
            s = _mm256_add_epi16(s, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(wb, 6), mask), x3));
            acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(s, ones));
        }
    }
    /* horizontal sums of the four accumulators at once: lanes end up as rows 0..3 */
    const __m256i h01 = _mm256_hadd_epi32(acc[0], acc[1]);
    const __m256i h23 = _mm256_hadd_epi32(acc[2], acc[3]);
    const __m256i h = _mm256_hadd_epi32(h01, h23);
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}
#endif

static int32_t dot1_scalar(const uint8_t *w, const int8_t *x, int64_t blocks) {
    int32_t acc = 0;
    for (int64_t b = 0; b < blocks; ++b) {
        const uint8_t *wb = w + b * BLOCK_BYTES;
        const int8_t *xb = x + b * BLOCK_INPUTS;
        for (int p = 0; p < 4; ++p)
            for (int t = 0; t < BLOCK_BYTES; ++t)
                acc += (int32_t)((wb[t] >> (2 * p)) & 3) * (int32_t)xb[32 * p + t];
    }
    return acc;
}

static void rows_for_token(const uint8_t *w, int64_t row_begin, int64_t row_end, int64_t row_bytes,
                           const int8_t *xq, int32_t xsum, float factor, const float *bias, float *y) {
    const int64_t blocks = row_bytes / BLOCK_BYTES;
    int64_t n = row_begin;
#ifdef __AVX2__
    const __m128i vsum = _mm_set1_epi32(xsum);
    const __m128 vfactor = _mm_set1_ps(factor);
    for (; n + 4 <= row_end; n += 4) {
        const __m128i d = dot4_avx2(w + n * row_bytes, w + (n + 1) * row_bytes, w + (n + 2) * row_bytes,
                                    w + (n + 3) * row_bytes, xq, blocks);
        __m128 v = _mm_mul_ps(_mm_cvtepi32_ps(_mm_sub_epi32(d, vsum)), vfactor);
        if (bias) v = _mm_add_ps(v, _mm_loadu_ps(bias + n));
        _mm_storeu_ps(y + n, v);
    }
#endif
    for (; n < row_end; ++n) {
        float v = (float)(dot1_scalar(w + n * row_bytes, xq, blocks) - xsum) * factor;
        y[n] = bias ? v + bias[n] : v;
    }
}

/* Per-thread scratch for the quantized activations, grown on demand and kept between calls. */
static _Thread_local void *scratch = NULL;
static _Thread_local size_t scratch_size = 0;

static void *scratch_of(size_t size) {
    if (size > scratch_size) {
        free(scratch);
        size_t rounded = (size + 4095) / 4096 * 4096;
        scratch = aligned_alloc(64, rounded);
        scratch_size = scratch ? rounded : 0;
    }
    return scratch;
}

/* A packed layer's constant arguments, filled once by the Python side (see kernel/__init__.py). */
typedef struct {
    const uint8_t *weight; /* (out_features, row_bytes) kernel layout */
    const float *bias;     /* out_features floats or NULL */
    int64_t in_features;
    int64_t out_features;
    int64_t row_bytes;
    float gamma;
    int32_t act_bits;
} tl_layer;

/*
 * x: (m, in_features) fp32 row-major; y: (m, out_features) fp32.
 * Returns 0 on success, -1 if the scratch buffer cannot be allocated.
 */
int tl_forward(const tl_layer *L, const float *x, int64_t m, float *y, int n_threads) {
    const int64_t k = L->in_features, n = L->out_features, row_bytes = L->row_bytes;
    const int64_t k_padded = row_bytes * 4;
    const int q_max = (1 << (L->act_bits - 1)) - 1;
    const size_t codes_bytes = (size_t)((m * k_padded + 63) / 64 * 64);
    char *buf = (char *)scratch_of(codes_bytes + (size_t)m * (sizeof(int32_t) + sizeof(float)));
    if (!buf) return -1;
    int8_t *xq = (int8_t *)buf;
    int32_t *xsum = (int32_t *)(buf + codes_bytes);
    float *factor = (float *)(xsum + m);
    const int parallel = n_threads > 1 && m * n * k >= PARALLEL_MIN_WORK;
    /* rows in chunks of 16 so that a chunk's packed weights stay in L1 while every token passes over them */
    const int64_t chunk = 16;
    const int64_t chunks = (n + chunk - 1) / chunk;
    if (!parallel) { /* no OpenMP region at all: its fixed cost dominates single-token decoding */
        for (int64_t i = 0; i < m; ++i) {
            float scale;
            xsum[i] = quantize_token(x + i * k, k, k_padded, q_max, xq + i * k_padded, &scale);
            factor[i] = L->gamma / scale; /* same fp32 operation as the torch reference: gamma / s */
        }
        for (int64_t c = 0; c < chunks; ++c) {
            const int64_t begin = c * chunk, end = begin + chunk < n ? begin + chunk : n;
            for (int64_t i = 0; i < m; ++i)
                rows_for_token(L->weight, begin, end, row_bytes, xq + i * k_padded, xsum[i], factor[i], L->bias, y + i * n);
        }
        return 0;
    }
    #pragma omp parallel num_threads(n_threads)
    {
        #pragma omp for schedule(static)
        for (int64_t i = 0; i < m; ++i) {
            float scale;
            xsum[i] = quantize_token(x + i * k, k, k_padded, q_max, xq + i * k_padded, &scale);
            factor[i] = L->gamma / scale;
        }
        #pragma omp for schedule(static)
        for (int64_t c = 0; c < chunks; ++c) {
            const int64_t begin = c * chunk, end = begin + chunk < n ? begin + chunk : n;
            for (int64_t i = 0; i < m; ++i)
                rows_for_token(L->weight, begin, end, row_bytes, xq + i * k_padded, xsum[i], factor[i], L->bias, y + i * n);
        }
    }
    return 0;
}

/*
 * Re-pack one matrix from transformers' bitnet row layout ((n / 4, k) bytes; stored row r holds rows
 * r + i * n / 4 in bit pair i) into this kernel's layout ((n, row_bytes)), with no temporary buffers.
 * Inputs past k are padded with code 1 (weight 0). n must be a multiple of 4.
 */
void tl_rows_to_kernel(const uint8_t *rows, int64_t n, int64_t k, uint8_t *out, int64_t row_bytes) {
    const int64_t quarter = n / 4;
    memset(out, 0x55, (size_t)(n * row_bytes)); /* 0b01010101: four zero weights per byte */
    for (int64_t r = 0; r < n; ++r) {
        const uint8_t *src = rows + (r % quarter) * k;
        const int shift = 2 * (int)(r / quarter);
        uint8_t *dst = out + r * row_bytes;
        for (int64_t j = 0; j < k; ++j) {
            const uint8_t code = (src[j] >> shift) & 3;
            const int64_t byte = (j / BLOCK_INPUTS) * BLOCK_BYTES + (j % BLOCK_BYTES);
            const int plane = (int)((j % BLOCK_INPUTS) / BLOCK_BYTES);
            dst[byte] = (uint8_t)((dst[byte] & ~(3 << (2 * plane))) | (code << (2 * plane)));
        }
    }
}
