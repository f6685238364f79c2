// Shared by every module (prepended by the crate, not #included).
typedef signed char i8;
typedef unsigned int u32;
typedef unsigned short u16;
#define INFINITY __int_as_float(0x7f800000)

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ int warp_sum_i(int v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
// Block-wide reductions; blockDim.x a multiple of 32, at most 1024;
// `sh` holds 32 floats. Every thread gets the result. Lanes past the last
// warp contribute the operation's identity (0 for a sum, -inf for a max).
template <bool MAX>
__device__ float block_reduce(float v, float* sh) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = MAX ? warp_max(v) : warp_sum(v);
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : (MAX ? -INFINITY : 0.0f);
    return MAX ? warp_max(v) : warp_sum(v);
}
__device__ __forceinline__ float block_sum(float v, float* sh) { return block_reduce<false>(v, sh); }
__device__ __forceinline__ float block_max(float v, float* sh) { return block_reduce<true>(v, sh); }

// GPU ternary layout: 16 weights per u32, 2-bit codes t + 1. Column
// 16 * w + 4 * g + i of a row sits in word w at bits 8 * i + 2 * g, so
// group g (four consecutive columns) is one shift and one mask away from
// four bytes of codes, and a per-byte subtract gives the signed weights
// that __dp4a and mma.sync take.
__device__ __forceinline__ int decode4(u32 w, int g) {
    return (int)__vsub4((w >> (2 * g)) & 0x03030303u, 0x01010101u);
}

// bitnet_kernels::ternary::ScaleRule::apply, the same f32 operations:
// rule 0 (Multiply): acc / s_x * w_s; rule 1 (Divide): acc / (w_s * s_x).
__device__ __forceinline__ float apply_rule(int acc, float sx, float ws, int rule) {
    float a = (float)acc;
    return rule == 0 ? __fmul_rn(__fdiv_rn(a, sx), ws) : __fdiv_rn(a, __fmul_rn(ws, sx));
}

// IEEE half precision as raw bits (NVRTC has no cuda_fp16.h without the
// toolkit's include folder): conversions by the PTX cvt instructions.
__device__ __forceinline__ float h2f(u16 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ u16 f2h(float f) {
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
