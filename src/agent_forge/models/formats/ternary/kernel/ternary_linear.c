/*
 * Ternary x int8 linear layers for CPU, and a whole Llama decode step built on them.
 *
 * Compiled at first use by agent_forge/models/formats/ternary/kernel/__init__.py (gcc -O3 -mavx2 -mfma -fopenmp
 * when the CPU reports AVX2 and FMA, else portable C) and called through ctypes. No weight is expanded to floats:
 *   1. each token is quantized to int8 with its own absmax scale s = 127 / max|x| (BitNet b1.58), and the
 *      sum of its codes is kept;
 *   2. weights are stored as code + 1 in {0, 1, 2}, 2 bits each, in blocks of 128 inputs = 32 bytes where
 *      bit pair p of byte t belongs to input 32 * p + t; one shift + mask yields 32 consecutive weights;
 *   3. the dot products are exact integers; the output is rescaled once: y = dot * gamma / s + bias.
 *
 * Three matmul variants compute the same integers (selected per layer at runtime, measured against each
 * other by benchmarks/bench_packed_decode.py):
 *   TL_MADDUBS (0): unsigned (w + 1) x signed x with vpmaddubsw, the token's code sum subtracted once;
 *   TL_SIGN    (1): codes unpacked to int8 {-1, 0, 1} in registers, |w| x sign(x, w) with vpmaddubsw
 *                   (BitNet's usual formulation; two more instructions per 32 weights, no correction term);
 *   TL_LUT     (2): lookup tables (TL1-style): per pair of activations the 9 possible sums of two ternary
 *                   weights are tabulated (16 slots, split into low and high bytes), weights are stored as
 *                   one 4-bit index per pair, 32 rows interleaved, and vpshufb looks up 32 rows at once.
 * The scalar path computes the same integers on CPUs without AVX2.
 *
 * tl_decode_step runs one token through a whole Llama-style model (RMSNorm, q/k/v, RoPE, attention over a KV
 * cache, o, SiLU MLP, final norm, LM head) in one call and one OpenMP parallel region: every per-token Python
 * and torch dispatch cost of the layer-by-layer path is gone, activations shared by q/k/v and by gate/up are
 * quantized once, and the LM head reads int8 rows (4x fewer bytes than fp32) with an exact-argmax guarantee:
 * every row whose int8 logit could, within its rigorous error bound, reach the best lower bound is rescored
 * from the fp32 weights, so the greedy token is the one the fp32 head gives.
 * Exercise: pytest tests/stages/bitnet/test_bitnet_kernel.py tests/stages/bitnet/test_packed_decoder.py
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#define BLOCK_INPUTS 128
#define BLOCK_BYTES 32
#define LUT_ROWS 32
/* below this many weight x token products a parallel region costs more than it saves (a fork/join of warm
   OpenMP threads is a few microseconds; a 576 x 192 single-token layer takes about ten) */
#define PARALLEL_MIN_WORK (1L << 17)
/* the same for a whole decode step (weights x 1 token) */
#define DECODE_PARALLEL_MIN_WORK (1L << 23)

enum { TL_MADDUBS = 0, TL_SIGN = 1, TL_LUT = 2 };

int tl_abi_version(void) { return 5; }

int tl_has_avx2(void) {
#ifdef __AVX2__
    return 1;
#else
    return 0;
#endif
}

int tl_has_openmp(void) {
#ifdef _OPENMP
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

/* ------------------------------------------------------------------------------------------------------
 * Variant TL_MADDUBS and TL_SIGN: row-major kernel layout, four rows share every activation load.
 * ---------------------------------------------------------------------------------------------------- */
#ifdef __AVX2__
static inline __m128i hsum4(__m256i a0, __m256i a1, __m256i a2, __m256i a3) {
    /* horizontal sums of four accumulators at once: lanes end up as rows 0..3 */
    const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* Sums of four rows' (w + 1) * x, one int32 per row. */
static inline __m128i dot4_maddubs(const uint8_t *const rows[4], const int8_t *x, int64_t blocks) {
    const __m256i mask = _mm256_set1_epi8(3);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
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
    return hsum4(acc[0], acc[1], acc[2], acc[3]);
}

/* Sums of four rows' w * x with w unpacked to int8 {-1, 0, 1}: |w| * (x * sign(w)). Codes are never -128
   (|x * s| <= 127 by construction of s), so sign(x, w) cannot overflow. */
static inline __m256i plane_sign(__m256i wb, int shift, __m256i xv) {
    const __m256i mask = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    const __m256i w = _mm256_sub_epi8(_mm256_and_si256(_mm256_srli_epi16(wb, shift), mask), one);
    return _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(xv, w));
}

static inline __m128i dot4_sign(const uint8_t *const rows[4], const int8_t *x, int64_t blocks) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int64_t b = 0; b < blocks; ++b) {
        const int8_t *xb = x + b * BLOCK_INPUTS;
        const __m256i x0 = _mm256_loadu_si256((const __m256i *)(xb));
        const __m256i x1 = _mm256_loadu_si256((const __m256i *)(xb + 32));
        const __m256i x2 = _mm256_loadu_si256((const __m256i *)(xb + 64));
        const __m256i x3 = _mm256_loadu_si256((const __m256i *)(xb + 96));
        for (int r = 0; r < 4; ++r) {
            const __m256i wb = _mm256_loadu_si256((const __m256i *)(rows[r] + b * BLOCK_BYTES));
            __m256i s = plane_sign(wb, 0, x0);
            s = _mm256_add_epi16(s, plane_sign(wb, 2, x1));
            s = _mm256_add_epi16(s, plane_sign(wb, 4, x2));
            s = _mm256_add_epi16(s, plane_sign(wb, 6, x3));
            acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(s, ones));
        }
    }
    return hsum4(acc[0], acc[1], acc[2], acc[3]);
}
#endif

/* sum of (w + 1) * x over one row */
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

/* A packed layer's constant arguments, filled once by the Python side (see kernel/__init__.py). */
typedef struct {
    const uint8_t *weight; /* (out_features, row_bytes) kernel layout */
    const float *bias;     /* out_features floats or NULL */
    int64_t in_features;
    int64_t out_features;
    int64_t row_bytes;
    float gamma;
    int32_t act_bits;
    int32_t variant;       /* TL_MADDUBS, TL_SIGN or TL_LUT */
    const uint8_t *lut_weight; /* TL_LUT only: (ceil(n / 32) * 32, row_bytes) interleaved, see tl_kernel_to_lut */
} tl_layer;

/* rows [begin, end) of one token for the row-major variants; xsum is only used by TL_MADDUBS */
static void rows_rowmajor(const tl_layer *L, int64_t begin, int64_t end, const int8_t *xq, int32_t xsum,
                          float factor, float *y) {
    const int64_t row_bytes = L->row_bytes, blocks = row_bytes / BLOCK_BYTES;
    const uint8_t *w = L->weight;
    const float *bias = L->bias;
    int64_t n = begin;
#ifdef __AVX2__
    const __m128i vsum = _mm_set1_epi32(L->variant == TL_SIGN ? 0 : xsum);
    const __m128 vfactor = _mm_set1_ps(factor);
    for (; n + 4 <= end; n += 4) {
        const uint8_t *rows[4] = {w + n * row_bytes, w + (n + 1) * row_bytes, w + (n + 2) * row_bytes, w + (n + 3) * row_bytes};
        const __m128i d = L->variant == TL_SIGN ? dot4_sign(rows, xq, blocks) : dot4_maddubs(rows, xq, blocks);
        __m128 v = _mm_mul_ps(_mm_cvtepi32_ps(_mm_sub_epi32(d, vsum)), vfactor);
        if (bias) v = _mm_add_ps(v, _mm_loadu_ps(bias + n));
        _mm_storeu_ps(y + n, v);
    }
#endif
    for (; n < end; ++n) {
        float v = (float)(dot1_scalar(w + n * row_bytes, xq, blocks) - xsum) * factor;
        y[n] = bias ? v + bias[n] : v;
    }
}

/* ------------------------------------------------------------------------------------------------------
 * Variant TL_LUT. Weight layout: tiles of 32 rows; per tile and per quad of inputs (4q .. 4q+3) 32 bytes,
 * byte r = idx(row r; 4q, 4q+1) | idx(row r; 4q+2, 4q+3) << 4 with idx(a, b) = code_a | code_b << 2 (codes
 * w + 1 in {0, 1, 2}). Per token and per pair of inputs g a table of 16 int16 sums (w_a * x_a + w_b * x_b),
 * stored as 32 low bytes then 32 high bytes (each 16-byte table twice, one copy per 128-bit lane).
 * ---------------------------------------------------------------------------------------------------- */
#define LUT_PAIR_BYTES 64

void tl_kernel_to_lut(const uint8_t *w, int64_t n, int64_t row_bytes, uint8_t *out) {
    const int64_t tiles = (n + LUT_ROWS - 1) / LUT_ROWS, quads = row_bytes; /* 4 inputs per byte of a row */
    for (int64_t t = 0; t < tiles; ++t)
        for (int64_t q = 0; q < quads; ++q)
            for (int r = 0; r < LUT_ROWS; ++r) {
                const int64_t row = t * LUT_ROWS + r;
                uint8_t byte = 0x55; /* padding rows: every code 1, weight 0 */
                if (row < n) {
                    byte = 0;
                    for (int i = 0; i < 4; ++i) {
                        const int64_t j = 4 * q + i;
                        const uint8_t code = (w[row * row_bytes + (j / BLOCK_INPUTS) * BLOCK_BYTES + (j % BLOCK_BYTES)]
                                              >> (2 * ((j % BLOCK_INPUTS) / BLOCK_BYTES))) & 3;
                        byte |= (uint8_t)(code << (2 * i));
                    }
                }
                out[(t * quads + q) * LUT_ROWS + r] = byte;
            }
}

/* tables for one token: k_padded / 2 pairs */
static void build_lut(const int8_t *xq, int64_t k_padded, uint8_t *tables) {
    for (int64_t g = 0; g < k_padded / 2; ++g) {
        const int32_t xa = xq[2 * g], xb = xq[2 * g + 1];
        uint8_t *t = tables + g * LUT_PAIR_BYTES;
        for (int idx = 0; idx < 16; ++idx) {
            const int ca = idx & 3, cb = idx >> 2;
            const int16_t v = (ca < 3 && cb < 3) ? (int16_t)((ca - 1) * xa + (cb - 1) * xb) : 0;
            t[idx] = t[16 + idx] = (uint8_t)(v & 0xFF);
            t[32 + idx] = t[48 + idx] = (uint8_t)((uint16_t)v >> 8);
        }
    }
}

/* exact sums for one 32-row tile */
static void lut_tile(const uint8_t *tile, const uint8_t *tables, int64_t quads, int32_t out[LUT_ROWS]) {
#ifdef __AVX2__
    const __m256i nib = _mm256_set1_epi8(0x0F);
    __m256i r0 = _mm256_setzero_si256(), r1 = r0, r2 = r0, r3 = r0; /* int32: rows 0-7, 8-15, 16-23, 24-31 */
    for (int64_t q0 = 0; q0 < quads; q0 += 32) {
        /* int16 partial sums: |sum| <= 128 inputs * 127 per 32 quads, below 2^15 */
        __m256i a = _mm256_setzero_si256(), b = a; /* a: rows 0-7 | 16-23, b: rows 8-15 | 24-31 */
        const int64_t q1 = q0 + 32 < quads ? q0 + 32 : quads;
        for (int64_t q = q0; q < q1; ++q) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(tile + q * LUT_ROWS));
            const __m256i i0 = _mm256_and_si256(v, nib), i1 = _mm256_and_si256(_mm256_srli_epi16(v, 4), nib);
            const uint8_t *t0 = tables + (2 * q) * LUT_PAIR_BYTES, *t1 = t0 + LUT_PAIR_BYTES;
            const __m256i lo0 = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)t0), i0);
            const __m256i hi0 = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(t0 + 32)), i0);
            const __m256i lo1 = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)t1), i1);
            const __m256i hi1 = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(t1 + 32)), i1);
            a = _mm256_add_epi16(a, _mm256_add_epi16(_mm256_unpacklo_epi8(lo0, hi0), _mm256_unpacklo_epi8(lo1, hi1)));
            b = _mm256_add_epi16(b, _mm256_add_epi16(_mm256_unpackhi_epi8(lo0, hi0), _mm256_unpackhi_epi8(lo1, hi1)));
        }
        r0 = _mm256_add_epi32(r0, _mm256_cvtepi16_epi32(_mm256_castsi256_si128(a)));
        r1 = _mm256_add_epi32(r1, _mm256_cvtepi16_epi32(_mm256_castsi256_si128(b)));
        r2 = _mm256_add_epi32(r2, _mm256_cvtepi16_epi32(_mm256_extracti128_si256(a, 1)));
        r3 = _mm256_add_epi32(r3, _mm256_cvtepi16_epi32(_mm256_extracti128_si256(b, 1)));
    }
    _mm256_storeu_si256((__m256i *)out, r0);
    _mm256_storeu_si256((__m256i *)(out + 8), r1);
    _mm256_storeu_si256((__m256i *)(out + 16), r2);
    _mm256_storeu_si256((__m256i *)(out + 24), r3);
#else
    for (int r = 0; r < LUT_ROWS; ++r) out[r] = 0;
    for (int64_t q = 0; q < quads; ++q)
        for (int r = 0; r < LUT_ROWS; ++r) {
            const uint8_t byte = tile[q * LUT_ROWS + r];
            const uint8_t *t0 = tables + (2 * q) * LUT_PAIR_BYTES, *t1 = t0 + LUT_PAIR_BYTES;
            const int lo = byte & 15, hi = byte >> 4;
            out[r] += (int16_t)(t0[lo] | (t0[32 + lo] << 8)) + (int16_t)(t1[hi] | (t1[32 + hi] << 8));
        }
#endif
}

/* tiles [tile_begin, tile_end) of one token; rows past out_features are computed and dropped */
static void rows_lut(const tl_layer *L, int64_t tile_begin, int64_t tile_end, const uint8_t *tables, float factor, float *y) {
    const int64_t quads = L->row_bytes, n = L->out_features;
    int32_t sums[LUT_ROWS];
    for (int64_t t = tile_begin; t < tile_end; ++t) {
        lut_tile(L->lut_weight + t * quads * LUT_ROWS, tables, quads, sums);
        for (int r = 0; r < LUT_ROWS; ++r) {
            const int64_t row = t * LUT_ROWS + r;
            if (row >= n) break;
            const float v = (float)sums[r] * factor;
            y[row] = L->bias ? v + L->bias[row] : v;
        }
    }
}

/* Split `units` work units over `nth` threads; returns this thread's [begin, end). */
static inline void share(int64_t units, int tid, int nth, int64_t *begin, int64_t *end) {
    const int64_t per = units / nth, extra = units % nth;
    *begin = tid * per + (tid < extra ? tid : extra);
    *end = *begin + per + (tid < extra ? 1 : 0);
}

/* the rows [begin, end) of one token that thread `tid` computes (units: 32-row tiles or 4-row groups) */
static void thread_rows(const tl_layer *L, int tid, int nth, int64_t *begin, int64_t *end) {
    const int64_t unit = L->variant == TL_LUT ? LUT_ROWS : 4;
    int64_t b, e;
    share((L->out_features + unit - 1) / unit, tid, nth, &b, &e);
    *begin = b * unit;
    *end = e * unit < L->out_features ? e * unit : L->out_features;
}

/* this thread's share of one token's rows, whatever the variant */
static void layer_rows(const tl_layer *L, const int8_t *xq, int32_t xsum, const uint8_t *tables, float factor,
                       float *y, int tid, int nth) {
    int64_t b, e;
    thread_rows(L, tid, nth, &b, &e);
    if (L->variant == TL_LUT)
        rows_lut(L, b / LUT_ROWS, (e + LUT_ROWS - 1) / LUT_ROWS, tables, factor, y);
    else
        rows_rowmajor(L, b, e, xq, xsum, factor, y);
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

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static int thread_count(void) {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

/*
 * x: (m, in_features) fp32 row-major; y: (m, out_features) fp32.
 * Returns 0 on success, -1 if the scratch buffer cannot be allocated.
 */
int tl_forward(const tl_layer *L, const float *x, int64_t m, float *y, int n_threads) {
    const int64_t k = L->in_features, n = L->out_features, row_bytes = L->row_bytes;
    const int64_t k_padded = row_bytes * 4;
    const int q_max = (1 << (L->act_bits - 1)) - 1;
    const int lut = L->variant == TL_LUT;
    const size_t codes_bytes = (size_t)((m * k_padded + 63) / 64 * 64);
    const size_t table_bytes = lut ? (size_t)(k_padded / 2 * LUT_PAIR_BYTES) : 0;
    char *buf = (char *)scratch_of(codes_bytes + (size_t)m * (sizeof(int32_t) + sizeof(float) + table_bytes));
    if (!buf) return -1;
    int8_t *xq = (int8_t *)buf;
    uint8_t *tables = (uint8_t *)(buf + codes_bytes);
    int32_t *xsum = (int32_t *)(tables + m * table_bytes);
    float *factor = (float *)(xsum + m);
    const int parallel = n_threads > 1 && m * n * k >= PARALLEL_MIN_WORK;
    #pragma omp parallel num_threads(n_threads) if (parallel)
    {
        #pragma omp for schedule(static)
        for (int64_t i = 0; i < m; ++i) {
            float scale;
            xsum[i] = quantize_token(x + i * k, k, k_padded, q_max, xq + i * k_padded, &scale);
            factor[i] = L->gamma / scale; /* same fp32 operation as the torch reference: gamma / s */
            if (lut) build_lut(xq + i * k_padded, k_padded, tables + i * table_bytes);
        }
        const int tid = thread_id(), nth = thread_count();
        /* a single token (decoding) splits its rows over the threads; a batch splits its tokens */
        if (m == 1 || m < nth) {
            for (int64_t i = 0; i < m; ++i)
                layer_rows(L, xq + i * k_padded, xsum[i], tables + i * table_bytes, factor[i], y + i * n, tid, nth);
        } else {
            #pragma omp for schedule(static)
            for (int64_t i = 0; i < m; ++i)
                layer_rows(L, xq + i * k_padded, xsum[i], tables + i * table_bytes, factor[i], y + i * n, 0, 1);
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

/* ======================================================================================================
 * The whole decode step of a Llama-style model.
 * ==================================================================================================== */

typedef struct {
    tl_layer proj[7];          /* q, k, v, o, gate, up, down */
    const float *sub_norm[7];  /* BitNet SubLN weight before each projection, or NULL */
    const float *attn_norm;    /* input_layernorm weight */
    const float *mlp_norm;     /* post_attention_layernorm weight */
    /* an expert held as a rank-r correction beside each projection (experts/lowrank.py): the output gains
       ((h @ A) @ B) with h the input the packed matmul sees; A is (in, r), B is (r, out), row-major; r = 0: none.
       With lr_scale set they are int8 codes (A per column, B per row absmax) and lr_scale[c] is the product of
       column c's and row c's scales (for models whose weights do not fit in cache, where decode is
       memory-bound and fp32 factors would read as many bytes as the ternary rows); else fp32 */
    const void *lr_a[7];
    const void *lr_b[7];
    const float *lr_scale[7];
    int64_t lr_rank[7];
} tl_block;

enum { P_Q, P_K, P_V, P_O, P_GATE, P_UP, P_DOWN };

typedef struct {
    int64_t hidden, inter, n_layers, n_heads, n_kv, head_dim, vocab, capacity;
    float eps;          /* the model's RMSNorm epsilon */
    float sub_eps;      /* the sub-norms' epsilon */
    float attn_scale;   /* head_dim ** -0.5 */
    int32_t head_mode;  /* 0: fp32 head; 1: int8 rows + exact-argmax rescoring */
    const float *embed;      /* (vocab, hidden) */
    const float *final_norm; /* (hidden) */
    const float *head_w;     /* (vocab, hidden) fp32 (may be the embedding) */
    const float *head_bias;  /* (vocab) or NULL */
    const int8_t *head_q;    /* (vocab, head_row) int8, rows zero-padded */
    const float *head_scale; /* (vocab) per-row absmax / 127 */
    const float *head_l1;    /* (vocab) sum |dequantized row| */
    int64_t head_row;        /* bytes per int8 row (multiple of 32) */
    const float *cos, *sin;  /* (capacity, head_dim) */
    float *k_cache, *v_cache; /* (n_layers, capacity, n_kv * head_dim) */
    const tl_block *blocks;
    char *work;              /* tl_model_workspace_bytes(...) bytes, 64-aligned */
    int64_t rescored;        /* out: rows rescored in fp32 by the last step */
    int64_t lr_max_rank;     /* the largest lr_rank of any block (sizes the workspace) */
} tl_model;

static int64_t pad64(int64_t n) { return (n + 63) / 64 * 64; }

static int64_t max_padded_inputs(const tl_model *M) {
    int64_t k = M->head_row;
    for (int p = 0; p < 7; ++p) {
        const int64_t kp = M->blocks[0].proj[p].row_bytes * 4;
        k = kp > k ? kp : k;
    }
    return k;
}

/* Workspace layout (all offsets multiples of 64 bytes): a shared part (projection outputs, attention
   scores, head bounds) and one private part per thread. Every thread keeps its own copy of the residual
   stream and recomputes the cheap serial steps (norms, RoPE, quantization, LUTs) on it: identical inputs and
   code give identical values in every thread, and a layer needs five barriers instead of eleven (barriers
   are what a busy or oversubscribed machine makes expensive). */
typedef struct {
    /* shared */
    float *q_raw, *k_raw, *v_raw, *att, *o_out, *gate, *up, *d_out, *scores, *logit_lb, *upper;
    int32_t *cand;
    /* private to one thread */
    float *x, *h, *hn, *q, *k;
    int8_t *xq[3];
    uint8_t *tables[3];
    int32_t *xsum;
    float *xscale;
    float *lr_t[3];  /* h @ A of each quantized slot's projection (low-rank corrections) */
} work_t;

#define MAX_THREADS 256

static int64_t carve(const tl_model *M, int threads, int tid, work_t *w) {
    const int64_t kmax = max_padded_inputs(M), qd = M->n_heads * M->head_dim, kvd = M->n_kv * M->head_dim;
    const int64_t wide = M->inter > qd ? M->inter : qd;
    const int64_t widest = wide > M->hidden ? wide : M->hidden;
    int64_t off = 0;
    char *base = M->work;
#define TAKE(ptr, type, count) do { if (w) ptr = (type *)(base + off); off += pad64((int64_t)sizeof(type) * (count)); } while (0)
    TAKE(w->q_raw, float, qd);
    TAKE(w->k_raw, float, kvd);
    TAKE(w->v_raw, float, kvd);
    TAKE(w->att, float, qd);
    TAKE(w->o_out, float, M->hidden);
    TAKE(w->gate, float, M->inter);
    TAKE(w->up, float, M->inter);
    TAKE(w->d_out, float, M->hidden);
    TAKE(w->scores, float, M->n_heads * M->capacity);
    TAKE(w->logit_lb, float, MAX_THREADS);
    TAKE(w->upper, float, M->vocab);
    TAKE(w->cand, int32_t, M->vocab);
    for (int t = 0; t < threads; ++t) {
        work_t scratch_w, *pw = (w && t == tid) ? w : (w ? &scratch_w : NULL);
#define TAKEP(ptr, type, count) do { if (pw) pw->ptr = (type *)(base + off); off += pad64((int64_t)sizeof(type) * (count)); } while (0)
        TAKEP(x, float, M->hidden);
        TAKEP(h, float, widest);
        TAKEP(hn, float, widest);
        TAKEP(q, float, qd);
        TAKEP(k, float, kvd);
        for (int i = 0; i < 3; ++i) {
            TAKEP(xq[i], int8_t, kmax);
            TAKEP(tables[i], uint8_t, kmax / 2 * LUT_PAIR_BYTES);
        }
        TAKEP(xsum, int32_t, 3);
        TAKEP(xscale, float, 3);
        for (int i = 0; i < 3; ++i) TAKEP(lr_t[i], float, M->lr_max_rank > 0 ? M->lr_max_rank : 1);
#undef TAKEP
    }
#undef TAKE
    return off;
}

/* bytes of workspace for up to `threads` threads */
int64_t tl_model_workspace_bytes(const tl_model *M, int threads) { return carve(M, threads, 0, NULL); }

/* y = x * rsqrt(mean(x^2) + eps) * weight, in fp32 as transformers' LlamaRMSNorm */
static void rms_norm(const float *x, const float *weight, int64_t n, float eps, float *y) {
    float ss = 0.0f;
    for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
    const float r = 1.0f / sqrtf(ss / (float)n + eps);
    for (int64_t i = 0; i < n; ++i) y[i] = weight[i] * (x[i] * r);
}

#ifdef __AVX2__
static inline __m256 load8_i8(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}
#endif

/* t = h @ A (times scale for int8 codes) for a rank-r correction (A: (k, r) row-major, r padded by the Python
   side to a multiple of 8 with zero columns), in fp32; eight columns at a time in one register on AVX2 */
static void low_rank_in(const float *h, const void *a_any, const float *scale, int64_t k, int64_t r, float *t) {
    const int8_t *a8 = (const int8_t *)a_any;
    const float *a = (const float *)a_any;
    int64_t c0 = 0;
#ifdef __AVX2__
    for (; c0 + 8 <= r; c0 += 8) {
        __m256 acc = _mm256_setzero_ps();
        if (scale) {
            for (int64_t j = 0; j < k; ++j) acc = _mm256_fmadd_ps(_mm256_set1_ps(h[j]), load8_i8(a8 + j * r + c0), acc);
            acc = _mm256_mul_ps(acc, _mm256_loadu_ps(scale + c0));
        } else {
            for (int64_t j = 0; j < k; ++j) acc = _mm256_fmadd_ps(_mm256_set1_ps(h[j]), _mm256_loadu_ps(a + j * r + c0), acc);
        }
        _mm256_storeu_ps(t + c0, acc);
    }
#endif
    for (; c0 < r; ++c0) {
        float acc = 0.0f;
        for (int64_t j = 0; j < k; ++j) acc += h[j] * (scale ? (float)a8[j * r + c0] : a[j * r + c0]);
        t[c0] = scale ? acc * scale[c0] : acc;
    }
}

/* y[n] += sum_c t[c] B[c][n] over rows [b, e) (B: (r, out) row-major, int8 codes when `int8`, scales already in
   t); eight outputs at a time on AVX2 */
static void low_rank_out(const float *t, const void *b_any, int int8, int64_t r, int64_t out, int64_t b, int64_t e,
                         float *y) {
    const int8_t *b8 = (const int8_t *)b_any;
    const float *bf = (const float *)b_any;
    int64_t n = b;
#ifdef __AVX2__
    for (; n + 8 <= e; n += 8) {
        __m256 acc = _mm256_loadu_ps(y + n);
        if (int8)
            for (int64_t c = 0; c < r; ++c) acc = _mm256_fmadd_ps(_mm256_set1_ps(t[c]), load8_i8(b8 + c * out + n), acc);
        else
            for (int64_t c = 0; c < r; ++c) acc = _mm256_fmadd_ps(_mm256_set1_ps(t[c]), _mm256_loadu_ps(bf + c * out + n), acc);
        _mm256_storeu_ps(y + n, acc);
    }
#endif
    for (; n < e; ++n) {
        float acc = y[n];
        for (int64_t c = 0; c < r; ++c) acc += t[c] * (int8 ? (float)b8[c * out + n] : bf[c * out + n]);
        y[n] = acc;
    }
}

/* Quantize the input of up to three projections that read the same vector: once when none has a sub-norm
   (the codes and the scale are then identical, so sharing changes no number). */
static void quantize_inputs(const tl_model *M, const tl_block *B, const int *projs, int count, const float *in,
                            work_t *w) {
    const int64_t k = B->proj[projs[0]].in_features, kp = B->proj[projs[0]].row_bytes * 4;
    const int q_max = (1 << (B->proj[projs[0]].act_bits - 1)) - 1;
    for (int i = 0; i < count; ++i) {
        const float *src = in;
        const int p = projs[i];
        if (B->sub_norm[p]) {
            rms_norm(in, B->sub_norm[p], k, M->sub_eps, w->hn);
            src = w->hn;
        }
        if (B->lr_rank[p] > 0) low_rank_in(src, B->lr_a[p], B->lr_scale[p], k, B->lr_rank[p], w->lr_t[i]);
        if (!B->sub_norm[p] && i > 0 && !B->sub_norm[projs[0]]) {
            /* same input, no norm: reuse slot 0 */
            w->xsum[i] = w->xsum[0];
            w->xscale[i] = w->xscale[0];
            memcpy(w->xq[i], w->xq[0], (size_t)kp);
            if (B->proj[projs[i]].variant == TL_LUT) memcpy(w->tables[i], w->tables[0], (size_t)(kp / 2 * LUT_PAIR_BYTES));
            continue;
        }
        w->xsum[i] = quantize_token(src, k, kp, q_max, w->xq[i], &w->xscale[i]);
        if (B->proj[projs[i]].variant == TL_LUT) build_lut(w->xq[i], kp, w->tables[i]);
    }
}

static void project(const tl_block *B, int p, const work_t *w, int slot, float *y, int tid, int nth) {
    const tl_layer *L = &B->proj[p];
    layer_rows(L, w->xq[slot], w->xsum[slot], w->tables[slot], L->gamma / w->xscale[slot], y, tid, nth);
    const int64_t r = B->lr_rank[p];
    if (r > 0) { /* the expert's correction on the rows this thread just wrote: y += t @ B */
        int64_t b, e;
        thread_rows(L, tid, nth, &b, &e);
        low_rank_out(w->lr_t[slot], B->lr_b[p], B->lr_scale[p] != NULL, r, L->out_features, b, e, y);
    }
}

/* fp32 dot product; eight lanes of partial sums on AVX2 (a different summation order than torch's, a few ulps) */
static float dot_f32(const float *a, const float *b, int64_t n) {
    int64_t i = 0;
    float acc = 0.0f;
#if defined(__AVX2__) && defined(__FMA__)
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    s0 = _mm256_add_ps(s0, s1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    acc = _mm_cvtss_f32(h);
#endif
    for (; i < n; ++i) acc += a[i] * b[i];
    return acc;
}

static void rope(float *v, int64_t heads, int64_t hd, const float *cos, const float *sin) {
    const int64_t half = hd / 2;
    for (int64_t h = 0; h < heads; ++h) {
        float *x = v + h * hd;
        for (int64_t i = 0; i < half; ++i) {
            const float a = x[i], b = x[i + half];
            x[i] = a * cos[i] - b * sin[i];
            x[i + half] = b * cos[i + half] + a * sin[i + half];
        }
    }
}

static void attend(const tl_model *M, int64_t layer, int64_t pos, const work_t *w, int tid, int nth) {
    /* rows < pos come from the cache; row pos is this step's (w->k: this thread's RoPE'd copy, w->v_raw),
       so no thread waits for the cache row to be written */
    const int64_t hd = M->head_dim, kvd = M->n_kv * hd, group = M->n_heads / M->n_kv;
    const float *kc = M->k_cache + layer * M->capacity * kvd, *vc = M->v_cache + layer * M->capacity * kvd;
    int64_t hb, he;
    share(M->n_heads, tid, nth, &hb, &he);
    for (int64_t h = hb; h < he; ++h) {
        const float *q = w->q + h * hd;
        const int64_t off = (h / group) * hd;
        float *s = w->scores + h * M->capacity;
        float mx = -INFINITY;
        for (int64_t t = 0; t <= pos; ++t) {
            const float *kt = t < pos ? kc + t * kvd + off : w->k + off;
            s[t] = dot_f32(q, kt, hd) * M->attn_scale;
            mx = s[t] > mx ? s[t] : mx;
        }
        float total = 0.0f;
        for (int64_t t = 0; t <= pos; ++t) {
            s[t] = expf(s[t] - mx);
            total += s[t];
        }
        float *o = w->att + h * hd;
        for (int64_t i = 0; i < hd; ++i) o[i] = 0.0f;
        for (int64_t t = 0; t <= pos; ++t) {
            const float p = s[t] / total;
            const float *vt = t < pos ? vc + t * kvd + off : w->v_raw + off;
            for (int64_t i = 0; i < hd; ++i) o[i] += p * vt[i];
        }
    }
}

/* int8 row x int8 codes, exact: |x| * (w * sign(x)) with vpmaddubsw (w and x are never -128). One row at a
   time: measured faster here than four rows sharing the activation loads (one sequential stream, 18 GB/s). */
static int32_t dot_i8(const int8_t *w, const int8_t *x, const uint8_t *ax, int64_t n) {
#ifdef __AVX2__
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc = _mm256_setzero_si256();
    for (int64_t i = 0; i < n; i += 32) {
        const __m256i wv = _mm256_loadu_si256((const __m256i *)(w + i));
        const __m256i xv = _mm256_loadu_si256((const __m256i *)(x + i));
        const __m256i av = _mm256_loadu_si256((const __m256i *)(ax + i));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(av, _mm256_sign_epi8(wv, xv)), ones));
    }
    const __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    const __m128i s2 = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    return _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, 0xB1)));
#else
    (void)ax;
    int32_t acc = 0;
    for (int64_t i = 0; i < n; ++i) acc += (int32_t)w[i] * (int32_t)x[i];
    return acc;
#endif
}

static float dot_f32_exact(const float *w, const float *x, int64_t n) {
    double acc = 0.0; /* rescoring near-ties: the most faithful value of the fp32 logit */
    for (int64_t i = 0; i < n; ++i) acc += (double)w[i] * (double)x[i];
    return (float)acc;
}

static void add_into(float *x, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

/*
 * One token through the model at position `pos` (its K/V go to cache row `pos`; rows < pos must hold the
 * earlier tokens). Writes the vocab logits and returns the argmax token (lowest id among equal maxima).
 * n_threads must not exceed the count the workspace was sized for (tl_model_workspace_bytes).
 */
int64_t tl_decode_step(tl_model *M, int64_t token, int64_t pos, float *logits, int n_threads) {
    const int64_t hidden = M->hidden, hd = M->head_dim, kvd = M->n_kv * hd, qd = M->n_heads * hd;
    static const int qkv[3] = {P_Q, P_K, P_V}, gu[2] = {P_GATE, P_UP}, o_[1] = {P_O}, d_[1] = {P_DOWN};
    int64_t best = 0;
    /* a parallel region pays only when the step's arithmetic dwarfs its five barriers per layer (about a
       microsecond each with warm threads): not for the tiny profile model, yes for SmolLM2-135M */
    int64_t work = M->vocab * M->hidden;
    for (int64_t l = 0; l < M->n_layers; ++l)
        for (int p = 0; p < 7; ++p) work += M->blocks[l].proj[p].out_features * M->blocks[l].proj[p].in_features;
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    const int parallel = n_threads > 1 && work >= DECODE_PARALLEL_MIN_WORK;
    #pragma omp parallel num_threads(n_threads) if (parallel)
    {
        const int tid = thread_id(), nth = thread_count();
        work_t w;
        carve(M, nth, tid, &w);
        memcpy(w.x, M->embed + token * hidden, (size_t)hidden * sizeof(float));
        for (int64_t l = 0; l < M->n_layers; ++l) {
            const tl_block *B = &M->blocks[l];
            if (l > 0) add_into(w.x, w.d_out, hidden);
            rms_norm(w.x, B->attn_norm, hidden, M->eps, w.h);
            quantize_inputs(M, B, qkv, 3, w.h, &w);
            project(B, P_Q, &w, 0, w.q_raw, tid, nth);
            project(B, P_K, &w, 1, w.k_raw, tid, nth);
            project(B, P_V, &w, 2, w.v_raw, tid, nth);
            #pragma omp barrier
            memcpy(w.q, w.q_raw, (size_t)qd * sizeof(float));
            memcpy(w.k, w.k_raw, (size_t)kvd * sizeof(float));
            rope(w.q, M->n_heads, hd, M->cos + pos * hd, M->sin + pos * hd);
            rope(w.k, M->n_kv, hd, M->cos + pos * hd, M->sin + pos * hd);
            if (tid == 0) { /* nobody reads this row before the next step */
                memcpy(M->k_cache + (l * M->capacity + pos) * kvd, w.k, (size_t)kvd * sizeof(float));
                memcpy(M->v_cache + (l * M->capacity + pos) * kvd, w.v_raw, (size_t)kvd * sizeof(float));
            }
            attend(M, l, pos, &w, tid, nth);
            #pragma omp barrier
            quantize_inputs(M, B, o_, 1, w.att, &w);
            project(B, P_O, &w, 0, w.o_out, tid, nth);
            #pragma omp barrier
            add_into(w.x, w.o_out, hidden);
            rms_norm(w.x, B->mlp_norm, hidden, M->eps, w.h);
            quantize_inputs(M, B, gu, 2, w.h, &w);
            project(B, P_GATE, &w, 0, w.gate, tid, nth);
            project(B, P_UP, &w, 1, w.up, tid, nth);
            #pragma omp barrier
            for (int64_t i = 0; i < M->inter; ++i) {
                const float g = w.gate[i];
                w.h[i] = g / (1.0f + expf(-g)) * w.up[i];
            }
            quantize_inputs(M, B, d_, 1, w.h, &w);
            project(B, P_DOWN, &w, 0, w.d_out, tid, nth);
            #pragma omp barrier
        }
        add_into(w.x, w.d_out, hidden);
        rms_norm(w.x, M->final_norm, hidden, M->eps, w.h);
        int64_t vb, ve;
        share(M->vocab, tid, nth, &vb, &ve);
        if (M->head_mode == 1) {
            float s;
            quantize_token(w.h, hidden, M->head_row, 127, w.xq[0], &s);
            uint8_t *ax = (uint8_t *)w.xq[1];
            for (int64_t i = 0; i < M->head_row; ++i) ax[i] = (uint8_t)abs(w.xq[0][i]);
            float l1 = 0.0f;
            for (int64_t i = 0; i < hidden; ++i) l1 += fabsf(w.h[i]);
            /* approximate logits and rigorous bounds: |z - a| <= sw/2 * |h|_1 + |w_hat|_1 / (2 s) (+ slack
               for float rounding); the best lower bound over this thread's rows goes to logit_lb[tid] */
            const float inv_s = 1.0f / s;
            float lb = -INFINITY;
            for (int64_t r = vb; r < ve; ++r) {
                const float sw = M->head_scale[r];
                float a = (float)dot_i8(M->head_q + r * M->head_row, w.xq[0], ax, M->head_row) * sw * inv_s;
                if (M->head_bias) a += M->head_bias[r];
                const float bound = 0.5f * sw * l1 + 0.5f * M->head_l1[r] * inv_s + 1e-4f * (fabsf(a) + 1.0f);
                logits[r] = a;
                w.upper[r] = a + bound;
                const float low = a - bound;
                lb = low > lb ? low : lb;
            }
            w.logit_lb[tid] = lb;
        } else {
            for (int64_t r = vb; r < ve; ++r) {
                const float z = dot_f32(M->head_w + r * hidden, w.h, hidden);
                logits[r] = M->head_bias ? z + M->head_bias[r] : z;
            }
        }
        #pragma omp barrier
        if (tid == 0) {
            if (M->head_mode == 1) {
                float lb = -INFINITY;
                for (int t = 0; t < nth; ++t) lb = w.logit_lb[t] > lb ? w.logit_lb[t] : lb;
                int64_t count = 0;
                for (int64_t r = 0; r < M->vocab; ++r)
                    if (w.upper[r] >= lb) w.cand[count++] = (int32_t)r;
                /* only candidates can be the argmax; their logits become the exact fp32 ones */
                float top = -INFINITY;
                for (int64_t c = 0; c < count; ++c) {
                    const int64_t r = w.cand[c];
                    float z = dot_f32_exact(M->head_w + r * hidden, w.h, hidden);
                    if (M->head_bias) z += M->head_bias[r];
                    logits[r] = z;
                    if (z > top || (z == top && r < best)) { top = z; best = r; }
                }
                M->rescored = count;
            } else {
                float top = -INFINITY;
                for (int64_t r = 0; r < M->vocab; ++r)
                    if (logits[r] > top) { top = logits[r]; best = r; }
                M->rescored = 0;
            }
        }
    }
    return best;
}
