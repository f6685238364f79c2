// Ternary x int8 products. W: rows x words u32 (words = padded cols / 16,
// padded cols a multiple of 32, padding code 1 = weight 0). X: n_tokens rows
// of words * 16 int8 (zero padded), read as int. Y[t * y_stride + r].

#define GEMV_TOKENS 8

// Decode: one warp per output row, up to 8 tokens per pass (grid.y covers
// the rest). Weights are decoded in registers and multiplied by __dp4a.
extern "C" __global__ void ternary_gemv(const u32* __restrict__ W, const int* __restrict__ X,
                                        const float* __restrict__ sx, const float* __restrict__ ws,
                                        float* __restrict__ Y, int rows, int words, int n_tokens,
                                        int y_stride, int rule) {
    int row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (row >= rows) return;
    int t0 = blockIdx.y * GEMV_TOKENS;
    int nt = min(GEMV_TOKENS, n_tokens - t0);
    int acc[GEMV_TOKENS];
#pragma unroll
    for (int t = 0; t < GEMV_TOKENS; t++) acc[t] = 0;
    const u32* w = W + (size_t)row * words;
    size_t xs = (size_t)words * 4;
    for (int k = lane; k < words; k += 32) {
        u32 v = __ldg(w + k);
        int d0 = decode4(v, 0), d1 = decode4(v, 1), d2 = decode4(v, 2), d3 = decode4(v, 3);
#pragma unroll
        for (int t = 0; t < GEMV_TOKENS; t++) {
            if (t < nt) {
                int4 a = __ldg((const int4*)(X + (t0 + t) * xs) + k);
                acc[t] = __dp4a(d0, a.x, acc[t]);
                acc[t] = __dp4a(d1, a.y, acc[t]);
                acc[t] = __dp4a(d2, a.z, acc[t]);
                acc[t] = __dp4a(d3, a.w, acc[t]);
            }
        }
    }
#pragma unroll
    for (int t = 0; t < GEMV_TOKENS; t++) {
        int s = warp_sum_i(acc[t]);
        if (lane == 0 && t < nt)
            Y[(size_t)(t0 + t) * y_stride + row] = apply_rule(s, sx[t0 + t], ws[row], rule);
    }
}

// Prefill and batched decode: tensor cores, mma.sync m16n8k32 s8 x s8 -> s32.
// Block = 4 warps = 64 rows x 32 tokens; each warp owns 16 rows and four
// 8-token tiles. A fragments are decoded straight from the packed words
// (thread (g, tig) needs group tig of the two words of rows g and g + 8);
// B fragments are int loads of the activations.
#define MMA_ROWS 64
#define MMA_TOKENS 32

__device__ __forceinline__ void mma_s8(int* c, int a0, int a1, int a2, int a3, int b0, int b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

extern "C" __global__ void ternary_gemm(const u32* __restrict__ W, const int* __restrict__ X,
                                        const float* __restrict__ sx, const float* __restrict__ ws,
                                        float* __restrict__ Y, int rows, int words, int n_tokens,
                                        int y_stride, int rule) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int g = lane >> 2, tig = lane & 3;
    int row0 = blockIdx.x * MMA_ROWS + warp * 16;
    int tok0 = blockIdx.y * MMA_TOKENS;
    int ra = row0 + g, rb = row0 + g + 8;
    bool va = ra < rows, vb = rb < rows;
    const u32* wa = W + (size_t)(va ? ra : 0) * words;
    const u32* wb = W + (size_t)(vb ? rb : 0) * words;
    size_t xs = (size_t)words * 4;
    int c[4][4];
#pragma unroll
    for (int n = 0; n < 4; n++) c[n][0] = c[n][1] = c[n][2] = c[n][3] = 0;
    for (int kc = 0; kc < words; kc += 2) {
        int a0 = va ? decode4(__ldg(wa + kc), tig) : 0;
        int a1 = vb ? decode4(__ldg(wb + kc), tig) : 0;
        int a2 = va ? decode4(__ldg(wa + kc + 1), tig) : 0;
        int a3 = vb ? decode4(__ldg(wb + kc + 1), tig) : 0;
#pragma unroll
        for (int n = 0; n < 4; n++) {
            int tok = tok0 + n * 8 + g;
            int b0 = 0, b1 = 0;
            if (tok < n_tokens) {
                const int* x = X + tok * xs + kc * 4;
                b0 = __ldg(x + tig);
                b1 = __ldg(x + 4 + tig);
            }
            mma_s8(c[n], a0, a1, a2, a3, b0, b1);
        }
    }
#pragma unroll
    for (int n = 0; n < 4; n++) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int r = i < 2 ? ra : rb;
            int tok = tok0 + n * 8 + tig * 2 + (i & 1);
            if (r < rows && tok < n_tokens)
                Y[(size_t)tok * y_stride + r] = apply_rule(c[n][i], sx[tok], ws[r], rule);
        }
    }
}
