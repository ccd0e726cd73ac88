/* Native kernels of the GEMM runtime (ecgcnn.export.gemm), built on first use by
 * ecgcnn.export.native with the system C compiler and loaded with ctypes.
 *
 * Why by hand: between the runtime's two matrix products sit memory-bound elementwise passes
 * (block copy of the input; bias, max pooling and tanh of the first layer's output). As
 * separate ATen ops each pass reads and writes the whole intermediate (17 MB per 1024 beats);
 * fused here they read it once. No well-kept library ships this fusion for CPU: torch.compile
 * generates it, but its compile step costs seconds per shape and was slower here.
 *
 * Threads: OpenMP. Loaded after torch, the libgomp.so.1 this library needs resolves to the one
 * torch already loaded, so torch.set_num_threads governs these loops too.
 * Layouts are C-contiguous float32 throughout; shapes are in the comments.
 */
#include <stddef.h>

/* One build serves AVX-512, AVX2 and plain x86-64 machines: gcc compiles each row kernel for
 * every target and picks one at load time (ifunc), so a cached library never runs an
 * instruction its CPU lacks. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CLONES
#endif

int ecgcnn_kernels_version(void) { return 1; }

/* tanh as Eigen's rational approximation (generic_fast_tanh_float): a polynomial that gcc
 * vectorizes, unlike libm's tanhf, which was 20x slower here. Max abs error 3e-7 against
 * float64 tanh on [-10, 10] (measured); the clamp makes it exactly +-1 far out. */
static inline float tanh_approx(float x) {
    const float c = 7.90531110763549805f;
    float xc = x > c ? c : (x < -c ? -c : x);
    float x2 = xc * xc;
    float p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
    p = p * x2 + -8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = p * x2 + 4.89352455891786e-03f;
    p = p * xc;
    float q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    return p / q;
}

/* One beat: y (T, C) -> out (P, C), out[p, c] = act(max_{j < s} y[p * s + j, c] + bias[c]).
 * act: 0 none, 1 tanh, 2 relu. Rows past P * s (the pooling tail) are never read. */
CLONES static void pool_row(const float *restrict y, const float *restrict bias,
                            float *restrict out, long C, long s, long P, int act) {
    for (long p = 0; p < P; p++) {
        const float *r = y + p * s * C;
        float *o = out + p * C;
        for (long c = 0; c < C; c++) o[c] = r[c];
        for (long j = 1; j < s; j++) {
            const float *rj = r + j * C;
            for (long c = 0; c < C; c++) o[c] = o[c] > rj[c] ? o[c] : rj[c];
        }
        if (act == 1) {
            for (long c = 0; c < C; c++) o[c] = tanh_approx(o[c] + bias[c]);
        } else if (act == 2) {
            for (long c = 0; c < C; c++) {
                float v = o[c] + bias[c];
                o[c] = v > 0.f ? v : 0.f;
            }
        } else {
            for (long c = 0; c < C; c++) o[c] += bias[c];
        }
    }
}

/* y (B, T, C) -> out (B, P, C): bias, non-overlapping max pooling of s rows, activation. */
void ecgcnn_pool_bias_act(const float *y, const float *bias, float *out, long B, long T, long C,
                          long s, long P, int act) {
#pragma omp parallel for schedule(static)
    for (long b = 0; b < B; b++) pool_row(y + b * T * C, bias, out + b * P * C, C, s, P, act);
}

/* One beat: x (C, T) -> u (nb, C, span), u[k, c, i] = x[c, k * step + i - pad] (0 outside). */
CLONES static void block_row(const float *restrict x, float *restrict u, long C, long T, long nb,
                             long span, long step, long pad) {
    for (long k = 0; k < nb; k++) {
        long start = k * step - pad;
        for (long c = 0; c < C; c++) {
            const float *xc = x + c * T;
            float *uc = u + (k * C + c) * span;
            if (start >= 0 && start + span <= T) {
                for (long i = 0; i < span; i++) uc[i] = xc[start + i];
            } else {
                for (long i = 0; i < span; i++) {
                    long t = start + i;
                    uc[i] = (t >= 0 && t < T) ? xc[t] : 0.f;
                }
            }
        }
    }
}

/* x (B, C, T) -> u (B, nb, C, span): the overlapping input blocks of the block-Toeplitz GEMM. */
void ecgcnn_blocks(const float *x, float *u, long B, long C, long T, long nb, long span, long step,
                   long pad) {
#pragma omp parallel for schedule(static)
    for (long b = 0; b < B; b++)
        block_row(x + b * C * T, u + b * nb * C * span, C, T, nb, span, step, pad);
}
