// Rotary embeddings in place on rows of heads. x: n_tokens rows of
// row_stride floats; heads at offset h * head_dim; the first rope_dim values
// of each head rotate. pos[t]: the token's position. style 0 = NeoX (i with
// i + rope_dim / 2), 1 = interleaved (2i with 2i + 1). cos/sin are evaluated
// in double from the f32 angle, as the CPU reference does.
extern "C" __global__ void rope(float* __restrict__ x, const int* __restrict__ pos,
                                const float* __restrict__ inv_freq, int n_heads, int head_dim,
                                int rope_dim, int row_stride, int style) {
    int h = blockIdx.x, t = blockIdx.y;
    float* hd = x + (size_t)t * row_stride + (size_t)h * head_dim;
    int half = rope_dim / 2;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float angle = __fmul_rn((float)pos[t], inv_freq[i]);
        float c = (float)cos((double)angle), s = (float)sin((double)angle);
        int ia = style == 0 ? i : 2 * i, ib = style == 0 ? i + half : 2 * i + 1;
        float a = hd[ia], b = hd[ib];
        hd[ia] = __fadd_rn(__fmul_rn(a, c), __fmul_rn(-b, s));
        hd[ib] = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
    }
}
