// The output head (logits = W x) in the file's own formats, and greedy
// argmax. One warp per vocabulary row, up to 8 tokens per pass (grid.y).
// X: n_tokens rows of `cols` f32 (x_stride apart); Y[t * y_stride + r].

#define HEAD_TOKENS 8

__device__ __forceinline__ float f16_at(const unsigned char* p) {
    return h2f(*(const u16*)p);
}

__device__ __forceinline__ void head_store(float* acc, float* Y, int row, int t0, int nt, int y_stride) {
    int lane = threadIdx.x & 31;
#pragma unroll
    for (int t = 0; t < HEAD_TOKENS; t++) {
        float s = warp_sum(acc[t]);
        if (lane == 0 && t < nt) Y[(size_t)(t0 + t) * y_stride + row] = s;
    }
}

// acc[t] += wv * x[t][k] for the pass's tokens.
__device__ __forceinline__ void head_fma(float* acc, float wv, const float* X, int t0, int nt,
                                         int x_stride, int k) {
#pragma unroll
    for (int t = 0; t < HEAD_TOKENS; t++)
        if (t < nt) acc[t] += wv * X[(size_t)(t0 + t) * x_stride + k];
}

// F16 rows of `cols` halves (raw bits).
extern "C" __global__ void head_f16(const u16* __restrict__ W, const float* __restrict__ X,
                                   float* __restrict__ Y, int rows, int cols, int n_tokens,
                                   int x_stride, int y_stride) {
    int row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
    if (row >= rows) return;
    int t0 = blockIdx.y * HEAD_TOKENS, nt = min(HEAD_TOKENS, n_tokens - t0);
    float acc[HEAD_TOKENS] = {0};
    const u16* w = W + (size_t)row * cols;
    for (int k = lane; k < cols; k += 32) {
        head_fma(acc, h2f(w[k]), X, t0, nt, x_stride, k);
    }
    head_store(acc, Y, row, t0, nt, y_stride);
}

// Q8_0: blocks of 32 values in 34 bytes (f16 d, then 32 int8). cols % 32 == 0.
extern "C" __global__ void head_q8_0(const unsigned char* __restrict__ W, const float* __restrict__ X,
                                     float* __restrict__ Y, int rows, int cols, int n_tokens,
                                     int x_stride, int y_stride) {
    int row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
    if (row >= rows) return;
    int t0 = blockIdx.y * HEAD_TOKENS, nt = min(HEAD_TOKENS, n_tokens - t0);
    float acc[HEAD_TOKENS] = {0};
    int nb = cols / 32;
    const unsigned char* w = W + (size_t)row * nb * 34;
    for (int b = 0; b < nb; b++) {
        const unsigned char* blk = w + (size_t)b * 34;
        float wv = f16_at(blk) * (float)(i8)blk[2 + lane];
        head_fma(acc, wv, X, t0, nt, x_stride, b * 32 + lane);
    }
    head_store(acc, Y, row, t0, nt, y_stride);
}

// Q6_K: super-blocks of 256 values in 210 bytes (ql[128], qh[64],
// scales[16] int8, f16 d); see bitnet_kernels::dense::q6_k. cols % 256 == 0.
// Lane l takes values l, l + 32, l + 64, l + 96 of each half.
extern "C" __global__ void head_q6_k(const unsigned char* __restrict__ W, const float* __restrict__ X,
                                     float* __restrict__ Y, int rows, int cols, int n_tokens,
                                     int x_stride, int y_stride) {
    int row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, l = threadIdx.x & 31;
    if (row >= rows) return;
    int t0 = blockIdx.y * HEAD_TOKENS, nt = min(HEAD_TOKENS, n_tokens - t0);
    float acc[HEAD_TOKENS] = {0};
    int nb = cols / 256;
    const unsigned char* w = W + (size_t)row * nb * 210;
    for (int b = 0; b < nb; b++) {
        const unsigned char* blk = w + (size_t)b * 210;
        float d = f16_at(blk + 208);
        const i8* sc = (const i8*)(blk + 192);
        for (int half = 0; half < 2; half++) {
            const unsigned char* ql = blk + 64 * half;
            unsigned char qh = blk[128 + 32 * half + l];
            int q[4] = {(ql[l] & 0xF) | ((qh & 3) << 4), (ql[l + 32] & 0xF) | (((qh >> 2) & 3) << 4),
                        (ql[l] >> 4) | (((qh >> 4) & 3) << 4), (ql[l + 32] >> 4) | (((qh >> 6) & 3) << 4)};
#pragma unroll
            for (int j = 0; j < 4; j++) {
                int v = 128 * half + 32 * j + l;
                float wv = d * (float)sc[v / 16] * (float)(q[j] - 32);
                head_fma(acc, wv, X, t0, nt, x_stride, b * 256 + v);
            }
        }
    }
    head_store(acc, Y, row, t0, nt, y_stride);
}

// (v, i) beats (best, bi): larger, or equal with a smaller index.
__device__ __forceinline__ bool beats(float v, int i, float best, int bi) {
    return v > best || (v == best && i < bi);
}

// Greedy: out[row] = index of the first maximum of x[row * n .. + n].
extern "C" __global__ void argmax(const float* __restrict__ x, int n, int* __restrict__ out) {
    __shared__ float sv[32];
    __shared__ int si[32];
    const float* r = x + (size_t)blockIdx.x * n;
    float best = -INFINITY;
    int bi = 0x7fffffff;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = r[i];
        if (beats(v, i, best, bi)) { best = v; bi = i; }
    }
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, best, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (beats(ov, oi, best, bi)) { best = ov; bi = oi; }
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) { sv[warp] = best; si[warp] = bi; }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < (int)(blockDim.x >> 5); w++)
            if (beats(sv[w], si[w], best, bi)) { best = sv[w]; bi = si[w]; }
        out[blockIdx.x] = bi == 0x7fffffff ? 0 : bi;
    }
}
