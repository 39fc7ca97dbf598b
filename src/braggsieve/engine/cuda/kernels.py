"""CUDA C source of the GPU engine's kernels, compiled at run time by NVRTC through ``cupy.RawModule``.

Every kernel mirrors, operation for operation, the numba code of the CPU engine, so that both give the same
numbers: ``preprocess_value`` is engine/corrections.py's ``_preprocess_kernel``; ``sigma_clip`` is
engine/integrate.py's ``_sigma_clip_kernel`` (float64 sums; only the order of the additions differs, being a
tree over the block); ``background_tables`` is integrate.py's ``profile_from_sums`` and pick.py's
``filled_background`` (numpy.interp); ``pixel_pass``/``grow_picks``/``emit_picks`` are pick.py's
``_classify``/``_is_kept``/``_fill_rows``; ``pixel_pass``/``peak_candidates``/``confirm_peaks``/``measure_peaks``
are peaks.py's ``_excess``/``_flag_zingers``/``_mark_peaks``/``_measure_peaks``/``_centroid``.  The module is
compiled with ``--fmad=false`` so that ``a * b + c`` is rounded twice, as on the CPU.

Layouts: frames ``(nframes, ny, nx)`` in the raw dtype; per-pixel static arrays flat ``(ny * nx,)``; CSR
static arrays in CSR order (statically masked entries and zero coefficients removed beforehand); per-bin
tables ``(nframes, nbins)``; bit masks of picked pixels and peaks ``(nframes, ny, nwords)`` uint32 with
``nwords = ceil(nx / 32)``, bit ``j`` of word ``w`` being column ``32 w + j``.

Scalar correction parameters travel in a float64 array ``par`` (see ``PAR_*`` below and engine.py).
"""

# Indices into the float64 parameter array ``par`` shared by the kernels.
# The radial entries give each pixel's fractional bin position from its float32 radius r, as the CPU forms it:
# peaks (r - R0) / STEP for R_LO <= r <= R_HI, picking (r - R0) * INV_STEP for R_LO <= r < R_HI.
(PAR_GAIN, PAR_DUMMY, PAR_DELTA_DUMMY, PAR_CHECK_DUMMY, PAR_SATURATION, PAR_NMARKERS, PAR_MARKER0, PAR_MARKER1,
 PAR_R0, PAR_STEP, PAR_INV_STEP, PAR_R_LO, PAR_R_HI) = range(13)
NPAR = 13

# Rows of the per-(frame, bin) sums, as engine/integrate.py: count, V, W, Omega, OmegaOmega, P, VV.
NSUMS = 7

# Peak measurement rows of the float64 output, as engine/peaks.py: row, col, intensity, sigma, max, bg, res.
NPEAKF = 7

SOURCE = r"""
#define NAN_F __int_as_float(0x7fc00000)
#define NAN_D __longlong_as_double(0x7ff8000000000000LL)
#define TILE_W 32

struct Par {
    double gain, dummy, delta_dummy, saturation, m0, m1;
    double r0, step, inv_step, r_lo, r_hi;
    bool check_dummy;
    int nmarkers;
};

__device__ __forceinline__ Par load_par(const double* __restrict__ par) {
    Par P;
    P.gain = par[0]; P.dummy = par[1]; P.delta_dummy = par[2]; P.check_dummy = par[3] != 0.0;
    P.saturation = par[4]; P.nmarkers = (int)par[5]; P.m0 = par[6]; P.m1 = par[7];
    P.r0 = par[8]; P.step = par[9]; P.inv_step = par[10]; P.r_lo = par[11]; P.r_hi = par[12];
    return P;
}

// Fractional bin position of a pixel of radius r (float32) for the peak finder (peaks.find_peaks), NaN outside
// [r_lo, r_hi] (and for masked pixels, whose radius is NaN).
__device__ __forceinline__ double peak_position(const Par& P, float r) {
    const double x = (double)r;
    if (!(x >= P.r_lo && x <= P.r_hi)) return NAN_D;
    return P.step > 0.0 ? (x - P.r0) / P.step : 0.0;
}

// The same for picking (pick.pick_pixels): NaN outside [r_lo, r_hi).
__device__ __forceinline__ double pick_position(const Par& P, float r) {
    const double x = (double)r;
    if (!(x >= P.r_lo && x < P.r_hi)) return NAN_D;
    return (x - P.r0) * P.inv_step;
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

// Signal and variance of flat pixel p of a frame, with the static arrays in flat order.
template <typename T>
__device__ __forceinline__ void pixel_signal(const Par& P, const T* __restrict__ frame, long long p,
                                             const unsigned char* __restrict__ mask, const float* __restrict__ dark,
                                             const float* __restrict__ dvar, const float* __restrict__ gmap,
                                             float& s, float& var) {
    preprocess_value<T>(P, frame[p], mask[p] != 0, dark != nullptr, dark ? dark[p] : 0.0f,
                        dvar != nullptr, dvar ? dvar[p] : 0.0f, gmap ? (double)gmap[p] : P.gain, s, var);
}

// Sum x[0..N) over the block; every thread gets the totals.  red: N * 32 doubles of shared memory.
template <int N>
__device__ __forceinline__ void block_sum(double (&x)[N], double* red) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nwarps = blockDim.x >> 5;
#pragma unroll
    for (int i = 0; i < N; ++i)
        for (int o = 16; o > 0; o >>= 1) x[i] += __shfl_xor_sync(0xffffffffu, x[i], o);
    __syncthreads();
    if (lane == 0) {
#pragma unroll
        for (int i = 0; i < N; ++i) red[i * 32 + warp] = x[i];
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < N; ++i) {
        double y = lane < nwarps ? red[i * 32 + lane] : 0.0;
        for (int o = 16; o > 0; o >>= 1) y += __shfl_xor_sync(0xffffffffu, y, o);
        x[i] = y;
    }
}

// ---------------------------------------------------------------------------------------------------------
// Sigma-clipping: one block per (frame, bin of bin_list), frames fastest so that the blocks of one bin share
// the static CSR arrays in L2.  The gather preprocesses each pixel and adds it to the sums of the first pass;
// the first `cap` pixels of the bin keep their value = signal / norm (float64, NaN when invalid or clipped)
// in shared memory, 8 bytes a pixel, the launch being sized for its class of bins; pixels beyond `cap` (bins
// larger than shared memory) are gathered again at each pass and tested against the history of (mean,
// limit).  A clipping cycle is then one pass that tests the pixels still in against the new limit and sums
// what the pixels that fail contribute; these sums are subtracted from the bin's sums (the CPU sums the
// survivors again: the same up to float64 rounding, relative 1e-16 of the removed part).  The few pixels
// removed are gathered again for their norm, coefficient and variance (frame and CSR arrays are in L2).  With
// the scatter (azimuthal and hybrid models, plain integration) a second pass sums VV of the survivors around
// the new mean.
// ---------------------------------------------------------------------------------------------------------
template <typename T, bool DVAR>
__device__ __forceinline__ void load_signal(const Par& P, const T* __restrict__ frame, long long j,
                                            const int* __restrict__ indices, const float* __restrict__ cdark,
                                            const float* __restrict__ cdvar, const float* __restrict__ cgain,
                                            float& s, float& var) {
    const int p = indices[j];
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

template <typename T, bool COEF, bool DVAR>
__global__ void __launch_bounds__(CLIP_BLOCK, 3)
sigma_clip(const T* __restrict__ frames, int nframes, long long npix, int nbins, const int* __restrict__ bin_list,
           const long long* __restrict__ indptr, const int* __restrict__ indices, const float* __restrict__ coef,
           const float* __restrict__ cnorm, const float* __restrict__ cdark, const float* __restrict__ cdvar,
           const float* __restrict__ cgain, const double* __restrict__ par,
           int cycles, double cutoff, int with_scatter, int cap, double* __restrict__ out) {
    __shared__ double red[7 * 32];
    __shared__ double hist[2 * MAX_HIST];
    extern __shared__ double sval[];  // values of the first cap pixels of the bin
    const int f = blockIdx.x % nframes;
    const int b = bin_list[blockIdx.x / nframes];
    const long long start = indptr[b], stop = indptr[b + 1];
    const long long held = min(stop - start, (long long)cap);
    const T* frame = frames + (long long)f * npix;
    const Par P = load_par(par);
    int nh = 0;
    // value, norm, coefficient and variance of pixel j (>= start + held) of the bin, gathered again
    auto gather = [&](long long j, double& value, float& nr, float& c, float& var) {
        float s;
        load_signal<T, DVAR>(P, frame, j, indices, cdark, cdvar, cgain, s, var);
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
        if (t < held) sval[t] = value;
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
            for (long long t = threadIdx.x; t < held; t += CLIP_BLOCK)
                if (!isnan(sval[t])) add(sval[t], cnorm[start + t], COEF ? coef[start + t] : 1.0f);
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
    for (int cyc = 0; cyc < cycles; ++cyc) {
        if (acc[3] == 0.0 || acc[0] == 0.0) break;
        const double mean = acc[1] / acc[3];
        const double std = sqrt((scatter ? acc[6] : acc[2]) / acc[4]);
        const double npx = acc[0] > 3.0 ? acc[0] : 3.0;
        const double chauvenet = sqrt(2.0 * log(npx / sqrt(2.0 * 3.141592653589793)));
        const double limit = (cutoff > chauvenet ? cutoff : chauvenet) * std;
        if (!(limit >= 0.0) || nh == MAX_HIST) break;  // NaN std: the CPU's test discards nothing either
        double y[7] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};  // what the pixels failing the new test contribute
        for (long long t = threadIdx.x; t < held; t += CLIP_BLOCK) {
            const double value = sval[t];
            if (!isnan(value) && fabs(value - mean) > limit) {
                double again;  // == value
                float nr, c, var;
                gather(start + t, again, nr, c, var);
                add_pixel<COEF>(y, value, nr, c, var);
                sval[t] = NAN_D;
            }
        }
        for (long long j = start + held + threadIdx.x; j < stop; j += CLIP_BLOCK) {
            double value;
            float nr, c, var;
            gather(j, value, nr, c, var);
            if (!isnan(value) && in_history(value) && fabs(value - mean) > limit) add_pixel<COEF>(y, value, nr, c, var);
        }
        block_sum<7>(y, red);
        if (y[6] == 0.0) break;  // nothing clipped: the sums stay
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
// integrate.profile_from_sums) and the gap-filled float32 mean/std of pick.filled_background (numpy.interp
// over the valid bins, clamped at the ends, 0 for a frame without any).
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
    }
    __syncthreads();
    float* out_mean = filled + base;
    float* out_std = filled + plane + base;
    for (int b = threadIdx.x; b < nbins; b += blockDim.x) {
        for (int t = 0; t < 2; ++t) {
            const double* fp = t ? std : mean;
            float* dst = t ? out_std : out_mean;
            auto valid = [&](int i) { return isfinite(mean[i]) && isfinite(std[i]); };
            if (valid(b)) { dst[b] = (float)fp[b]; continue; }
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
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Per-pixel excess over the background (peaks.py _excess) and picking test (pick.py _is_kept).
// ---------------------------------------------------------------------------------------------------------
struct Bg {
    const double* mean; const double* std; const double* sem;   // (nframes, nbins) this frame's row
    const float* fmean; const float* fstd;                      // gap-filled, for picking
    int nbins;
};

__device__ __forceinline__ Bg load_bg(const double* prof, const float* filled, int nframes, int nbins, int f) {
    Bg B;
    const long long plane = (long long)nframes * nbins, base = (long long)f * nbins;
    B.mean = prof + base; B.std = prof + plane + base; B.sem = prof + 2 * plane + base;
    B.fmean = filled + base; B.fstd = filled + plane + base;
    B.nbins = nbins;
    return B;
}

// peaks.py _interp
__device__ __forceinline__ double interp_peak(const double* table, double fpos, int nbins) {
    if (fpos <= 0.0) return table[0];
    if (fpos >= nbins - 1) return table[nbins - 1];
    const int i0 = (int)fpos;
    const double w = fpos - i0;
    return table[i0] * (1.0 - w) + table[i0 + 1] * w;
}

// peaks.py _pixel_var: sigma_p^2 = std(r)^2 + noise^2 (float64) at fractional bin position fpos.
__device__ __forceinline__ double pixel_var(const Bg& B, double fpos, double noise) {
    const double sd = interp_peak(B.std, fpos, B.nbins);
    return sd * sd + noise * noise;
}

// Values of the per-pixel mark of the peak finder, as peaks.py (_PEAK is the peak bit mask here).
#define MARK_NONE 0
#define MARK_ZINGER 1
#define MARK_MAYBE 3
#define MARK_STRONG 4

// peaks.py _excess: v = q - bg(r) in float64 with q = s / norm (float32), bg NaN in the bins whose std is not
// finite (find_peaks), returned as float32 (NaN when missing); mark = MARK_STRONG where v > 0 and
// v^2 >= cutoff^2 sigma_p^2 (zinger candidates), MARK_MAYBE where 16 v^2 >= cutoff^2 sigma_p^2 (rule 2e),
// both tested on the float64 v.  fpos = (r - r0) / step, precomputed per pixel, NaN outside the radial range
// or masked.
__device__ __forceinline__ float excess_peak(const Bg& B, float s, float nrm, float q, double fpos, double noise,
                                             double cutoff, unsigned char& mark) {
    mark = MARK_NONE;
    if (isnan(fpos) || !isfinite(s) || !(nrm > 0.0f)) return NAN_F;
    int i0, i1;
    double w;
    if (fpos <= 0.0) { i0 = 0; i1 = 0; w = 0.0; }
    else if (fpos >= B.nbins - 1) { i0 = B.nbins - 1; i1 = B.nbins - 1; w = 0.0; }
    else { i0 = (int)fpos; i1 = i0 + 1; w = fpos - i0; }
    const double b0 = isfinite(B.std[i0]) ? B.mean[i0] : NAN_D;
    const double b1 = isfinite(B.std[i1]) ? B.mean[i1] : NAN_D;
    const double b = b0 * (1.0 - w) + b1 * w;
    if (!isfinite(b)) return NAN_F;
    const double v = (double)q - b;
    if (v > 0.0) {
        const double sd = B.std[i0] * (1.0 - w) + B.std[i1] * w;
        const double v2 = v * v;
        const double t2 = cutoff * cutoff * (sd * sd + noise * noise);
        if (v2 >= t2) mark = MARK_STRONG;
        else if (v2 * 16.0 >= t2) mark = MARK_MAYBE;
    }
    return (float)v;
}

// pick.py _classify: 0 = not picked, 1 = picked, 2 = picked and above the spot threshold (its 8 neighbours are
// kept too).  bg, std: the gap-filled tables; fpos = (r - r0) * inv_step, NaN outside [r_lo, r_hi) or masked;
// invalid pixels are picked when they are overloads.
template <typename T>
__device__ __forceinline__ int pick_state(const Bg& B, const Par& P, T raw, float s, float q, double fpos,
                                          double noise, double cutoff, double spot) {
    if (isnan(fpos)) return 0;
    if (!isfinite(s)) return (double)raw >= P.saturation ? (spot > 0.0 ? 2 : 1) : 0;
    const int last = B.nbins - 1;
    const double x = fmin(fmax(fpos, 0.0), (double)last);
    const int pos = min((int)x, max(last - 1, 0));
    const double frac = x - pos;
    const int nxt = min(pos + 1, last);
    const double excess = (double)q - ((1.0 - frac) * (double)B.fmean[pos] + frac * (double)B.fmean[nxt]);
    if (excess <= noise) return 0;
    const double sd = (1.0 - frac) * (double)B.fstd[pos] + frac * (double)B.fstd[nxt];
    const double sigma2 = sd * sd + noise * noise;
    if (!(excess * excess > cutoff * cutoff * sigma2)) return 0;  // excess > cutoff * sigma, both positive
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

// Pixel pass, one thread per pixel: block (frame, chunk of PIX_BLOCK pixels of a row, row), frames fastest so
// that the blocks of the same pixels share the static arrays in L2.  Each warp is one 32-pixel word of the bit
// masks: picking (pick.py) gives the word by __ballot_sync and its count by __popc (spot_words, when not NULL,
// gets the pixels of state 2 for grow_picks); for peaks it writes the excess v (float32, NaN = missing) and the
// mark of every pixel (peaks.py _excess) for the peak pass.
template <typename T>
__global__ void __launch_bounds__(PIX_BLOCK)
pixel_pass(const T* __restrict__ frames, int nframes, int ny, int nx, int nwords,
           const unsigned char* __restrict__ mask, const float* __restrict__ norm, const float* __restrict__ radius,
           const float* __restrict__ dark, const float* __restrict__ dvar, const float* __restrict__ gmap,
           const double* __restrict__ par, const double* __restrict__ prof, const float* __restrict__ filled,
           int nbins, double pick_noise, double pick_cutoff, double pick_spot, double peak_noise,
           double peak_cutoff, int do_pick, int do_peaks, unsigned int* __restrict__ pick_words,
           unsigned int* __restrict__ spot_words, int* __restrict__ pick_counts, float* __restrict__ out_v,
           unsigned char* __restrict__ out_mark) {
    const int f = blockIdx.x;
    const int row = blockIdx.z;
    const int col = blockIdx.y * PIX_BLOCK + threadIdx.x;
    const long long npix = (long long)ny * nx;
    const T* frame = frames + (long long)f * npix;
    const Par P = load_par(par);
    const Bg B = load_bg(prof, filled, nframes, nbins, f);
    int state = 0;
    if (col < nx) {
        const long long p = (long long)row * nx + col;
        float s, pvar;
        pixel_signal<T>(P, frame, p, mask, dark, dvar, gmap, s, pvar);
        const float nrm = norm[p];
        const float q = s / nrm;
        const float r = radius[p];
        if (do_peaks) {
            unsigned char mark;
            out_v[(long long)f * npix + p] = excess_peak(B, s, nrm, q, peak_position(P, r), peak_noise, peak_cutoff,
                                                         mark);
            out_mark[(long long)f * npix + p] = mark;
        }
        if (do_pick) state = pick_state<T>(B, P, frame[p], s, q, pick_position(P, r), pick_noise, pick_cutoff, pick_spot);
    }
    const unsigned int pw = __ballot_sync(0xffffffffu, state > 0);
    const unsigned int sw = __ballot_sync(0xffffffffu, state > 1);
    const int word = col >> 5;
    if (do_pick && (threadIdx.x & 31) == 0 && word < nwords) {
        const long long w = ((long long)f * ny + row) * nwords + word;
        pick_words[w] = pw;
        pick_counts[w] = __popc(pw);
        if (spot_words) spot_words[w] = sw;
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

// Peak candidates: one block of TILE_W x TILE_H threads per (frame, tile), frames fastest; v and marks of the
// tile and a halo of 2 (the ring that the 3 x 3 test reads, whose zinger flags need the next ring's v) come
// from the pixel pass.  The tile's zinger flags are written back to the marks (each a function of v alone, so
// a neighbouring tile that reads the mark before or after gets the same flag where it uses one), and the cheap
// tests of peaks.py (rule 2e, 3 x 3 local maximum: peak_candidate) give one bit-mask word per warp and its
// count.  At most one pixel in four is a candidate (no two neighbours are both 3 x 3 maxima).
__global__ void __launch_bounds__(TILE_W * TILE_H)
peak_candidates(int nframes, int ny, int nx, int nwords, const float* __restrict__ in_v,
                unsigned char* __restrict__ marks, double min_spread, unsigned int* __restrict__ cand_words,
                int* __restrict__ cand_counts) {
    const int G = 2;
    const int W = TILE_W + 2 * G, HH = TILE_H + 2 * G;
    __shared__ float sv[HH * W];
    __shared__ unsigned char sm[HH * W];
    const int f = blockIdx.x % nframes;
    const int tile = blockIdx.x / nframes;
    const int tx = tile % nwords, ty = tile / nwords;
    const int col0 = tx * TILE_W, row0 = ty * TILE_H;
    const long long base = (long long)f * ny * nx;
    for (int e = threadIdx.x; e < HH * W; e += blockDim.x) {
        const int r = row0 - G + e / W, c = col0 - G + e % W;
        const bool in = r >= 0 && r < ny && c >= 0 && c < nx;
        sv[e] = in ? in_v[base + (long long)r * nx + c] : NAN_F;
        sm[e] = in ? marks[base + (long long)r * nx + c] : (unsigned char)MARK_NONE;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < HH * W; e += blockDim.x) {  // zinger flags: each reads v and its own mark
        const int lr = e / W, lc = e % W;
        if (lr >= 1 && lr < HH - 1 && lc >= 1 && lc < W - 1 && sm[e] == MARK_STRONG && is_zinger(sv, W, lr, lc, min_spread)) {
            sm[e] = MARK_ZINGER;
            const int r = row0 - G + lr, c = col0 - G + lc;
            if (lr >= G && lr < G + TILE_H && lc >= G && lc < G + TILE_W && r < ny && c < nx)
                marks[base + (long long)r * nx + c] = MARK_ZINGER;
        }
    }
    __syncthreads();
    const int lr = threadIdx.x / TILE_W, lc = threadIdx.x % TILE_W;  // warp lr, lane lc
    const int row = row0 + lr, col = col0 + lc;
    const bool candidate = row < ny && col < nx && peak_candidate(sv, sm, W, lr + G, lc + G);
    const unsigned int ballot = __ballot_sync(0xffffffffu, candidate);
    if (lc == 0 && row < ny) {
        const long long w = ((long long)f * ny + row) * nwords + tx;
        cand_words[w] = ballot;
        cand_counts[w] = __popc(ballot);
    }
}

// Peak confirmation, grid-stride over the listed candidates (at: frame * ny * nx + pixel; *total of them, in
// device memory): peak_confirm on a 5 x 5 window of v and marks (zinger flags final), sigma_p^2 from the
// pixel's radius; a peak sets its bit in peak_words and counts itself in peak_counts (both zeroed before).
template <int H>
__global__ void confirm_peaks(const long long* __restrict__ total, long long capacity, const long long* __restrict__ at,
                              int nframes, int ny, int nx, int nwords, const float* __restrict__ in_v,
                              const unsigned char* __restrict__ marks, const float* __restrict__ norm,
                              const float* __restrict__ radius, const double* __restrict__ par,
                              const double* __restrict__ prof, const float* __restrict__ filled, int nbins,
                              double peak_noise, double peak_cutoff, double spread_snr, double min_spread,
                              int reject, unsigned int* __restrict__ peak_words, int* __restrict__ peak_counts) {
    const int R = 2, WW = 2 * R + 1;
    const long long n = *total < capacity ? *total : capacity;
    const long long npix = (long long)ny * nx;
    const Par P = load_par(par);
    for (long long pos = (long long)blockIdx.x * blockDim.x + threadIdx.x; pos < n;
         pos += (long long)gridDim.x * blockDim.x) {
        const int f = (int)(at[pos] / npix);
        const long long p = at[pos] - f * npix;
        const int i = (int)(p / nx), j = (int)(p % nx);
        float wv[WW * WW];
        unsigned char wm[WW * WW];
#pragma unroll
        for (int a = 0; a < WW; ++a)
#pragma unroll
            for (int b = 0; b < WW; ++b) {
                const int ii = i - R + a, jj = j - R + b;
                const bool in = ii >= 0 && ii < ny && jj >= 0 && jj < nx;
                const long long q = (long long)f * npix + (long long)ii * nx + jj;
                wv[a * WW + b] = in ? in_v[q] : NAN_F;
                wm[a * WW + b] = in ? marks[q] : (unsigned char)MARK_NONE;
            }
        const Bg B = load_bg(prof, filled, nframes, nbins, f);
        auto var_at = [&](int di, int dj) {
            return pixel_var(B, peak_position(P, radius[p + (long long)di * nx + dj]), peak_noise);
        };
        if (peak_confirm<H>(wv, wm, WW, R, R, peak_cutoff, spread_snr, min_spread, reject != 0, norm[p], var_at)) {
            const long long w = ((long long)f * ny + i) * nwords + (j >> 5);
            atomicOr(&peak_words[w], 1u << (j & 31));
            atomicAdd(&peak_counts[w], 1);
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

// One thread per word: writes the flat index and the raw (minus dark) value of each picked pixel at its
// compacted position (inclusive scan minus the word's own count), in index order within each frame.
template <typename T>
__global__ void emit_picks(const T* __restrict__ frames, long long nwords_total, int ny, int nx, int nwords,
                           const unsigned int* __restrict__ words, const long long* __restrict__ scan,
                           const float* __restrict__ dark, int is_integer, double lo, double hi,
                           long long capacity, unsigned int* __restrict__ out_index, T* __restrict__ out_value) {
    const long long w = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (w >= nwords_total) return;
    unsigned int word = words[w];
    if (!word) return;
    long long pos = scan[w] - __popc(word);
    const long long per_frame = (long long)ny * nwords;
    const long long f = w / per_frame;
    const long long rem = w - f * per_frame;
    const int row = (int)(rem / nwords), wx = (int)(rem % nwords);
    const T* frame = frames + f * (long long)ny * nx;
    while (word) {
        const int j = __ffs(word) - 1;
        word &= word - 1;
        const long long p = (long long)row * nx + wx * 32 + j;
        if (pos < capacity) {
            out_index[pos] = (unsigned int)p;
            if (dark) {
                double value = (double)frame[p] - (double)dark[p];
                if (is_integer) value = fmin(fmax(floor(value + 0.5), lo), hi);
                out_value[pos] = (T)value;
            } else {
                out_value[pos] = frame[p];
            }
        }
        ++pos;
    }
}

// One thread per word holding peaks: the flat index of each peak at its compacted position, in index order
// within each frame; `at` gets frame * ny * nx + index for the measuring kernel.
__global__ void emit_peak_index(long long nwords_total, int ny, int nx, int nwords,
                                const unsigned int* __restrict__ words, const long long* __restrict__ scan,
                                long long capacity, long long* __restrict__ out_index, long long* __restrict__ at) {
    const long long w = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (w >= nwords_total) return;
    unsigned int word = words[w];
    if (!word) return;
    long long pos = scan[w] - __popc(word);
    const long long per_frame = (long long)ny * nwords;
    const long long f = w / per_frame;
    const long long rem = w - f * per_frame;
    const int i = (int)(rem / nwords), wx = (int)(rem % nwords);
    while (word) {
        const int jb = __ffs(word) - 1;
        word &= word - 1;
        const long long p = (long long)i * nx + wx * 32 + jb;
        if (pos < capacity) {
            out_index[pos] = p;
            at[pos] = f * ny * nx + p;
        }
        ++pos;
    }
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
              const float* __restrict__ norm, const float* __restrict__ radius,
              const float* __restrict__ dark, const float* __restrict__ dvar,
              const float* __restrict__ gmap, const double* __restrict__ dspacing,
              const double* __restrict__ par, const double* __restrict__ prof,
              const float* __restrict__ filled, int nbins, const float* __restrict__ in_v,
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
        const Bg B = load_bg(prof, filled, nframes, nbins, f);
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
        const double fpos = peak_position(P, radius[p]);
        const double s_bg = interp_peak(B.sem, fpos, nbins);
        variance_sum += scale_sum * scale_sum * s_bg * s_bg;
        const double g0 = gmap ? (double)gmap[p] : P.gain;
        double* o = out_f + pos * 7;
        o[0] = row;
        o[1] = col;
        o[2] = total;
        o[3] = sqrt(variance_sum);
        o[4] = (double)(sv[G * S + G] * norm[p]) * g0;
        o[5] = interp_peak(B.mean, fpos, nbins) * (double)norm[p] * g0;
        if (dspacing) {
            o[6] = dspacing[(long long)ci * nx + cj];
        } else {
            o[6] = NAN_D;
        }
        out_npix[pos] = npix;
    }
}
"""
