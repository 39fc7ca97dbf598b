"""CUDA C source of the GPU engine's kernels, compiled at run time by NVRTC through ``cupy.RawModule``.

Every kernel mirrors, operation for operation, the numba code of the CPU engine, so that both give the same
numbers: ``preprocess_value`` is engine/corrections.py's ``_preprocess_kernel``; ``sigma_clip`` is
engine/integrate.py's ``_sigma_clip_kernel`` (float64 sums; only the order of the additions differs, being a
tree over the block); ``background_tables`` is integrate.py's ``profile_from_sums`` and pick.py's
``filled_background`` (numpy.interp); ``pixel_pass``/``grow_picks``/``emit_picks`` are pick.py's
``_classify``/``_is_kept``/``_fill_rows``; ``pixel_pass``/``tile_peaks``/``measure_peaks``
are peaks.py's ``_excess``/``_flag_zingers``/``_mark_peaks``/``_measure_peaks``/``_centroid``.  The module is
compiled with ``--fmad=false`` so that ``a * b + c`` is rounded twice, as on the CPU.

Layouts: frames ``(nframes, ny, nx)`` in the raw dtype; per-pixel static arrays flat ``(ny * nx,)``; CSR
static arrays in CSR order (statically masked entries and zero coefficients removed beforehand); per-bin
tables ``(nframes, nbins)``; bit masks of picked pixels and peaks ``(nframes, ny, nwords)`` uint32 with
``nwords = ceil(nx / 32)``, bit ``j`` of word ``w`` being column ``32 w + j``.

Scalar correction parameters travel in a float64 array ``par`` (see ``PAR_*`` below and engine.py); each pixel's
place between the bin centres in the static ``slot``/``wpos`` arrays of engine/csr.py's ``bin_slots``.
"""
from ..csr import SLOT_BIN, SLOT_CLAMPED, SLOT_PICK_OUT

# Indices into the float64 parameter array ``par`` shared by the kernels.
(PAR_GAIN, PAR_DUMMY, PAR_DELTA_DUMMY, PAR_CHECK_DUMMY, PAR_SATURATION, PAR_NMARKERS, PAR_MARKER0,
 PAR_MARKER1) = range(8)
NPAR = 8

# Rows of the per-(frame, bin) sums, as engine/integrate.py: count, V, W, Omega, OmegaOmega, P, VV.
NSUMS = 7

# Peak measurement rows of the float64 output, as engine/peaks.py: row, col, intensity, sigma, max, bg, res.
NPEAKF = 7

SOURCE = f"""
#define SLOT_BIN {SLOT_BIN}
#define SLOT_CLAMPED {SLOT_CLAMPED}
#define SLOT_PICK_OUT {SLOT_PICK_OUT}
""" + r"""
#define NAN_F __int_as_float(0x7fc00000)
#define NAN_D __longlong_as_double(0x7ff8000000000000LL)
#define TILE_W 32

struct Par {
    double gain, dummy, delta_dummy, saturation, m0, m1;
    bool check_dummy;
    int nmarkers;
};

__device__ __forceinline__ Par load_par(const double* __restrict__ par) {
    Par P;
    P.gain = par[0]; P.dummy = par[1]; P.delta_dummy = par[2]; P.check_dummy = par[3] != 0.0;
    P.saturation = par[4]; P.nmarkers = (int)par[5]; P.m0 = par[6]; P.m1 = par[7];
    return P;
}

// A pixel's place between bin centres: tables are read as t[i0] (1 - w) + t[i1] w, the formula of peaks.py's
// _excess and pick.py's _classify; at the ends i1 == i0 and w == 0, which gives peaks.py _interp's direct read
// t[i0] for every finite or NaN table value.  The position is fpos = (r - r0) * inv_step from the float32 radius,
// as both CPU paths form it, precomputed once per run.
struct Pos {
    int i0, i1;
    double w;
};

__device__ __forceinline__ Pos decode_place(int s, double w) {
    Pos X;
    X.i0 = s & SLOT_BIN;
    X.i1 = (s & SLOT_CLAMPED) ? X.i0 : X.i0 + 1;
    X.w = w;
    return X;
}

// Reads the place of flat pixel p; false outside the peak finder's radial range [r_lo, r_hi] (or masked).
__device__ __forceinline__ bool bin_place(const int* __restrict__ slot, const double* __restrict__ wpos, long long p,
                                          Pos& X) {
    const int s = slot[p];
    if (s < 0) return false;
    X = decode_place(s, wpos[p]);
    return true;
}

__device__ __forceinline__ double interp(const double* __restrict__ t, const Pos& X) {
    return t[X.i0] * (1.0 - X.w) + t[X.i1] * X.w;
}

// signal (photons) and Poisson variance (photons^2) of one raw value, NaN when invalid in this frame.
template <typename T>
__device__ __forceinline__ void preprocess_value(const Par& P, T raw, bool masked, bool has_dark, float dark,
                                                 bool has_dvar, float dvar, double g, float& s, float& var) {
    double value = (double)raw;
    bool valid = !masked && isfinite(value) && value < P.saturation;
    if (P.nmarkers > 0 && value == P.m0) valid = false;
    if (P.nmarkers > 1 && value == P.m1) valid = false;
    if (P.check_dummy) {
        if (P.delta_dummy > 0.0) {
            if (fabs(value - P.dummy) <= P.delta_dummy) valid = false;
        } else if (value == P.dummy) {
            valid = false;
        }
    }
    if (!valid) { s = NAN_F; var = NAN_F; return; }
    if (has_dark) value -= (double)dark;
    const double sd = g == 1.0 ? value : value / g;  // x / 1 == x: skip the float64 division
    double v = (1.0 > sd) ? 1.0 : sd;
    if (has_dvar) v += (double)dvar / (g * g);
    s = (float)sd;
    var = (float)v;
}

// preprocess_value for frames without dark, dark variance, gain map or dummy, at gain 1: the same numbers with
// less arithmetic, since then s = (float)(double)raw = (float)raw and var = (float)max(1, raw) = max(1, s).
template <typename T>
__device__ __forceinline__ void preprocess_plain(const Par& P, T raw, bool masked, float& s, float& var) {
    const double value = (double)raw;
    bool valid = !masked && isfinite(value) && value < P.saturation;
    if (P.nmarkers > 0 && value == P.m0) valid = false;
    if (P.nmarkers > 1 && value == P.m1) valid = false;
    s = valid ? (float)raw : NAN_F;
    var = valid ? fmaxf(1.0f, s) : NAN_F;
}

// Signal and variance of flat pixel p of a frame, with the static arrays in flat order.
template <typename T>
__device__ __forceinline__ void pixel_signal(const Par& P, const T* __restrict__ frame, long long p,
                                             const unsigned char* __restrict__ mask, const float* __restrict__ dark,
                                             const float* __restrict__ dvar, const float* __restrict__ gmap,
                                             float& s, float& var) {
    preprocess_value<T>(P, frame[p], mask[p] != 0, dark != nullptr, dark ? dark[p] : 0.0f,
                        dvar != nullptr, dvar ? dvar[p] : 0.0f, gmap ? (double)gmap[p] : P.gain, s, var);
}

// Sum x[0..N) over the block; every thread gets the totals.  red: N * 33 doubles of shared memory.  Each warp
// sums its lanes, warp 0 sums the warps' sums and the totals go back through shared memory (the additions of
// every total are the same whichever thread reads it).
template <int N>
__device__ __forceinline__ void block_sum(double (&x)[N], double* red) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nwarps = blockDim.x >> 5;
#pragma unroll
    for (int i = 0; i < N; ++i)
        for (int o = 16; o > 0; o >>= 1) x[i] += __shfl_xor_sync(0xffffffffu, x[i], o);
    __syncthreads();  // the totals of an earlier call have been read
    if (lane == 0) {
#pragma unroll
        for (int i = 0; i < N; ++i) red[i * 32 + warp] = x[i];
    }
    __syncthreads();
    if (warp == 0) {
#pragma unroll
        for (int i = 0; i < N; ++i) {
            double y = lane < nwarps ? red[i * 32 + lane] : 0.0;
            for (int o = 16; o > 0; o >>= 1) y += __shfl_xor_sync(0xffffffffu, y, o);
            if (lane == 0) red[32 * N + i] = y;
        }
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < N; ++i) x[i] = red[32 * N + i];
}

// ---------------------------------------------------------------------------------------------------------
// Sigma-clipping: one block per (frame, bin of bin_list), frames fastest so that the blocks of one bin share
// the static CSR arrays in L2.  The gather preprocesses each pixel and adds it to the sums of the first pass;
// the first `cap` pixels of the bin keep a float32 copy of their value = signal / norm (NaN when invalid or
// clipped) in shared memory, 4 bytes a pixel, the launch being sized for its class of bins; pixels beyond `cap`
// (bins larger than shared memory) are gathered again at each pass and tested against the history of (mean,
// limit).  A clipping cycle is then one pass that tests the pixels still in against the new limit -- on the
// float32 copy, or on the float64 value gathered again when the copy lies within its rounding error of the
// limit, so that every decision is the float64 one -- and sums what the pixels that fail contribute (gathered
// again: frame and CSR arrays are in L2); these sums are subtracted from the bin's sums (the CPU sums the
// survivors again: the same up to float64 rounding, relative 1e-16 of the removed part).  With the scatter
// (azimuthal and hybrid models, plain integration) a second pass sums VV of the survivors around the new mean,
// from their values gathered again.
// ---------------------------------------------------------------------------------------------------------
template <typename T, bool DVAR, bool PLAIN>
__device__ __forceinline__ void load_signal(const Par& P, const T* __restrict__ frame, long long j,
                                            const int* __restrict__ indices, const float* __restrict__ cdark,
                                            const float* __restrict__ cdvar, const float* __restrict__ cgain,
                                            float& s, float& var) {
    const int p = indices[j];
    if (PLAIN)
        preprocess_plain<T>(P, frame[p], false, s, var);
    else
        preprocess_value<T>(P, frame[p], false, cdark != nullptr, cdark ? cdark[j] : 0.0f, DVAR,
                            DVAR ? cdvar[j] : 0.0f, cgain ? (double)cgain[j] : P.gain, s, var);
    if (isnan(var)) s = NAN_F;
}

// Adds one pixel (value = s / norm, float64) to the sums x: count, V, W, Omega, OmegaOmega, P (NSUMS order
// without VV), and x[6] += 1 (pixels).
template <bool COEF>
__device__ __forceinline__ void add_pixel(double (&x)[7], double value, float nr, float c, float var) {
    const double nrm = (double)nr;
    const double cc = COEF ? (double)c : 1.0;
    const double w = cc * nrm;
    x[0] += cc;
    x[3] += w;
    x[4] += w * w;
    x[1] += value * w;  // c * signal, as the CPU forms it
    x[2] += cc * cc * (double)var;
    x[5] += w * w * value;
    x[6] += 1.0;
}

template <typename T, bool COEF, bool DVAR, bool PLAIN>
__global__ void __launch_bounds__(CLIP_BLOCK, CLIP_MIN_BLOCKS)
sigma_clip(const T* __restrict__ frames, int nframes, long long npix, int nbins, const int* __restrict__ bin_list,
           const long long* __restrict__ indptr, const int* __restrict__ indices, const float* __restrict__ coef,
           const float* __restrict__ cnorm, const float* __restrict__ cdark, const float* __restrict__ cdvar,
           const float* __restrict__ cgain, const double* __restrict__ par,
           int cycles, double cutoff, int with_scatter, int cap, double* __restrict__ out) {
    __shared__ double red[7 * 33];
    __shared__ double hist[2 * MAX_HIST];
    __shared__ double cycle_limits[2];  // mean and limit of the cycle, decided by thread 0
    __shared__ int cycle_go;
    extern __shared__ float sval[];  // float32 copies of the values of the first cap pixels (NaN: out)
    const int f = blockIdx.x % nframes;
    const int b = bin_list[blockIdx.x / nframes];
    const long long start = indptr[b], stop = indptr[b + 1];
    const long long held = min(stop - start, (long long)cap);
    const T* frame = frames + (long long)f * npix;
    const Par P = load_par(par);
    int nh = 0;
    // value (float64), norm, coefficient and variance of pixel j of the bin, from the frame and the CSR arrays
    auto gather = [&](long long j, double& value, float& nr, float& c, float& var) {
        float s;
        load_signal<T, DVAR, PLAIN>(P, frame, j, indices, cdark, cdvar, cgain, s, var);
        nr = cnorm[j];
        c = COEF ? coef[j] : 1.0f;
        value = isnan(s) ? NAN_D : (double)s / (double)nr;
        if (!DVAR) var = 1.0f > s ? 1.0f : s;
    };
    auto in_history = [&](double value) -> bool {  // passes every earlier cycle's test
        for (int h = 0; h < nh; ++h)
            if (fabs(value - hist[2 * h]) > hist[2 * h + 1]) return false;
        return true;
    };
    double acc[7] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};  // the first pass: every valid pixel
    for (long long t = threadIdx.x; t < stop - start; t += CLIP_BLOCK) {
        double value;
        float nr, c, var;
        gather(start + t, value, nr, c, var);
        if (t < held) sval[t] = (float)value;
        if (!isnan(value)) add_pixel<COEF>(acc, value, nr, c, var);
    }
    block_sum<7>(acc, red);
    double alive = acc[6];  // pixels still in
    const bool scatter = with_scatter != 0;  // azimuthal and hybrid clip with the scatter VV
    // VV of the pixels still in around their mean (acc must hold their sums)
    auto spread = [&]() -> double {
        double y[1] = {0.0};
        if (acc[3] > 0.0) {
            const double m = acc[1] / acc[3];
            auto add = [&](double value, float nr, float c) {
                const double w = (COEF ? (double)c : 1.0) * (double)nr;
                const double d = value - m;
                y[0] += w * w * d * d;
            };
            for (long long t = threadIdx.x; t < held; t += CLIP_BLOCK) {
                if (isnan(sval[t])) continue;
                double value;
                float nr, c, var;
                gather(start + t, value, nr, c, var);
                add(value, nr, c);
            }
            for (long long j = start + held + threadIdx.x; j < stop; j += CLIP_BLOCK) {
                double value;
                float nr, c, var;
                gather(j, value, nr, c, var);
                if (!isnan(value) && in_history(value)) add(value, nr, c);
            }
        }
        block_sum<1>(y, red);
        return y[0];
    };
    acc[6] = scatter ? spread() : NAN_D;
    for (int cyc = 0;; ++cyc) {
        if (threadIdx.x == 0) {  // the cycle's mean and limit, the same for every thread: computed once
            int go = cyc < cycles && acc[3] != 0.0 && acc[0] != 0.0 && nh < MAX_HIST;
            if (go) {
                const double std = sqrt((scatter ? acc[6] : acc[2]) / acc[4]);
                const double npx = acc[0] > 3.0 ? acc[0] : 3.0;
                const double chauvenet = sqrt(2.0 * log(npx / sqrt(2.0 * 3.141592653589793)));
                cycle_limits[0] = acc[1] / acc[3];
                cycle_limits[1] = (cutoff > chauvenet ? cutoff : chauvenet) * std;
                go = cycle_limits[1] >= 0.0;  // NaN std: the CPU's test discards nothing either
            }
            cycle_go = go;
        }
        __syncthreads();
        if (!cycle_go) break;
        const double mean = cycle_limits[0], limit = cycle_limits[1];
        double y[7] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};  // what the pixels failing the new test contribute
        for (long long t = threadIdx.x; t < held; t += CLIP_BLOCK) {
            const float copy = sval[t];
            if (isnan(copy)) continue;
            // The float32 copy differs from the value by less than 2^-23 of itself: it decides unless it lies
            // that close to the limit, where the value itself is gathered again.
            const double d = fabs((double)copy - mean);
            bool out = d > limit;
            bool gathered = false;
            double value;
            float nr, c, var;
            if (fabs(d - limit) <= fabs((double)copy) * 4.8e-7 + 1.5e-45) {
                gather(start + t, value, nr, c, var);
                gathered = true;
                out = fabs(value - mean) > limit;
            }
            if (out) {
                if (!gathered) gather(start + t, value, nr, c, var);
                add_pixel<COEF>(y, value, nr, c, var);
                sval[t] = NAN_F;
            }
        }
        for (long long j = start + held + threadIdx.x; j < stop; j += CLIP_BLOCK) {
            double value;
            float nr, c, var;
            gather(j, value, nr, c, var);
            if (!isnan(value) && in_history(value) && fabs(value - mean) > limit) add_pixel<COEF>(y, value, nr, c, var);
        }
        if (!__syncthreads_or(y[6] != 0.0)) break;  // nothing clipped: the sums stay
        block_sum<7>(y, red);
        alive -= y[6];
#pragma unroll
        for (int i = 0; i < 6; ++i) acc[i] = alive > 0.0 ? acc[i] - y[i] : 0.0;
        if (threadIdx.x == 0) { hist[2 * nh] = mean; hist[2 * nh + 1] = limit; }
        __syncthreads();
        ++nh;
        acc[6] = scatter ? spread() : NAN_D;
    }
    if (threadIdx.x == 0) {
        const long long plane = (long long)nframes * nbins;
        for (int i = 0; i < 7; ++i) out[i * plane + (long long)f * nbins + b] = acc[i];
    }
}

// ---------------------------------------------------------------------------------------------------------
// Background tables from the sums, one block per frame: mean, std, sem (float64, NaN for empty bins, as
// integrate.profile_from_sums), the peak finder's mean (NaN where std is not finite) and the gap-filled mean/std
// of pick.filled_background (numpy.interp over the valid bins, clamped at the ends, 0 for a frame without any) as
// float32, and again widened to float64 in prof for the pixel pass.
// ---------------------------------------------------------------------------------------------------------
__global__ void background_tables(const double* __restrict__ sums, int nframes, int nbins, int spread_row,
                                  const double* __restrict__ radial, double* __restrict__ prof,
                                  float* __restrict__ filled) {
    const int f = blockIdx.x;
    const long long plane = (long long)nframes * nbins;
    const long long base = (long long)f * nbins;
    double* mean = prof + base;
    double* std = prof + plane + base;
    double* sem = prof + 2 * plane + base;
    double* pmean = prof + 3 * plane + base;
    for (int b = threadIdx.x; b < nbins; b += blockDim.x) {
        const double count = sums[0 * plane + base + b], signal = sums[1 * plane + base + b];
        const double norm = sums[3 * plane + base + b], norm2 = sums[4 * plane + base + b];
        const double spread = sums[spread_row * plane + base + b];
        if (count > 0.0 && norm2 > 0.0) {
            mean[b] = signal / norm;
            std[b] = sqrt(spread / norm2);
            sem[b] = sqrt(spread) / norm;
        } else {
            mean[b] = NAN_D; std[b] = NAN_D; sem[b] = NAN_D;
        }
        pmean[b] = isfinite(std[b]) ? mean[b] : NAN_D;
    }
    __syncthreads();
    float* out_mean = filled + base;
    float* out_std = filled + plane + base;
    double* dmean = prof + 4 * plane + base;  // the same as float64, read by the pixel pass
    double* dstd = prof + 5 * plane + base;
    for (int b = threadIdx.x; b < nbins; b += blockDim.x) {
        for (int t = 0; t < 2; ++t) {
            const double* fp = t ? std : mean;
            float* dst = t ? out_std : out_mean;
            auto valid = [&](int i) { return isfinite(mean[i]) && isfinite(std[i]); };
            if (valid(b)) {
                dst[b] = (float)fp[b];
                (t ? dstd : dmean)[b] = (double)(float)fp[b];
                continue;
            }
            int lo = b - 1, hi = b + 1;
            while (lo >= 0 && !valid(lo)) --lo;
            while (hi < nbins && !valid(hi)) ++hi;
            double r;
            if (lo < 0 && hi >= nbins) r = 0.0;
            else if (lo < 0) r = fp[hi];
            else if (hi >= nbins) r = fp[lo];
            else {
                const double slope = (fp[hi] - fp[lo]) / (radial[hi] - radial[lo]);
                r = slope * (radial[b] - radial[lo]) + fp[lo];
                if (isnan(r)) {
                    r = slope * (radial[b] - radial[hi]) + fp[hi];
                    if (isnan(r) && fp[lo] == fp[hi]) r = fp[lo];
                }
            }
            dst[b] = (float)r;
            (t ? dstd : dmean)[b] = (double)(float)r;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Per-pixel excess over the background (peaks.py _excess) and picking test (pick.py _is_kept).
// ---------------------------------------------------------------------------------------------------------
struct Bg {
    const double* mean; const double* std; const double* sem;   // (nframes, nbins) this frame's row
    const double* pmean;                                        // mean, NaN where std is not (find_peaks)
    const double* fmean; const double* fstd;                    // gap-filled float32 values, for picking
};

// prof: the (PROF_PLANES, nframes, nbins) float64 tables of background_tables.
__device__ __forceinline__ Bg load_bg(const double* prof, int nframes, int nbins, int f) {
    Bg B;
    const long long plane = (long long)nframes * nbins, base = (long long)f * nbins;
    B.mean = prof + base; B.std = prof + plane + base; B.sem = prof + 2 * plane + base;
    B.pmean = prof + 3 * plane + base;
    B.fmean = prof + 4 * plane + base; B.fstd = prof + 5 * plane + base;
    return B;
}

// peaks.py _pixel_var: sigma_p^2 = std(r)^2 + noise^2 (float64), noise2 = noise * noise.
__device__ __forceinline__ double pixel_var(const Bg& B, const Pos& X, double noise2) {
    const double sd = interp(B.std, X);
    return sd * sd + noise2;
}

// sigma_p^2 of flat pixel p (every usable pixel lies in the radial range; 0 for the others, never used).
__device__ __forceinline__ double pixel_var_at(const Bg& B, const int* __restrict__ slot,
                                               const double* __restrict__ wpos, long long p, double noise2) {
    Pos X;
    return bin_place(slot, wpos, p, X) ? pixel_var(B, X, noise2) : 0.0;
}

// Values of the per-pixel mark of the peak finder, as peaks.py (_PEAK is the peak bit mask here).
#define MARK_NONE 0
#define MARK_ZINGER 1
#define MARK_MAYBE 3
#define MARK_STRONG 4

// peaks.py _excess for a pixel inside the radial range: v = q - bg(r) in float64 with q = s / norm (float32), bg
// NaN in the bins whose std is not finite, returned as float32 (NaN when missing); mark = MARK_STRONG where v > 0
// and v^2 >= cutoff^2 sigma_p^2 (zinger candidates), MARK_MAYBE where 16 v^2 >= cutoff^2 sigma_p^2 (rule 2e),
// both tested on the float64 v.  cutoff2 = cutoff * cutoff, noise2 = noise * noise (the CPU's products).
__device__ __forceinline__ float excess_peak(const Bg& B, float s, float nrm, float q, const Pos& X, double noise2,
                                             double cutoff2, unsigned char& mark) {
    mark = MARK_NONE;
    if (!isfinite(s) || !(nrm > 0.0f)) return NAN_F;
    const double b = interp(B.pmean, X);
    if (!isfinite(b)) return NAN_F;
    const double v = (double)q - b;
    if (v > 0.0) {
        const double sd = interp(B.std, X);
        const double v2 = v * v;
        const double t2 = cutoff2 * (sd * sd + noise2);
        if (v2 >= t2) mark = MARK_STRONG;
        else if (v2 * 16.0 >= t2) mark = MARK_MAYBE;
    }
    return (float)v;
}

// pick.py _classify for a pixel inside picking's radial range: 0 = not picked, 1 = picked, 2 = picked and above
// the spot threshold (its 8 neighbours are kept too), from the gap-filled tables (finite, so that the place X
// gives _classify's interpolation at the ends too); invalid pixels are picked when they are overloads.
template <typename T>
__device__ __forceinline__ int pick_state(const Bg& B, const Par& P, T raw, float s, float q, const Pos& X,
                                          double noise, double noise2, double cutoff2, double spot) {
    if (!isfinite(s)) return (double)raw >= P.saturation ? (spot > 0.0 ? 2 : 1) : 0;
    const double excess = (double)q - ((1.0 - X.w) * B.fmean[X.i0] + X.w * B.fmean[X.i1]);
    if (excess <= noise) return 0;
    const double sd = (1.0 - X.w) * B.fstd[X.i0] + X.w * B.fstd[X.i1];
    const double sigma2 = sd * sd + noise2;
    if (!(excess * excess > cutoff2 * sigma2)) return 0;  // excess > cutoff * sigma, both positive
    return (spot > 0.0 && excess * excess > spot * spot * sigma2) ? 2 : 1;
}

// The windows below (row width W) hold NaN at positions outside the image, which every rule treats like
// missing pixels (as the CPU code treats both), so the loops need no bounds checks.
//
// peaks.py _flag_zingers for a MARK_STRONG pixel at (a, b): its 8 valid neighbours hold less than
// min_spread * v0 (reads v only).
__device__ __forceinline__ bool is_zinger(const float* sv, int W, int a, int b, double min_spread) {
    double spread = 0.0;
#pragma unroll
    for (int di = -1; di <= 1; ++di)
#pragma unroll
        for (int dj = -1; dj <= 1; ++dj) {
            const float vq = sv[(a + di) * W + b + dj];
            if ((di != 0 || dj != 0) && isfinite(vq)) spread += (double)vq;
        }
    return spread < min_spread * (double)sv[a * W + b];
}

// peaks.py _is_peak on a window of v and marks (MARK_ZINGER already set), centre (a, b), in two parts.
// peak_candidate: rule 2e and the 3 x 3 part of the local maximum (a subset of the patch test of peak_confirm),
// the cheap tests that reject most pixels.
__device__ __forceinline__ bool peak_candidate(const float* sv, const unsigned char* sm, int W, int a, int b) {
    const int c = a * W + b;
    const float v0 = sv[c];
    if (sm[c] < MARK_MAYBE) return false;  // rule 2e (or a zinger)
#pragma unroll
    for (int di = -1; di <= 1; ++di)
#pragma unroll
        for (int dj = -1; dj <= 1; ++dj) {
            const int k = c + di * W + dj;
            const float vq = sv[k];
            if ((vq > v0 || (vq == v0 && (di < 0 || (di == 0 && dj < 0)))) && sm[k] != MARK_ZINGER) return false;
        }
    return true;
}

// peak_confirm, for a candidate: the 3 x 3 box detection, the spread guard and the local maximum of the patch.
// norm0: the centre pixel's norm; var_at(di, dj): sigma_p^2 (float64) of the pixel at offset (di, dj), asked only
// for usable ones.
template <int H, typename VarAt>
__device__ __forceinline__ bool peak_confirm(const float* sv, const unsigned char* sm, int W, int a, int b,
                                             double cutoff, double spread_snr, double min_spread, bool reject,
                                             float norm0, VarAt var_at) {
    const int c = a * W + b;
    const float v0 = sv[c];
    double box = 0.0, box_var = 0.0, nb_var = 0.0;  // b: the 3 x 3 detection
#pragma unroll
    for (int di = -1; di <= 1; ++di)
#pragma unroll
        for (int dj = -1; dj <= 1; ++dj) {
            const int k = c + di * W + dj;
            if (isfinite(sv[k]) && sm[k] != MARK_ZINGER) {
                box += (double)sv[k];
                const double q_var = var_at(di, dj);
                box_var += q_var;
                if (di != 0 || dj != 0) nb_var += q_var;
            }
        }
    if (box < cutoff * sqrt(box_var) + (cutoff * cutoff - 1.0) / (6.0 * (double)norm0)) return false;
    const double guard = spread_snr * sqrt(nb_var);  // c: spread over the neighbours
    const double least = min_spread * (double)v0;
    if (box - (double)v0 < (least > guard ? least : guard)) return false;
    int h = H;
    if (H < 2) {  // a missing pixel may hide the true maximum, or split a spot: look one pixel further
#pragma unroll
        for (int di = -1; di <= 1; ++di)
#pragma unroll
            for (int dj = -1; dj <= 1; ++dj) {
                const int k = c + di * W + dj;
                if (!isfinite(sv[k]) || sm[k] == MARK_ZINGER) h = 2;
            }
    }
    for (int di = -h; di <= h; ++di)  // a and d: local maximum of its patch
        for (int dj = -h; dj <= h; ++dj) {
            const int k = c + di * W + dj;
            const float vq = sv[k];
            if (!isfinite(vq) || sm[k] == MARK_ZINGER) {
                if (reject) return false;
                continue;
            }
            if (vq > v0 || (vq == v0 && (di < 0 || (di == 0 && dj < 0)))) return false;
        }
    return true;
}

// Pixel pass, one thread per pixel: block (frame, word column, group of PIX_WARPS * PIX_ROWS rows), frames
// fastest so that the blocks of the same pixels share the static arrays in L2; each warp is one 32-pixel word of
// the bit masks in PIX_ROWS rows (row = group start + warp + k PIX_WARPS).  Picking (pick.py) gives the word by
// __ballot_sync and its count by __popc (spot_words, when not NULL, gets the pixels of state 2 for grow_picks);
// for peaks it writes the excess v (float32, NaN = missing) and the mark of every pixel (peaks.py _excess) for
// the peak pass.
template <typename T, bool PLAIN>
__global__ void __launch_bounds__(32 * PIX_WARPS)
pixel_pass(const T* __restrict__ frames, int ny, int nx, int nwords, const unsigned char* __restrict__ mask,
           const float* __restrict__ norm, const int* __restrict__ slot, const double* __restrict__ wpos,
           const float* __restrict__ dark, const float* __restrict__ dvar, const float* __restrict__ gmap,
           const double* __restrict__ par, const double* __restrict__ prof, int nframes, int nbins, double pick_noise, double pick_cutoff, double pick_spot, double peak_noise,
           double peak_cutoff, int do_pick, int do_peaks, unsigned int* __restrict__ pick_words,
           unsigned int* __restrict__ spot_words, int* __restrict__ pick_counts, float* __restrict__ out_v,
           unsigned char* __restrict__ out_mark) {
    const int f = blockIdx.x, word = blockIdx.y;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int col = word * 32 + lane;
    const long long npix = (long long)ny * nx;
    const T* frame = frames + (long long)f * npix;
    float* v_out = out_v + (long long)f * npix;
    unsigned char* mark_out = out_mark + (long long)f * npix;
    const Par P = load_par(par);
    const Bg B = load_bg(prof, nframes, nbins, f);
    const double pick_noise2 = pick_noise * pick_noise, pick_cutoff2 = pick_cutoff * pick_cutoff;
    const double peak_noise2 = peak_noise * peak_noise, peak_cutoff2 = peak_cutoff * peak_cutoff;
    const int row0 = blockIdx.z * PIX_WARPS * PIX_ROWS + warp;
    // the inputs of all PIX_ROWS pixels are loaded first, so that their memory latencies overlap
    T raw[PIX_ROWS];
    unsigned char masked[PIX_ROWS];
    float nrm[PIX_ROWS];
    int place[PIX_ROWS];
    double wgt[PIX_ROWS];
#pragma unroll
    for (int k = 0; k < PIX_ROWS; ++k) {
        const int row = row0 + k * PIX_WARPS;
        const long long p = (long long)row * nx + col;
        const bool inside = row < ny && col < nx;
        raw[k] = inside ? frame[p] : (T)0;
        masked[k] = inside ? mask[p] : (unsigned char)1;
        nrm[k] = inside ? norm[p] : 1.0f;
        place[k] = inside ? slot[p] : -1;
        wgt[k] = inside ? wpos[p] : 0.0;
    }
#pragma unroll
    for (int k = 0; k < PIX_ROWS; ++k) {
        const int row = row0 + k * PIX_WARPS;
        if (row >= ny) break;  // the whole warp
        const long long p = (long long)row * nx + col;
        int state = 0;
        if (col < nx) {
            float s, pvar;
            if (PLAIN)
                preprocess_plain<T>(P, raw[k], masked[k] != 0, s, pvar);
            else
                preprocess_value<T>(P, raw[k], masked[k] != 0, dark != nullptr, dark ? dark[p] : 0.0f,
                                    dvar != nullptr, dvar ? dvar[p] : 0.0f, gmap ? (double)gmap[p] : P.gain, s, pvar);
            const float q = s / nrm[k];
            const int sl = place[k];
            const Pos X = decode_place(sl, wgt[k]);
            if (do_peaks) {
                unsigned char mark = MARK_NONE;
                v_out[p] = sl >= 0 ? excess_peak(B, s, nrm[k], q, X, peak_noise2, peak_cutoff2, mark) : NAN_F;
                mark_out[p] = mark;
            }
            if (do_pick && sl >= 0 && !(sl & SLOT_PICK_OUT))
                state = pick_state<T>(B, P, raw[k], s, q, X, pick_noise, pick_noise2, pick_cutoff2, pick_spot);
        }
        const unsigned int pw = __ballot_sync(0xffffffffu, state > 0);
        const unsigned int sw = __ballot_sync(0xffffffffu, state > 1);
        if (do_pick && lane == 0) {
            const long long w = ((long long)f * ny + row) * nwords + word;
            pick_words[w] = pw;
            pick_counts[w] = __popc(pw);
            if (spot_words) spot_words[w] = sw;
        }
    }
}

// pick.py _is_kept with cutoff_spot > 0, one thread per word: adds to the picked pixels the pixels inside the
// radial range (range_words, (ny, nwords), bits of r_lo <= r < r_hi) next to (8-neighbourhood) a pixel of
// state 2, and recounts the word.
__global__ void grow_picks(long long nwords_total, int ny, int nwords, const unsigned int* __restrict__ spot_words,
                           const unsigned int* __restrict__ range_words, unsigned int* __restrict__ pick_words,
                           int* __restrict__ pick_counts) {
    const long long w = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (w >= nwords_total) return;
    const long long per_frame = (long long)ny * nwords;
    const long long f = w / per_frame;
    const long long rem = w - f * per_frame;
    const int row = (int)(rem / nwords), wx = (int)(rem % nwords);
    unsigned int near = 0;  // bit j: a state-2 pixel among columns 32 wx + j - 1 .. + 1 of rows row - 1 .. + 1
    for (int r = row - 1; r <= row + 1; ++r) {
        if (r < 0 || r >= ny) continue;
        const unsigned int* line = spot_words + f * per_frame + (long long)r * nwords;
        const unsigned int s = line[wx];
        const unsigned int left = wx > 0 ? line[wx - 1] : 0u;
        const unsigned int right = wx + 1 < nwords ? line[wx + 1] : 0u;
        near |= s | (s << 1) | (s >> 1) | (left >> 31) | (right << 31);
    }
    const unsigned int word = pick_words[w] | (near & range_words[(long long)row * nwords + wx]);
    pick_words[w] = word;
    pick_counts[w] = __popc(word);
}

// Peaks of a tile: one block of 32 x CAND_WARPS threads per (frame, tile of TILE_W x TILE_H pixels), frames
// fastest.  v and marks of the tile and a halo of 3 come from the pixel pass into shared memory; the zinger
// flags (peaks.py _flag_zingers, a function of v alone) are set for the tile and the two rings that the peak
// rules read, and written back to the marks for the tile itself; the cheap tests (rule 2e, 3 x 3 local maximum:
// peak_candidate) list the candidates (at most one pixel in four: no two neighbours are both 3 x 3 maxima), and
// the block's threads then take one candidate each through peak_confirm, on the shared window, with sigma_p^2
// from the pixels' places between the bins.  Each tile row's word of the peak mask and its count are written
// whole.
template <int H>
__global__ void __launch_bounds__(32 * CAND_WARPS, CAND_MIN_BLOCKS)
tile_peaks(int ny, int nx, int nwords, const float* __restrict__ in_v, unsigned char* __restrict__ marks,
           const float* __restrict__ norm, const int* __restrict__ slot, const double* __restrict__ wpos,
           const double* __restrict__ prof, int nframes, int nbins,
           double peak_noise, double peak_cutoff, double spread_snr, double min_spread, int reject,
           unsigned int* __restrict__ peak_words, int* __restrict__ peak_counts) {
    const int G = 3;
    const int W = TILE_W + 2 * G, HH = TILE_H + 2 * G;
    __shared__ float sv[HH * W];
    __shared__ unsigned char sm[HH * W];
    __shared__ unsigned short listed[TILE_W * TILE_H / 4];  // candidates, lr * TILE_W + lc
    __shared__ unsigned int found[TILE_H];                  // peak-mask word of each tile row
    __shared__ int ncand;
    const int f = blockIdx.x, tx = blockIdx.y;
    const int col0 = tx * TILE_W, row0 = blockIdx.z * TILE_H;
    const long long npix = (long long)ny * nx;
    const float* v_in = in_v + (long long)f * npix;
    unsigned char* mark = marks + (long long)f * npix;
    for (int e = threadIdx.x; e < HH * W; e += blockDim.x) {
        const int r = row0 - G + e / W, c = col0 - G + e % W;
        const bool in = r >= 0 && r < ny && c >= 0 && c < nx;
        const long long q = (long long)r * nx + c;
        sv[e] = in ? v_in[q] : NAN_F;
        sm[e] = in ? mark[q] : (unsigned char)MARK_NONE;
    }
    for (int lr = threadIdx.x; lr < TILE_H; lr += blockDim.x) found[lr] = 0u;
    if (threadIdx.x == 0) ncand = 0;
    __syncthreads();
    for (int e = threadIdx.x; e < HH * W; e += blockDim.x) {  // zinger flags: each reads v and its own mark
        const int lr = e / W, lc = e % W;
        if (sm[e] == MARK_STRONG && lr >= 1 && lr < HH - 1 && lc >= 1 && lc < W - 1 && is_zinger(sv, W, lr, lc, min_spread)) {
            sm[e] = MARK_ZINGER;
            const int r = row0 - G + lr, c = col0 - G + lc;
            if (lr >= G && lr < G + TILE_H && lc >= G && lc < G + TILE_W && r < ny && c < nx)
                mark[(long long)r * nx + c] = MARK_ZINGER;
        }
    }
    __syncthreads();
    const int lane = threadIdx.x & 31;
    for (int lr = threadIdx.x >> 5; lr < TILE_H; lr += CAND_WARPS) {
        const int row = row0 + lr, col = col0 + lane;
        const bool candidate = row < ny && col < nx && peak_candidate(sv, sm, W, lr + G, lane + G);
        const unsigned int ballot = __ballot_sync(0xffffffffu, candidate);
        int first = 0;
        if (lane == 0 && ballot) first = atomicAdd(&ncand, __popc(ballot));
        first = __shfl_sync(0xffffffffu, first, 0);
        if (candidate) listed[first + __popc(ballot & ((1u << lane) - 1u))] = (unsigned short)(lr * TILE_W + lane);
    }
    __syncthreads();
    const Bg B = load_bg(prof, nframes, nbins, f);
    const double noise2 = peak_noise * peak_noise;
    for (int k = threadIdx.x; k < ncand; k += blockDim.x) {
        const int lr = listed[k] / TILE_W, lc = listed[k] % TILE_W;
        const int row = row0 + lr, col = col0 + lc;
        const long long p = (long long)row * nx + col;
        double var9[9];  // sigma_p^2 of the 3 x 3 box, loaded together (the rules ask for the usable ones)
#pragma unroll
        for (int di = -1; di <= 1; ++di)
#pragma unroll
            for (int dj = -1; dj <= 1; ++dj) {
                const bool in = row + di >= 0 && row + di < ny && col + dj >= 0 && col + dj < nx;
                var9[3 * di + dj + 4] = in ? pixel_var_at(B, slot, wpos, p + (long long)di * nx + dj, noise2) : 0.0;
            }
        auto var_at = [&](int di, int dj) { return var9[3 * di + dj + 4]; };
        if (peak_confirm<H>(sv, sm, W, lr + G, lc + G, peak_cutoff, spread_snr, min_spread, reject != 0, norm[p], var_at))
            atomicOr(&found[lr], 1u << lc);
    }
    __syncthreads();
    for (int lr = threadIdx.x; lr < TILE_H; lr += blockDim.x) {
        const int row = row0 + lr;
        if (row < ny) {
            const long long w = ((long long)f * ny + row) * nwords + tx;
            peak_words[w] = found[lr];
            peak_counts[w] = __popc(found[lr]);
        }
    }
}

// frame_ptr[f + 1] = inclusive scan at the last word of frame f (frame_ptr[0] = 0), for picks and peaks.
__global__ void frame_offsets(const long long* __restrict__ scan, long long words_per_frame, int nframes,
                              long long* __restrict__ frame_ptr) {
    const int f = blockIdx.x * blockDim.x + threadIdx.x;
    if (f == 0) frame_ptr[0] = 0;
    if (f < nframes) frame_ptr[f + 1] = scan[(f + 1) * words_per_frame - 1];
}

// The compaction kernels run one thread per word w of a (nframes, ny, nwords) bit mask; set_bits walks the set
// bits of the word in index order, calling visit(frame, flat pixel index, compacted position) with the positions
// that the inclusive scan gives (scan[w] minus the word's own count): index order within each frame.
template <typename Visit>
__device__ __forceinline__ void set_bits(long long w, int ny, int nx, int nwords, unsigned int word,
                                         const long long* __restrict__ scan, Visit visit) {
    long long pos = scan[w] - __popc(word);
    const long long per_frame = (long long)ny * nwords;
    const long long f = w / per_frame;
    const long long rem = w - f * per_frame;
    const long long first = (rem / nwords) * nx + (rem % nwords) * 32;  // flat index of the word's bit 0
    while (word) {
        const int j = __ffs(word) - 1;
        word &= word - 1;
        visit(f, first + j, pos++);
    }
}

// Writes the flat index and the raw (minus dark) value of each picked pixel at its compacted position.
template <typename T>
__global__ void emit_picks(const T* __restrict__ frames, long long nwords_total, int ny, int nx, int nwords,
                           const unsigned int* __restrict__ words, const long long* __restrict__ scan,
                           const float* __restrict__ dark, int is_integer, double lo, double hi,
                           long long capacity, unsigned int* __restrict__ out_index, T* __restrict__ out_value) {
    const long long w = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (w >= nwords_total || !words[w]) return;
    set_bits(w, ny, nx, nwords, words[w], scan, [&](long long f, long long p, long long pos) {
        if (pos >= capacity) return;
        const T raw = frames[f * ny * nx + p];
        out_index[pos] = (unsigned int)p;
        if (dark) {
            double value = (double)raw - (double)dark[p];
            if (is_integer) value = fmin(fmax(floor(value + 0.5), lo), hi);
            out_value[pos] = (T)value;
        } else {
            out_value[pos] = raw;
        }
    });
}

// Lists the peaks at their compacted positions: the flat index, and at = frame * ny * nx + index for
// measure_peaks.
__global__ void emit_peak_index(long long nwords_total, int ny, int nx, int nwords,
                                const unsigned int* __restrict__ words, const long long* __restrict__ scan,
                                long long capacity, long long* __restrict__ out_index, long long* __restrict__ at) {
    const long long w = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (w >= nwords_total || !words[w]) return;
    set_bits(w, ny, nx, nwords, words[w], scan, [&](long long f, long long p, long long pos) {
        if (pos >= capacity) return;
        out_index[pos] = p;
        at[pos] = f * ny * nx + p;
    });
}

// One warp per peak (blocks of MEASURE_WARPS warps): measures it (peaks.py _measure_peaks and _centroid) over
// an 11 x 11 window of the pixel pass's v / marks in shared memory, so that the zinger flags of the boxes are
// known.  The lanes load the window, flag its zingers and compute the 49 Gaussian weights of each centroid
// iteration; lane 0 adds them in the CPU's order (rows, then columns) and does the rest, so that the sums are
// the CPU's to the last bit.  *total is the number of peaks of the batch (device memory: no host round trip).
template <typename T, int H>
__global__ void __launch_bounds__(32 * MEASURE_WARPS)
measure_peaks(const T* __restrict__ frames, const long long* __restrict__ total, int nframes,
              int ny, int nx, const long long* __restrict__ at, const unsigned char* __restrict__ mask,
              const float* __restrict__ norm, const int* __restrict__ slot, const double* __restrict__ wpos,
              const float* __restrict__ dark, const float* __restrict__ dvar,
              const float* __restrict__ gmap, const double* __restrict__ dspacing,
              const double* __restrict__ par, const double* __restrict__ prof,
              int nbins, const float* __restrict__ in_v,
              const unsigned char* __restrict__ in_mark, double min_spread,
              long long capacity, double* __restrict__ out_f, int* __restrict__ out_npix) {
    // the 7 x 7 centroid box, and the 5 x 5 integration box centred on the pixel nearest the centroid (up to 1 px
    // from the peak), plus the ring that the zinger test of their pixels reads
    const int G = 5, S = 2 * G + 1, C = 3, CS = 2 * C + 1;
    __shared__ float window_v[MEASURE_WARPS][S * S];
    __shared__ unsigned char window_m[MEASURE_WARPS][S * S];  // marks, MARK_ZINGER once flagged
    __shared__ double weights[MEASURE_WARPS][CS * CS];       // of one centroid iteration, 0 for unusable pixels
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const long long pos = (long long)blockIdx.x * MEASURE_WARPS + warp;
    if (pos >= *total || pos >= capacity) return;  // the whole warp
    const long long npix = (long long)ny * nx;
    const int f = (int)(at[pos] / npix);
    const long long pix = at[pos] - f * npix;
    const int i = (int)(pix / nx), j = (int)(pix % nx);
    const T* frame = frames + (long long)f * npix;
    float* sv = window_v[warp];
    unsigned char* sm = window_m[warp];
    double* wt = weights[warp];
    for (int e = lane; e < S * S; e += 32) {
        const int ii = i - G + e / S, jj = j - G + e % S;
        const bool in = ii >= 0 && ii < ny && jj >= 0 && jj < nx;
        const long long q = (long long)f * npix + (long long)ii * nx + jj;
        sv[e] = in ? in_v[q] : NAN_F;
        sm[e] = in ? in_mark[q] : (unsigned char)MARK_NONE;
    }
    __syncwarp();
    for (int e = lane; e < S * S; e += 32) {  // is_zinger reads v only: each lane flags its own pixels
        const int a = e / S, b = e % S;
        if (a >= 1 && a < S - 1 && b >= 1 && b < S - 1 && sm[e] == MARK_STRONG && is_zinger(sv, S, a, b, min_spread))
            sm[e] = MARK_ZINGER;
    }
    __syncwarp();
    auto usable = [&](int ii, int jj) {
        const int k = (ii - i + G) * S + (jj - j + G);
        return isfinite(sv[k]) && sm[k] != MARK_ZINGER;
    };
    auto value = [&](int ii, int jj) { return sv[(ii - i + G) * S + (jj - j + G)]; };
    // Gaussian-windowed centroid (rms 1.3 px) over the 7 x 7 box, iterated to its fixed point from the centroid
    // of the positive excess of the 5 x 5 box (peaks.py _centroid); lane 0 decides, the warp follows
    const int i0 = i - C > 0 ? i - C : 0, i1 = i + C + 1 < ny ? i + C + 1 : ny;
    const int j0 = j - C > 0 ? j - C : 0, j1 = j + C + 1 < nx ? j + C + 1 : nx;
    const double inv = 0.5 / (1.3 * 1.3);
    double row = 0.0, col = 0.0;
    if (lane == 0) {
        double wsum = 0.0, wi = 0.0, wj = 0.0;
        for (int ii = (i - 2 > 0 ? i - 2 : 0); ii < (i + 3 < ny ? i + 3 : ny); ++ii)
            for (int jj = (j - 2 > 0 ? j - 2 : 0); jj < (j + 3 < nx ? j + 3 : nx); ++jj)
                if (usable(ii, jj) && value(ii, jj) > 0.0f) {
                    const double vq = (double)value(ii, jj);
                    wsum += vq;
                    wi += vq * (double)ii;
                    wj += vq * (double)jj;
                }
        row = wi / wsum;
        col = wj / wsum;
    }
    for (int it = 0; it < 20; ++it) {
        row = __shfl_sync(0xffffffffu, row, 0);
        col = __shfl_sync(0xffffffffu, col, 0);
        for (int e = lane; e < CS * CS; e += 32) {
            const int ii = i - C + e / CS, jj = j - C + e % CS;
            double w = 0.0;
            if (ii >= i0 && ii < i1 && jj >= j0 && jj < j1 && usable(ii, jj)) {  // separable window, as the CPU
                const double di = (double)ii - row, dj = (double)jj - col;
                w = (double)value(ii, jj) * exp(-(di * di) * inv) * exp(-(dj * dj) * inv);
            }
            wt[e] = w;
        }
        __syncwarp();
        int stop = 0;
        if (lane == 0) {
            double wsum = 0.0, wi = 0.0, wj = 0.0;
            for (int ii = i0; ii < i1; ++ii)
                for (int jj = j0; jj < j1; ++jj)
                    if (usable(ii, jj)) {
                        const double w = wt[(ii - i + C) * CS + (jj - j + C)];
                        wsum += w;
                        wi += w * (double)ii;
                        wj += w * (double)jj;
                    }
            if (!(wsum > 0.0)) {
                stop = 1;
            } else {
                const double new_row = wi / wsum, new_col = wj / wsum;
                if (fabs(new_row - i) > 1.0 || fabs(new_col - j) > 1.0) {
                    stop = 1;
                } else {
                    const double moved = fabs(new_row - row) + fabs(new_col - col);
                    row = new_row;
                    col = new_col;
                    stop = moved < 1e-4;
                }
            }
        }
        __syncwarp();  // wt is read before the next iteration writes it
        if (__shfl_sync(0xffffffffu, stop, 0)) break;
    }
    if (lane == 0) {
        const Par P = load_par(par);
        const Bg B = load_bg(prof, nframes, nbins, f);
        const int ci = (int)floor(row + 0.5) < 0 ? 0 : ((int)floor(row + 0.5) > ny - 1 ? ny - 1 : (int)floor(row + 0.5));
        const int cj = (int)floor(col + 0.5) < 0 ? 0 : ((int)floor(col + 0.5) > nx - 1 ? nx - 1 : (int)floor(col + 0.5));
        double total = 0.0, variance_sum = 0.0, scale_sum = 0.0;
        int npix = 0;
        for (int ii = (ci - 2 > 0 ? ci - 2 : 0); ii < (ci + 3 < ny ? ci + 3 : ny); ++ii)
            for (int jj = (cj - 2 > 0 ? cj - 2 : 0); jj < (cj + 3 < nx ? cj + 3 : nx); ++jj) {
                if (!usable(ii, jj)) continue;
                const long long q = (long long)ii * nx + jj;
                float s, pvar;
                pixel_signal<T>(P, frame, q, mask, dark, dvar, gmap, s, pvar);
                const double g = gmap ? (double)gmap[q] : P.gain;
                const double scale = (double)norm[q] * g;
                total += (double)value(ii, jj) * scale;
                scale_sum += scale;
                variance_sum += (double)pvar * g * g;
                ++npix;
            }
        const long long p = (long long)i * nx + j;
        Pos X;
        bin_place(slot, wpos, p, X);  // a peak lies in the radial range
        const double s_bg = interp(B.sem, X);
        variance_sum += scale_sum * scale_sum * s_bg * s_bg;
        const double g0 = gmap ? (double)gmap[p] : P.gain;
        double* o = out_f + pos * 7;
        o[0] = row;
        o[1] = col;
        o[2] = total;
        o[3] = sqrt(variance_sum);
        o[4] = (double)(sv[G * S + G] * norm[p]) * g0;
        o[5] = interp(B.pmean, X) * (double)norm[p] * g0;
        if (dspacing) {
            o[6] = dspacing[(long long)ci * nx + cj];
        } else {
            o[6] = NAN_D;
        }
        out_npix[pos] = npix;
    }
}
"""
