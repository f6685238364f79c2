// RMSNorm and per-token absmax int8 quantisation (fused). One block per row.

__device__ __forceinline__ float rms_factor(const float* x, int cols, float eps, float* sh) {
    float ss = 0.0f;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) ss += __fmul_rn(x[i], x[i]);
    ss = block_sum(ss, sh);
    return __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(ss, (float)cols), eps)));
}

// out = w * (x * rsqrt(mean(x^2) + eps)); rows of `cols`, strides in floats.
// Also the per-head q/k norms (rows = tokens x heads).
extern "C" __global__ void rmsnorm(const float* __restrict__ x, const float* __restrict__ w,
                                   float* __restrict__ out, int cols, int x_stride, int out_stride,
                                   float eps) {
    __shared__ float sh[32];
    const float* xr = x + (size_t)blockIdx.x * x_stride;
    float* o = out + (size_t)blockIdx.x * out_stride;
    float r = rms_factor(xr, cols, eps, sh);
    for (int i = threadIdx.x; i < cols; i += blockDim.x) o[i] = __fmul_rn(__fmul_rn(xr[i], r), w[i]);
}

// bitnet_kernels::act::quantize_row on y: s = (1 / max(amax, 1e-5)) * 127,
// q = clamp(rint(y * s)) (ties to even). q rows are q_stride bytes, zero
// padded past cols; sx[row] = s. With w != null, y = rmsnorm(x, w) first
// (recomputed per pass rather than stored: the same operations give the
// same values).
extern "C" __global__ void rmsnorm_quant(const float* __restrict__ x, const float* __restrict__ w,
                                         i8* __restrict__ q, float* __restrict__ sx, int cols,
                                         int x_stride, int q_stride, float eps) {
    __shared__ float sh[32];
    const float* xr = x + (size_t)blockIdx.x * x_stride;
    i8* qr = q + (size_t)blockIdx.x * q_stride;
    float r = w ? rms_factor(xr, cols, eps, sh) : 1.0f;
    float amax = 0.0f;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) {
        float y = w ? __fmul_rn(__fmul_rn(xr[i], r), w[i]) : xr[i];
        amax = fmaxf(amax, fabsf(y));
    }
    amax = fmaxf(block_max(amax, sh), 1e-5f);
    float s = __fmul_rn(__fdiv_rn(1.0f, amax), 127.0f);
    for (int i = threadIdx.x; i < q_stride; i += blockDim.x) {
        i8 v = 0;
        if (i < cols) {
            float y = w ? __fmul_rn(__fmul_rn(xr[i], r), w[i]) : xr[i];
            v = (i8)fminf(fmaxf(rintf(__fmul_rn(y, s)), -128.0f), 127.0f);
        }
        qr[i] = v;
    }
    if (threadIdx.x == 0) sx[blockIdx.x] = s;
}

// y += x (residual), n floats.
extern "C" __global__ void add_inplace(float* __restrict__ y, const float* __restrict__ x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __fadd_rn(y[i], x[i]);
}
