// Attention over a per-layer KV cache, K and V laid out [kv_head][ctx][head_dim]
// in f32 or f16, with grouped-query heads (head h reads kv head
// h / (n_heads / n_kv_heads)). Split-K flash-decoding: attn_partial computes,
// per (head, split, token), the softmax-weighted sum over one range of keys
// with its running max and sum; attn_combine merges the splits. Token t
// attends causally to keys 0..=pos[t] (within `window` when window > 0).

#define MAX_HD_PER_LANE 8 // head_dim up to 256
#define ATTN_WARPS 4

__device__ __forceinline__ float kv_load(const float* p) { return *p; }
__device__ __forceinline__ float kv_load(const u16* p) { return h2f(*p); }
__device__ __forceinline__ void kv_put(float* p, float v) { *p = v; }
__device__ __forceinline__ void kv_put(u16* p, float v) { *p = f2h(v); }

template <typename KV>
__device__ void kv_store(const float* k, const float* v, KV* kc, KV* vc, const int* pos,
                         int head_dim, int src_stride, int max_ctx) {
    int kvh = blockIdx.x, t = blockIdx.y;
    size_t dst = ((size_t)kvh * max_ctx + pos[t]) * head_dim;
    size_t src = (size_t)t * src_stride + (size_t)kvh * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        kv_put(kc + dst + d, k[src + d]);
        kv_put(vc + dst + d, v[src + d]);
    }
}

template <typename KV>
__device__ void attn_partial(const float* q, const KV* kc, const KV* vc, const int* pos,
                             float* po, float* pm, float* pl, int n_heads, int n_kv_heads,
                             int head_dim, int q_stride, int max_ctx, int split_len, float scale,
                             int window) {
    __shared__ float sm[ATTN_WARPS], sl[ATTN_WARPS];
    __shared__ float so[ATTN_WARPS][MAX_HD_PER_LANE * 32];
    int h = blockIdx.x, s = blockIdx.y, t = blockIdx.z, n_splits = gridDim.y;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int kvh = h / (n_heads / n_kv_heads);
    int end = pos[t] + 1;
    int lo = window > 0 ? max(0, end - window) : 0;
    int k0 = lo + s * split_len, k1 = min(end, k0 + split_len);
    float qv[MAX_HD_PER_LANE], o[MAX_HD_PER_LANE];
    const float* qh = q + (size_t)t * q_stride + (size_t)h * head_dim;
#pragma unroll
    for (int i = 0; i < MAX_HD_PER_LANE; i++) {
        int d = lane + 32 * i;
        qv[i] = d < head_dim ? qh[d] : 0.0f;
        o[i] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    const KV* kb = kc + (size_t)kvh * max_ctx * head_dim;
    const KV* vb = vc + (size_t)kvh * max_ctx * head_dim;
    for (int j = k0 + warp; j < k1; j += ATTN_WARPS) {
        float dot = 0.0f;
#pragma unroll
        for (int i = 0; i < MAX_HD_PER_LANE; i++) {
            int d = lane + 32 * i;
            if (d < head_dim) dot += qv[i] * kv_load(kb + (size_t)j * head_dim + d);
        }
        float x = warp_sum(dot) * scale;
        float mn = fmaxf(m, x);
        float c = expf(m - mn), p = expf(x - mn);
        l = l * c + p;
#pragma unroll
        for (int i = 0; i < MAX_HD_PER_LANE; i++) {
            int d = lane + 32 * i;
            if (d < head_dim) o[i] = o[i] * c + p * kv_load(vb + (size_t)j * head_dim + d);
        }
        m = mn;
    }
    if (lane == 0) { sm[warp] = m; sl[warp] = l; }
#pragma unroll
    for (int i = 0; i < MAX_HD_PER_LANE; i++) so[warp][lane + 32 * i] = o[i];
    __syncthreads();
    if (warp != 0) return;
    float M = -INFINITY;
    for (int w = 0; w < ATTN_WARPS; w++) M = fmaxf(M, sm[w]);
    float L = 0.0f;
    for (int w = 0; w < ATTN_WARPS; w++) L += sm[w] == -INFINITY ? 0.0f : sl[w] * expf(sm[w] - M);
    size_t idx = ((size_t)t * n_heads + h) * n_splits + s;
    for (int i = 0; i < MAX_HD_PER_LANE; i++) {
        int d = lane + 32 * i;
        if (d >= head_dim) break;
        float acc = 0.0f;
        for (int w = 0; w < ATTN_WARPS; w++)
            if (sm[w] != -INFINITY) acc += so[w][d] * expf(sm[w] - M);
        po[idx * head_dim + d] = acc;
    }
    if (lane == 0) { pm[idx] = M; pl[idx] = L; }
}

// out[t * out_stride + h * head_dim + d] = merged, normalised sum.
extern "C" __global__ void attn_combine(const float* __restrict__ po, const float* __restrict__ pm,
                                        const float* __restrict__ pl, float* __restrict__ out,
                                        int n_heads, int head_dim, int n_splits, int out_stride) {
    int h = blockIdx.x, t = blockIdx.y;
    size_t base = ((size_t)t * n_heads + h) * n_splits;
    float M = -INFINITY;
    for (int s = 0; s < n_splits; s++) M = fmaxf(M, pm[base + s]);
    float L = 0.0f;
    for (int s = 0; s < n_splits; s++)
        if (pm[base + s] != -INFINITY) L += pl[base + s] * expf(pm[base + s] - M);
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float acc = 0.0f;
        for (int s = 0; s < n_splits; s++)
            if (pm[base + s] != -INFINITY) acc += po[(base + s) * head_dim + d] * expf(pm[base + s] - M);
        out[(size_t)t * out_stride + (size_t)h * head_dim + d] = L > 0.0f ? acc / L : 0.0f;
    }
}

#define KV_ENTRY_POINTS(SUFFIX, KV)                                                              \
    extern "C" __global__ void kv_store_##SUFFIX(const float* k, const float* v, KV* kc, KV* vc,  \
                                                 const int* pos, int head_dim, int src_stride,   \
                                                 int max_ctx) {                                  \
        kv_store<KV>(k, v, kc, vc, pos, head_dim, src_stride, max_ctx);                         \
    }                                                                                            \
    extern "C" __global__ void attn_partial_##SUFFIX(                                            \
        const float* q, const KV* kc, const KV* vc, const int* pos, float* po, float* pm,        \
        float* pl, int n_heads, int n_kv_heads, int head_dim, int q_stride, int max_ctx,         \
        int split_len, float scale, int window) {                                                \
        attn_partial<KV>(q, kc, vc, pos, po, pm, pl, n_heads, n_kv_heads, head_dim, q_stride,    \
                         max_ctx, split_len, scale, window);                                     \
    }

KV_ENTRY_POINTS(f32, float)
KV_ENTRY_POINTS(f16, u16) // f16 bits
