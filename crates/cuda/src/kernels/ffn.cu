// Gated FFN activations: out[t][i] = act(gate) * up, gate at gu[t * stride + i],
// up at gu[t * stride + up_off + i]. kind 0 = SiLU, 1 = squared ReLU.
extern "C" __global__ void gated_act(const float* __restrict__ gu, float* __restrict__ out,
                                     int n_ff, int stride, int up_off, int out_stride, int kind) {
    int t = blockIdx.y;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n_ff; i += gridDim.x * blockDim.x) {
        float g = gu[(size_t)t * stride + i], u = gu[(size_t)t * stride + up_off + i];
        float a;
        if (kind == 0) {
            a = __fdiv_rn(g, __fadd_rn(1.0f, expf(-g)));
        } else {
            float r = fmaxf(g, 0.0f);
            a = __fmul_rn(r, r);
        }
        out[(size_t)t * out_stride + i] = __fmul_rn(a, u);
    }
}
