"""CUDA C source of the GPU engine's kernels, compiled at run time by NVRTC through ``cupy.RawModule``.

Every kernel mirrors, operation for operation, the numba code of the CPU engine, so that both give the same
numbers: ``preprocess_value`` is engine/corrections.py's ``_preprocess_kernel``; ``sigma_clip`` is
engine/integrate.py's ``_sigma_clip_kernel`` (the same decisions; float64 sums in another order, with V and P
formed as sum c s and sum w c s, equal to the CPU's up to rounding: relative 1e-16); ``background_tables`` is
integrate.py's ``profile_from_sums`` and pick.py's ``filled_background`` (numpy.interp);
``tile_pass``/``grow_picks``/``emit_picks`` are pick.py's ``_classify``/``_is_kept``/``_fill_rows``;
``tile_pass``/``measure_peaks`` are peaks.py's ``_excess``/``_flag_zingers``/``_mark_peaks``/``_measure_peaks``/
``_centroid``.  The module is compiled with ``--fmad=false`` so that ``a * b + c`` is rounded twice, as on the
CPU.

Layouts: frames ``(nframes, ny, nx)`` in the raw dtype; per-pixel static data flat ``(ny * nx,)`` (``PixelStatic``
records: norm, slot, weight); CSR static arrays in CSR order (statically masked entries and zero coefficients
removed beforehand); per-bin sums ``(NSUMS, nframes, nbins)`` and background tables ``(nframes, nbins, NTAB)``;
bit masks of picked pixels and peaks ``(nframes, ny, nwords)`` uint32 with ``nwords = ceil(nx / 32)``, bit ``j``
of word ``w`` being column ``32 w + j``.

Scalar correction parameters travel in a float64 array ``par`` (see ``PAR_*`` below and engine.py); each pixel's
place between the bin centres is its slot and weight from engine/csr.py's ``bin_slots``.
"""
from ..csr import SLOT_BIN, SLOT_CLAMPED, SLOT_MASKED, SLOT_PICK_OUT

# Indices into the float64 parameter array ``par`` shared by the kernels.
(PAR_GAIN, PAR_DUMMY, PAR_DELTA_DUMMY, PAR_CHECK_DUMMY, PAR_SATURATION, PAR_NMARKERS, PAR_MARKER0,
 PAR_MARKER1) = range(8)
NPAR = 8

# Rows of the per-(frame, bin) sums, as engine/integrate.py: count, V, W, Omega, OmegaOmega, P, VV.
NSUMS = 7

# Per-(frame, bin) background tables of background_tables, NTAB float64 values a bin (prof (nframes, nbins,
# NTAB)): the peak finder's mean (NaN where std is not finite) and std, picking's gap-filled mean and std (its
# float32 values), then mean and sem; the first four are read together, two 16-byte loads a bin.
TAB_PMEAN, TAB_STD, TAB_FMEAN, TAB_FSTD, TAB_MEAN, TAB_SEM = range(6)
NTAB = 8

# Peak measurement rows of the float64 output, as engine/peaks.py: row, col, intensity, sigma, max, bg, res.
NPEAKF = 7

SOURCE = f"""
#define SLOT_BIN {SLOT_BIN}
#define SLOT_CLAMPED {SLOT_CLAMPED}
#define SLOT_PICK_OUT {SLOT_PICK_OUT}
#define SLOT_MASKED {SLOT_MASKED}
#define NTAB {NTAB}
#define TAB_PMEAN {TAB_PMEAN}
#define TAB_STD {TAB_STD}
#define TAB_FMEAN {TAB_FMEAN}
#define TAB_FSTD {TAB_FSTD}
#define TAB_MEAN {TAB_MEAN}
#define TAB_SEM {TAB_SEM}
""" + r"""
#define NAN_F __int_as_float(0x7fc00000)
#define INF_F __int_as_float(0x7f800000)
#define NAN_D __longlong_as_double(0x7ff8000000000000LL)

struct Par {
    double gain, dummy, delta_dummy, saturation, m0, m1;
    bool check_dummy;
    int nmarkers;
    // for integer frames: raw is below the saturation when raw < below, a marker when raw == k0 or k1
    long long below, k0, k1;
};

#define LL_MIN (-9223372036854775807LL - 1)
#define LL_MAX 9223372036854775807LL

// The integer equal to marker m when there is one (a raw integer value r then satisfies (double)r == m exactly
// when r == the integer), else LL_MIN, which no 32-bit value equals.
__device__ __forceinline__ long long integer_marker(bool used, double m) {
    return used && m == floor(m) && fabs(m) < 4e18 ? (long long)m : LL_MIN;
}

__device__ __forceinline__ Par load_par(const double* __restrict__ par) {
    Par P;
    P.gain = par[0]; P.dummy = par[1]; P.delta_dummy = par[2]; P.check_dummy = par[3] != 0.0;
    P.saturation = par[4]; P.nmarkers = (int)par[5]; P.m0 = par[6]; P.m1 = par[7];
    // (double)r < saturation  <=>  r < ceil(saturation) for an integer r (none below NaN, all below +inf)
    const double sat = P.saturation;
    P.below = !(sat > -4e18) ? LL_MIN : (sat > 4e18 ? LL_MAX : (long long)ceil(sat));
    P.k0 = integer_marker(P.nmarkers > 0, P.m0);
    P.k1 = integer_marker(P.nmarkers > 1, P.m1);
    return P;
}

template <typename T> struct IsInteger { static constexpr bool value = true; };
template <> struct IsInteger<float> { static constexpr bool value = false; };

// Static data of one pixel, 16 bytes (engine.py _Static.pix): its norm (float32, > 0 where unmasked), its slot
// (engine/csr.py bin_slots, -1 outside the peak finder's radial range, with SLOT_MASKED where the corrections
// mask the pixel) and the upper bin's weight of its place.
struct __align__(16) PixelStatic {
    float norm;
    int slot;
    double w;
};

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

// Table k of a frame's background (tab: the frame's (nbins, NTAB) rows) at place X.
__device__ __forceinline__ double interp(const double* __restrict__ tab, const Pos& X, int k) {
    return tab[X.i0 * NTAB + k] * (1.0 - X.w) + tab[X.i1 * NTAB + k] * X.w;
}

// The first four tables (TAB_PMEAN, TAB_STD; TAB_FMEAN, TAB_FSTD) of bin i in two 16-byte loads, from the frame's
// tables in device memory (GlobalBins: rows of NTAB doubles) or from a tile's copy of bins lo, lo + 1, ... in
// shared memory (SharedBins: two double2 a bin), so that the compiler emits shared-memory loads for the latter.
struct GlobalBins {
    const double* rows;
};

struct SharedBins {
    const double2* rows;
    int lo;
};

__device__ __forceinline__ void load_bin(const GlobalBins& t, int i, double2& peak, double2& pick) {
    const double2* row = reinterpret_cast<const double2*>(t.rows + i * NTAB);
    peak = row[0];
    pick = row[1];
}

__device__ __forceinline__ void load_bin(const SharedBins& t, int i, double2& peak, double2& pick) {
    peak = t.rows[2 * (i - t.lo)];
    pick = t.rows[2 * (i - t.lo) + 1];
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
// For integer frames the tests are made on the integer (see Par): the same decisions.
template <typename T>
__device__ __forceinline__ void preprocess_plain(const Par& P, T raw, bool masked, float& s, float& var) {
    bool valid;
    if constexpr (IsInteger<T>::value) {
        const long long r = (long long)raw;
        valid = !masked && r < P.below && r != P.k0 && r != P.k1;
    } else {
        const double value = (double)raw;
        valid = !masked && isfinite(value) && value < P.saturation;
        if (P.nmarkers > 0 && value == P.m0) valid = false;
        if (P.nmarkers > 1 && value == P.m1) valid = false;
    }
    s = valid ? (float)raw : NAN_F;
    var = valid ? fmaxf(1.0f, s) : NAN_F;
}

// Signal and variance of flat pixel p of a frame (raw value raw), with the static arrays in flat order.
template <typename T, bool PLAIN>
__device__ __forceinline__ void pixel_signal(const Par& P, T raw, int p, bool masked, const float* __restrict__ dark,
                                             const float* __restrict__ dvar, const float* __restrict__ gmap,
                                             float& s, float& var) {
    if (PLAIN)
        preprocess_plain<T>(P, raw, masked, s, var);
    else
        preprocess_value<T>(P, raw, masked, dark != nullptr, dark ? dark[p] : 0.0f, dvar != nullptr,
                            dvar ? dvar[p] : 0.0f, gmap ? (double)gmap[p] : P.gain, s, var);
}

// p itself, through an empty asm that the compiler cannot see through: a block's frame pointer then stays in
// registers, each pixel's address one multiply-add from it, instead of its 64-bit offset being folded into every
// address (several instructions per access).  The compiler no longer knows that p points to global memory: read
// through it with __ldg.
template <typename P>
__device__ __forceinline__ const P* opaque(const P* p) {
    asm("" : "+l"(p));
    return p;
}

// 1 / x within 1 ulp (PTX rcp.approx.ftz.f32) for x whose reciprocal is a normal number: one MUFU instruction.
__device__ __forceinline__ float approx_rcp(float x) {
    float r;
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
}

// s / norm (float32, as the CPU) for norm > 0; a NaN or zero s, for which the division would take its slow
// path, gives s itself (NaN, or 0 / norm = s).  The branch matters: masked pixels (NaN s) may have norm 0, and
// dividing every pixel cost the tile pass 5 us an Eiger 4M frame (H100).
__device__ __forceinline__ float quotient(float s, float norm) { return isnan(s) || s == 0.0f ? s : s / norm; }

// Whether a pixel with this slot is masked (or outside the radial range, where nothing reads its signal).
__device__ __forceinline__ bool slot_masked(int sl) { return sl < 0 || (sl & SLOT_MASKED); }

// Sums x[0..N) over a block of BLOCK threads into thread 0 (the other threads' x are left holding partial sums).
// part: N * 32 doubles of shared memory, which the caller must not write again before a barrier has followed warp
// 0's reading of it.  A warp none of whose lanes has `nonzero` set (all its x are +0.0) skips its reduction and
// contributes +0.0, which is what the reduction would give.  Warp 0 adds the BLOCK / 32 partial sums in a tree of
// log2(BLOCK / 32) steps; the final + 0.0 turns a -0.0 total into the +0.0 that the CPU's sum from 0.0 gives.
template <int BLOCK, int N>
__device__ __forceinline__ void block_totals(double (&x)[N], double* part, bool nonzero = true) {
    constexpr int NWARPS = BLOCK / 32;
    static_assert(BLOCK % 32 == 0 && (NWARPS & (NWARPS - 1)) == 0, "a power-of-two number of warps");
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (__any_sync(0xffffffffu, nonzero)) {
#pragma unroll
        for (int i = 0; i < N; ++i)
            for (int o = 16; o > 0; o >>= 1) x[i] += __shfl_xor_sync(0xffffffffu, x[i], o);
    }
    if (lane == 0) {
#pragma unroll
        for (int i = 0; i < N; ++i) part[i * 32 + warp] = x[i];
    }
    __syncthreads();
    if (warp == 0) {
#pragma unroll
        for (int i = 0; i < N; ++i) {
            double y = lane < NWARPS ? part[i * 32 + lane] : 0.0;
#pragma unroll
            for (int o = NWARPS / 2; o > 0; o >>= 1) y += __shfl_xor_sync(0xffffffffu, y, o);
            x[i] = y + 0.0;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Sigma-clipping: one block of BLOCK threads per (frame, bin of bin_list), frames fastest so that the blocks of
// one bin share the static CSR arrays in L2 (BLOCK: engine.py's CLIP_BLOCK, or CLIP_SMALL_BLOCK for the classes
// of small bins, whose blocks then fit more of their serial cycle decisions side by side).  The gather
// preprocesses each pixel and adds it to the bin's float64 sums; the first `cap` pixels of the bin (cap a
// multiple of 4) keep a float32 copy of their value = signal / norm (NaN when invalid or clipped) in shared
// memory, 4 bytes a pixel, the launch being sized for its class of bins; pixels beyond `cap` (bins larger than
// shared memory) are gathered again at each pass and tested against the history of (mean, limit).
// Thread 0 holds the bin's sums and decides each cycle's mean and limit, with float32 bounds around them: a
// copy inside the inner bounds is in, one outside the outer bounds is out, and only a copy between them (within
// about 4e-6 of the limit) has its float64 value gathered again and tested as the CPU tests it, so every decision
// is the CPU's.  The pixels that fail are gathered again and their sums subtracted from the bin's (the CPU sums
// the survivors again: the same up to float64 rounding, relative 1e-16 of the removed part); the sum P, which no
// decision reads, is kept per thread and added up once at the end.  With the scatter (azimuthal and hybrid
// models, plain integration) a second pass sums VV of the survivors around the new mean.
// ---------------------------------------------------------------------------------------------------------
template <typename T, bool DVAR, bool PLAIN>
__device__ __forceinline__ void entry_signal(const Par& P, T raw, int j, const float* __restrict__ cdark,
                                             const float* __restrict__ cdvar, const float* __restrict__ cgain,
                                             float& s, float& var) {
    pixel_signal<T, PLAIN>(P, raw, j, false, cdark, DVAR ? cdvar : nullptr, cgain, s, var);
    if (isnan(var)) s = NAN_F;
}

// Sums of a bin, as engine/integrate.py's NSUMS rows: count, V, W, Omega, OmegaOmega, and (with pixel
// splitting, where count is the sum of the coefficients) the number of pixels; P goes to p.  V = sum c s and
// P = sum w c s equal the CPU's sum value w and sum w^2 value (value = s / norm, w = c norm) up to rounding.
template <bool COEF>
struct ClipSums {
    static constexpr int N = COEF ? 6 : 5;
};

// Adds one pixel to x and returns its part of P.  Without `in`, every term is +0.0, which leaves each sum as it
// is (the sums start at +0.0): no branch needed.
template <bool COEF>
__device__ __forceinline__ double add_pixel(double (&x)[ClipSums<COEF>::N], float s, float var, float nr, float c,
                                            bool in = true) {
    const double cc = in ? (COEF ? (double)c : 1.0) : 0.0;
    const double w = cc * (double)(in ? nr : 0.0f);
    const double cs = cc * (double)(in ? s : 0.0f);
    x[0] += cc;
    x[1] += cs;
    x[2] += cc * cc * (double)(in ? var : 0.0f);
    x[3] += w;
    x[4] += w * w;
    if (COEF) x[ClipSums<COEF>::N - 1] += in ? 1.0 : 0.0;
    return w * cs;
}

// A CSR entry of the clipping kernel, 8 bytes (engine.py _Static.entries): the flat pixel index and its norm.
struct __align__(8) CsrEntry {
    int index;
    float norm;
};

// chauvenet: without pixel splitting (the count of a bin is then its number of pixels), Chauvenet's factor of
// n pixels at [n] (engine/integrate.py chauvenet_factors: the CPU's very numbers), n up to the largest bin.
template <typename T, bool COEF, bool DVAR, bool PLAIN, int BLOCK>
__global__ void __launch_bounds__(BLOCK, CLIP_MIN_BLOCKS * CLIP_BLOCK / BLOCK)
sigma_clip(const T* __restrict__ frames, int nframes, long long npix, int nbins, const int* __restrict__ bin_list,
           const long long* __restrict__ indptr, const CsrEntry* __restrict__ entries,
           const float* __restrict__ coef, const float* __restrict__ cdark, const float* __restrict__ cdvar,
           const float* __restrict__ cgain, const double* __restrict__ par, const double* __restrict__ chauvenet,
           int cycles, double cutoff, int with_scatter, int cap, double* __restrict__ out) {
    constexpr int N = ClipSums<COEF>::N;
    __shared__ double part[N * 32];
    __shared__ double hist[2 * MAX_HIST];
    __shared__ double cycle_limits[2];  // mean and limit of the cycle (or the mean of a scatter pass)
    __shared__ float cycle_bounds[4];   // copies in [0], [1] are in; below [2] or above [3] out
    __shared__ int cycle_go;
    // thread 0's state: the sums of the pixels still in, their VV, their number, whether the last cycle clipped
    // nothing (in shared memory, not in the registers of every thread)
    __shared__ double acc[N], vv, alive;
    __shared__ bool converged;
    extern __shared__ float sval[];  // float32 copies of the values of the first cap pixels (NaN: out)
    const int f = blockIdx.x % nframes;
    const int b = bin_list[blockIdx.x / nframes];
    const long long start = indptr[b];
    const int size = (int)(indptr[b + 1] - start), held = min(size, cap);  // entry j of the bin: start + j
    const T* frame = opaque(frames + (long long)f * npix);
    entries += start;
    if (COEF) coef += start;
    if (cdark) cdark += start;
    if (DVAR) cdvar += start;
    if (cgain) cgain += start;
    const Par P = load_par(par);
    const bool lead = threadIdx.x == 0;
    const bool scatter = with_scatter != 0;  // azimuthal and hybrid clip with the scatter VV
    int nh = 0;  // cycles run: their (mean, limit) are in hist
    // signal (NaN when invalid), variance and coefficient of entry j of the bin, whose raw value is raw
    auto signal = [&](int j, T raw, float& s, float& var, float& c) {
        entry_signal<T, DVAR, PLAIN>(P, raw, j, cdark, cdvar, cgain, s, var);
        c = COEF ? coef[j] : 1.0f;
        if (!DVAR) var = 1.0f > s ? 1.0f : s;
    };
    // the same and its norm, gathered
    auto gather = [&](int j, float& s, float& var, float& nr, float& c) {
        const CsrEntry e = entries[j];
        signal(j, __ldg(frame + e.index), s, var, c);
        nr = e.norm;
    };
    auto in_history = [&](double value) -> bool {  // passes every earlier cycle's test
        for (int h = 0; h < nh; ++h)
            if (fabs(value - hist[2 * h]) > hist[2 * h + 1]) return false;
        return true;
    };
    double x[N], p = 0.0;  // the first pass: every valid pixel (p: this thread's part of P)
#pragma unroll
    for (int i = 0; i < N; ++i) x[i] = 0.0;
    for (int t0 = threadIdx.x; t0 < size; t0 += CLIP_BATCH * BLOCK) {
        // the batch's loads first, indices then values, so that their latencies overlap
        int at[CLIP_BATCH];
        float norms[CLIP_BATCH];
        T raw[CLIP_BATCH];
#pragma unroll
        for (int u = 0; u < CLIP_BATCH; ++u) {
            const int t = t0 + u * BLOCK;
            const CsrEntry e = t < size ? entries[t] : CsrEntry{-1, 1.0f};
            at[u] = e.index;
            norms[u] = e.norm;
        }
#pragma unroll
        for (int u = 0; u < CLIP_BATCH; ++u) raw[u] = at[u] >= 0 ? __ldg(frame + at[u]) : (T)0;
#pragma unroll
        for (int u = 0; u < CLIP_BATCH; ++u) {
            const int t = t0 + u * BLOCK;
            float s, var, c;
            const float nr = norms[u];
            signal(t, raw[u], s, var, c);
            // the copy: within 1.5 ulp for norms of the normal range (approx_rcp); others decide in float64
            const float copy = s * approx_rcp(nr);
            if (t < held) sval[t] = isnan(s) ? NAN_F : ((nr >= 1.2e-38f && nr <= 8.0e37f) ? copy : INF_F);
            p += add_pixel<COEF>(x, s, var, nr, c, t < size && !isnan(s));
        }
    }
    // NaN padding up to a multiple of 4 copies, which the cycles read four at a time (within cap)
    const int quads_held = (held + 3) >> 2;
    for (int t = held + threadIdx.x; t < 4 * quads_held; t += BLOCK) sval[t] = NAN_F;
    block_totals<BLOCK, N>(x, part);
    if (lead) {
#pragma unroll
        for (int i = 0; i < N; ++i) acc[i] = x[i];
        alive = COEF ? acc[N - 1] : acc[0];
        vv = NAN_D;
        converged = false;
    }
    // VV of the pixels still in around their mean, into thread 0 (needs a barrier since thread 0 last wrote
    // cycle_limits, and leaves warp 0 reading part)
    auto spread = [&]() -> double {
        if (lead) cycle_limits[0] = acc[3] > 0.0 ? acc[1] / acc[3] : NAN_D;
        __syncthreads();
        const double m = cycle_limits[0];
        double y[1] = {0.0};
        if (!isnan(m)) {
            auto add = [&](float s, float nr, float c) {
                const double w = (COEF ? (double)c : 1.0) * (double)nr;
                const double d = (double)s / (double)nr - m;
                y[0] += w * w * d * d;
            };
            for (int t = threadIdx.x; t < size; t += BLOCK) {
                if (t < held && isnan(sval[t])) continue;
                float s, var, nr, c;
                gather(t, s, var, nr, c);
                if (t < held || (!isnan(s) && in_history((double)s / (double)nr))) add(s, nr, c);
            }
        }
        block_totals<BLOCK, 1>(y, part);
        return y[0];
    };
    if (scatter) {
        const double total = spread();
        if (lead) vv = total;
    }
    for (int cyc = 0;; ++cyc) {
        if (lead) {  // the cycle's mean and limit, the same for every thread: computed once
            int go = !converged && cyc < cycles && acc[3] != 0.0 && acc[0] != 0.0 && nh < MAX_HIST;
            if (go) {
                const double std = sqrt((scatter ? vv : acc[2]) / acc[4]);
                const double npx = acc[0] > 3.0 ? acc[0] : 3.0;
                const double factor = COEF ? sqrt(2.0 * log(npx / sqrt(2.0 * 3.141592653589793)))
                                           : chauvenet[(int)acc[0]];
                const double mean = acc[1] / acc[3];
                const double limit = (cutoff > factor ? cutoff : factor) * std;
                go = limit >= 0.0;  // NaN std: the CPU's test discards nothing either
                if (go) {
                    // a copy lies within 2^-22 of its value (relative; + 3e-45 for subnormal ones), far inside
                    // the margin: the inner and outer bounds lie `margin` inside and outside the limit, rounded
                    // towards the limit's side that keeps them safe
                    const double margin = 4e-6 * (fabs(mean) + limit) + 1e-30;
                    cycle_limits[0] = mean;
                    cycle_limits[1] = limit;
                    cycle_bounds[0] = __double2float_ru(mean - limit + margin);
                    cycle_bounds[1] = __double2float_rd(mean + limit - margin);
                    cycle_bounds[2] = __double2float_rd(mean - limit - margin);
                    cycle_bounds[3] = __double2float_ru(mean + limit + margin);
                    hist[2 * nh] = mean;
                    hist[2 * nh + 1] = limit;
                }
            }
            cycle_go = go;
        }
        __syncthreads();
        if (!cycle_go) break;
        const float in_lo = cycle_bounds[0], in_hi = cycle_bounds[1];
        double y[N];  // what the pixels failing the new test contribute
#pragma unroll
        for (int i = 0; i < N; ++i) y[i] = 0.0;
        bool removed_any = false;
        // the copies, four at a time (quad k: copies 4k .. 4k + 3), 8 quads a thread per round: the copies outside
        // the inner bounds (and not NaN: out already, or padding) are flagged in a word, then (rarely) tested in
        // float64 and removed, outside the scanning loop
        const float4* quads = reinterpret_cast<const float4*>(sval);
        for (int k0 = threadIdx.x; k0 < quads_held; k0 += 8 * BLOCK) {
            unsigned int flagged = 0u;  // bit 4 i + u: copy u of quad k0 + i BLOCK
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                const int k = k0 + i * BLOCK;
                const float4 four = quads[min(k, quads_held - 1)];  // quads beyond the last: read, not flagged
                const float copies[4] = {four.x, four.y, four.z, four.w};
                unsigned int nibble = 0u;
#pragma unroll
                for (int u = 0; u < 4; ++u) nibble |= (unsigned int)(copies[u] < in_lo || copies[u] > in_hi) << u;
                flagged |= (k < quads_held ? nibble : 0u) << (4 * i);
            }
            for (; flagged; flagged &= flagged - 1u) {
                const int bit = __ffs(flagged) - 1;
                const int t = 4 * (k0 + (bit >> 2) * BLOCK) + (bit & 3);
                const float copy = sval[t];
                float s, var, nr, c;
                gather(t, s, var, nr, c);
                // the outer bounds, mean and limit read here, on this rare path, not kept in registers
                const bool out = (fabsf(copy) < INF_F && (copy < cycle_bounds[2] || copy > cycle_bounds[3]))
                                 || fabs((double)s / (double)nr - cycle_limits[0]) > cycle_limits[1];
                if (out) {
                    p -= add_pixel<COEF>(y, s, var, nr, c);
                    removed_any = true;
                    sval[t] = NAN_F;
                }
            }
        }
        for (int j = held + threadIdx.x; j < size; j += BLOCK) {
            float s, var, nr, c;
            gather(j, s, var, nr, c);
            if (isnan(s)) continue;
            const double value = (double)s / (double)nr;
            if (in_history(value) && fabs(value - cycle_limits[0]) > cycle_limits[1]) {
                p -= add_pixel<COEF>(y, s, var, nr, c);
                removed_any = true;
            }
        }
        block_totals<BLOCK, N>(y, part, removed_any);
        ++nh;
        if (lead) {
            const double removed = COEF ? y[N - 1] : y[0];
            converged = removed == 0.0;
            if (!converged) {
                alive -= removed;
#pragma unroll
                for (int i = 0; i < N; ++i) acc[i] = alive > 0.0 ? acc[i] - y[i] : 0.0;
            }
        }
        if (scatter) {
            if (lead) cycle_go = !converged;
            __syncthreads();  // also: warp 0 has read part
            if (!cycle_go) break;
            const double total = spread();
            if (lead) vv = total;
        }
    }
    double pt[1] = {p};
    block_totals<BLOCK, 1>(pt, part);
    if (lead) {
        const long long plane = (long long)nframes * nbins, at = (long long)f * nbins + b;
        const bool any = alive > 0.0;
        for (int i = 0; i < 5; ++i) out[i * plane + at] = acc[i];
        out[5 * plane + at] = any ? pt[0] : 0.0;
        out[6 * plane + at] = scatter ? vv : NAN_D;
    }
}

// ---------------------------------------------------------------------------------------------------------
// Background tables from the sums, one block per frame, into prof (nframes, nbins, NTAB): mean, std, sem (float64,
// NaN for empty bins, as integrate.profile_from_sums), the peak finder's mean (NaN where std is not finite), and
// the gap-filled mean/std of pick.filled_background (numpy.interp over the valid bins, clamped at the ends, 0 for
// a frame without any) as float32 into filled (2, nframes, nbins), widened again to float64 in prof.
// ---------------------------------------------------------------------------------------------------------
__global__ void background_tables(const double* __restrict__ sums, int nframes, int nbins, int spread_row,
                                  const double* __restrict__ radial, double* __restrict__ prof,
                                  float* __restrict__ filled) {
    const int f = blockIdx.x;
    const long long plane = (long long)nframes * nbins;
    const long long base = (long long)f * nbins;
    double* tab = prof + base * NTAB;
    for (int b = threadIdx.x; b < nbins; b += blockDim.x) {
        const double count = sums[0 * plane + base + b], signal = sums[1 * plane + base + b];
        const double norm = sums[3 * plane + base + b], norm2 = sums[4 * plane + base + b];
        const double spread = sums[spread_row * plane + base + b];
        double* row = tab + b * NTAB;
        if (count > 0.0 && norm2 > 0.0) {
            row[TAB_MEAN] = signal / norm;
            row[TAB_STD] = sqrt(spread / norm2);
            row[TAB_SEM] = sqrt(spread) / norm;
        } else {
            row[TAB_MEAN] = NAN_D; row[TAB_STD] = NAN_D; row[TAB_SEM] = NAN_D;
        }
        row[TAB_PMEAN] = isfinite(row[TAB_STD]) ? row[TAB_MEAN] : NAN_D;
    }
    __syncthreads();
    auto valid = [&](int i) { return isfinite(tab[i * NTAB + TAB_MEAN]) && isfinite(tab[i * NTAB + TAB_STD]); };
    for (int b = threadIdx.x; b < nbins; b += blockDim.x) {
        for (int t = 0; t < 2; ++t) {
            const int k = t ? TAB_STD : TAB_MEAN;
            auto fp = [&](int i) { return tab[i * NTAB + k]; };
            float* dst = filled + t * plane + base;
            double r;
            if (valid(b)) {
                r = fp(b);
            } else {
                int lo = b - 1, hi = b + 1;
                while (lo >= 0 && !valid(lo)) --lo;
                while (hi < nbins && !valid(hi)) ++hi;
                if (lo < 0 && hi >= nbins) r = 0.0;
                else if (lo < 0) r = fp(hi);
                else if (hi >= nbins) r = fp(lo);
                else {
                    const double slope = (fp(hi) - fp(lo)) / (radial[hi] - radial[lo]);
                    r = slope * (radial[b] - radial[lo]) + fp(lo);
                    if (isnan(r)) {
                        r = slope * (radial[b] - radial[hi]) + fp(hi);
                        if (isnan(r) && fp(lo) == fp(hi)) r = fp(lo);
                    }
                }
            }
            dst[b] = (float)r;
            tab[b * NTAB + (t ? TAB_FSTD : TAB_FMEAN)] = (double)(float)r;
        }
    }
}

// Values of the per-pixel mark of the peak finder, as peaks.py (_PEAK is the peak bit mask here).
#define MARK_NONE 0
#define MARK_ZINGER 1
#define MARK_MAYBE 3
#define MARK_STRONG 4

// peaks.py _pixel_var: sigma_p^2 = std(r)^2 + noise^2 (float64) of a pixel whose two bins hold (mean, std) peak0
// and peak1, weight wp of the upper one; noise2 = noise * noise (the CPU's product).
__device__ __forceinline__ double peak_var(double2 peak0, double2 peak1, double wp, double noise2) {
    const double sd = peak0.y * (1.0 - wp) + peak1.y * wp;
    return sd * sd + noise2;
}

// peaks.py _excess of a pixel with signal s, norm nrm, q = s / nrm (float32) and slot sl (-1: outside the radial
// range): returns v = q - bg(r) (float64 difference, returned as float32; NaN when missing), with bg NaN in the
// bins whose std is not finite; mark = MARK_STRONG where v > 0 and v^2 >= cutoff^2 sigma_p^2 (zinger
// candidates), MARK_MAYBE where 16 v^2 >= cutoff^2 sigma_p^2 (rule 2e), both tested on the float64 v.
// peak0/peak1: (mean, std) of the pixel's two bins (load_bin); cutoff2 = cutoff * cutoff.  Every quantity is
// computed and the answers selected (no branches: a warp's pixels take every path anyway).
__device__ __forceinline__ float peak_excess(double2 peak0, double2 peak1, float s, float nrm, float q, int sl,
                                             double wp, double noise2, double cutoff2, unsigned char& mark) {
    const double b = peak0.x * (1.0 - wp) + peak1.x * wp;
    const double v = (double)q - b;
    const double v2 = v * v;
    const double t2 = cutoff2 * peak_var(peak0, peak1, wp, noise2);
    const bool known = sl >= 0 && isfinite(s) && nrm > 0.0f && isfinite(b);
    mark = !(known && v > 0.0) ? MARK_NONE : (v2 >= t2 ? MARK_STRONG : (v2 * 16.0 >= t2 ? MARK_MAYBE : MARK_NONE));
    return known ? (float)v : NAN_F;
}

// v and mark of flat pixel p of a frame (inside the image); tab: the background tables (GlobalBins, SharedBins).
template <typename T, bool PLAIN, typename Tables>
__device__ __forceinline__ float peak_excess_at(const Par& P, const Tables& tab, const T* __restrict__ frame, int p,
                                                const PixelStatic* __restrict__ pix, const float* __restrict__ dark,
                                                const float* __restrict__ dvar, const float* __restrict__ gmap,
                                                double noise2, double cutoff2, unsigned char& mark) {
    const PixelStatic st = pix[p];
    if (st.slot < 0) {
        mark = MARK_NONE;
        return NAN_F;
    }
    float s, pvar;
    pixel_signal<T, PLAIN>(P, __ldg(frame + p), p, slot_masked(st.slot), dark, dvar, gmap, s, pvar);
    const Pos X = decode_place(st.slot, st.w);
    double2 peak0, peak1, pick;
    load_bin(tab, X.i0, peak0, pick);
    load_bin(tab, X.i1, peak1, pick);
    return peak_excess(peak0, peak1, s, st.norm, quotient(s, st.norm), st.slot, st.w, noise2, cutoff2, mark);
}

// pick.py _classify for a pixel inside picking's radial range: 0 = not picked, 1 = picked, 2 = picked and above
// the spot threshold (its 8 neighbours are kept too), from the gap-filled tables (finite, so that the place
// gives _classify's interpolation at the ends too; pick0/pick1: (mean, std) of its two bins, weight wp of the
// upper one); invalid pixels are picked when they are overloads.  noise2, cutoff2, spot2: the squares of noise,
// cutoff_pick and cutoff_spot (the CPU's products).  Branch-free, as peak_excess.
template <typename T>
__device__ __forceinline__ int pick_state(const Par& P, T raw, float s, float q, double2 pick0, double2 pick1,
                                          double wp, double noise, double noise2, double cutoff2, double spot2) {
    const int top = spot2 > 0.0 ? 2 : 1;  // the state of a pixel above every threshold
    const double excess = (double)q - ((1.0 - wp) * pick0.x + wp * pick1.x);
    const double sd = (1.0 - wp) * pick0.y + wp * pick1.y;
    const double sigma2 = sd * sd + noise2;
    const double e2 = excess * excess;
    // excess > noise, then excess > cutoff * sigma (both positive), then the spot threshold
    const int state = excess > noise && e2 > cutoff2 * sigma2 ? (e2 > spot2 * sigma2 ? top : 1) : 0;
    return isfinite(s) ? state : ((double)raw >= P.saturation ? top : 0);
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
// norm_at(): the centre pixel's norm; var_at(di, dj): sigma_p^2 (float64) of the pixel at offset (di, dj), asked
// only for usable ones; var_floor: a lower bound of every usable pixel's sigma_p^2 (0 when none is known), with
// which most candidates fail the box test before their variances are read.
template <int H, typename NormAt, typename VarAt>
__device__ __forceinline__ bool peak_confirm(const float* sv, const unsigned char* sm, int W, int a, int b,
                                             double cutoff, double spread_snr, double min_spread, bool reject,
                                             double var_floor, NormAt norm_at, VarAt var_at) {
    const int c = a * W + b;
    const float v0 = sv[c];
    double box = 0.0;  // b: the 3 x 3 detection, box >= cutoff sqrt(box_var) + the skewness term
    int usable = 0;
#pragma unroll
    for (int di = -1; di <= 1; ++di)
#pragma unroll
        for (int dj = -1; dj <= 1; ++dj) {
            const int k = c + di * W + dj;
            if (isfinite(sv[k]) && sm[k] != MARK_ZINGER) {
                box += (double)sv[k];
                ++usable;
            }
        }
    // the skewness term, when it is >= 0 (cutoff >= 1) left out of the necessary test below
    auto skew = [&]() { return (cutoff * cutoff - 1.0) / (6.0 * (double)norm_at()); };
    // a necessary condition: box_var >= usable * var_floor, and each rounded operation of the test is monotonic
    if (box < cutoff * sqrt((double)usable * var_floor) + (cutoff >= 1.0 ? 0.0 : skew())) return false;
    double box_var = 0.0, nb_var = 0.0;
#pragma unroll
    for (int di = -1; di <= 1; ++di) {
        bool ok[3];
        double q_var[3];  // a row's variances read first, so that their loads overlap
#pragma unroll
        for (int dj = -1; dj <= 1; ++dj) {
            const int k = c + di * W + dj;
            ok[dj + 1] = isfinite(sv[k]) && sm[k] != MARK_ZINGER;
            q_var[dj + 1] = ok[dj + 1] ? var_at(di, dj) : 0.0;
        }
#pragma unroll
        for (int dj = -1; dj <= 1; ++dj)
            if (ok[dj + 1]) {
                box_var += q_var[dj + 1];
                if (di != 0 || dj != 0) nb_var += q_var[dj + 1];
            }
    }
    if (box < cutoff * sqrt(box_var) + skew()) return false;
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

// Picking and peak finding of one tile of TILE_W x TILE_H pixels (TILE_W a multiple of 32): one block of
// 32 x TILE_WARPS threads per (frame, tile), frames fastest so that the blocks of the same pixels share the static
// arrays in L2.  A unit is 32 pixels of a tile row, the pixels of one word of the bit masks.
// 1. The tile's pixels, a warp per unit (unit = warp + k TILE_WARPS), one thread per pixel: preprocessing, picking
//    (pick.py: the unit's word of the bit mask by __ballot_sync; spot_words, when not NULL, gets the pixels of
//    state 2 for grow_picks) and, for peaks, the excess v and its mark (peaks.py _excess) into shared memory, the
//    pixels of rule 2e as a word per unit, the zinger candidates (MARK_STRONG) listed; the next unit's loads are
//    issued before this unit's arithmetic.
// 2. For peaks, the same v and marks for a halo of 3 pixels around the tile: the rules read 2 pixels beyond a
//    candidate and the zinger test of those one more.
// 3. Zinger flags (peaks.py _flag_zingers, a function of v alone) for the listed zinger candidates of the tile and
//    its halo (the whole window when more than ZINGER_LIST), while the words of rule 2e are expanded into a list;
//    those pixels take the 3 x 3 local-maximum test (peak_candidate), which lists the candidates (at most one
//    pixel in four: no two neighbours are both 3 x 3 maxima), and the block's threads then take one candidate
//    each through peak_confirm on the shared window, with sigma_p^2 of its 3 x 3 box computed again from the
//    static record and the tables.  Each unit's word of the peak mask is written whole.
// The background tables of the bins that the tile and its halo read (tile_bins, engine.py _Static.tile_bins) are
// copied to shared memory first when there are at most TILE_BINS of them, else read from device memory.
// pick_noise2, pick_cutoff2, pick_spot2, peak_noise2, peak_cutoff2: squares of the parameters (the CPU's
// products).
template <typename T, bool PLAIN, int H>
__global__ void __launch_bounds__(32 * TILE_WARPS, TILE_MIN_BLOCKS)
tile_pass(const T* __restrict__ frames, int ny, int nx, int nwords, const PixelStatic* __restrict__ pix,
          const int2* __restrict__ tile_bins,
          const float* __restrict__ dark, const float* __restrict__ dvar, const float* __restrict__ gmap,
          const double* __restrict__ par, const double* __restrict__ prof, int nbins,
          double pick_noise, double pick_noise2, double pick_cutoff2, double pick_spot2, double peak_noise2,
          double peak_cutoff, double peak_cutoff2, double spread_snr, double min_spread, int reject, int do_pick,
          int do_peaks, unsigned int* __restrict__ pick_words, unsigned int* __restrict__ spot_words,
          unsigned int* __restrict__ peak_words) {
    constexpr int G = 3, W = TILE_W + 2 * G, HH = TILE_H + 2 * G;
    constexpr int NW = TILE_W / 32, UNITS = TILE_H * NW;
    __shared__ float sv[HH * W];
    __shared__ unsigned char sm[HH * W];
    __shared__ unsigned short maybe[TILE_W * TILE_H];       // pixels of rule 2e, lr * TILE_W + lc
    __shared__ unsigned short listed[TILE_W * TILE_H / 4];  // candidates, likewise
    __shared__ unsigned short strong[ZINGER_LIST];          // MARK_STRONG pixels of the window, lr * W + lc
    __shared__ unsigned int maybe_words[UNITS];             // rule-2e bits of each unit
    __shared__ unsigned int found[UNITS];                   // peak-mask word of each unit
    __shared__ unsigned int picked[UNITS], spots[UNITS];    // picking's words of each unit
    __shared__ int nmaybe, ncand, nstrong;
    __shared__ double2 bins[TILE_BINS * 2];                 // the first four tables of the tile's bins
    __shared__ unsigned long long least_std;                // bits of the smallest finite std among them
    const int f = blockIdx.x, tx = blockIdx.y;
    const int col0 = tx * TILE_W, row0 = blockIdx.z * TILE_H;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const unsigned int below_lane = (1u << lane) - 1u;
    const T* frame = opaque(frames + (long long)f * ny * nx);
    const double* ftab = prof + (long long)f * nbins * NTAB;
    const int2 range = tile_bins[blockIdx.z * gridDim.y + tx];  // the bins that the tile and its halo read
    const bool fits = range.y <= TILE_BINS;
    if (threadIdx.x == 0) {
        nmaybe = ncand = nstrong = 0;
        least_std = 0x7ff0000000000000ULL;  // +inf
    }
    __syncthreads();
    if (fits)
        for (int e = threadIdx.x; e < 2 * range.y; e += blockDim.x) {
            const double2 entry = reinterpret_cast<const double2*>(ftab + (range.x + (e >> 1)) * NTAB)[e & 1];
            bins[e] = entry;
            // the smallest finite std of the tile's bins (as non-negative doubles are ordered as their bits;
            // -0.0 counts as +0.0)
            if (!(e & 1) && isfinite(entry.y))
                atomicMin(&least_std, (unsigned long long)__double_as_longlong(entry.y <= 0.0 ? 0.0 : entry.y));
        }
    for (int u = threadIdx.x; u < UNITS; u += blockDim.x) found[u] = 0u;
    __syncthreads();
    const Par P = load_par(par);
    // A warp's units all lie in one column half of the tile (TILE_WARPS is a multiple of NW), so that each thread
    // keeps its column col_in_tile and steps STEP_ROWS rows from one unit to its next.
    static_assert(TILE_WARPS % NW == 0, "a warp's units must share their columns");
    constexpr int STEP_ROWS = TILE_WARPS / NW;
    const int col_half = warp % NW, col_in_tile = col_half * 32 + lane;
    const bool col_inside = col0 + col_in_tile < nx;
    // the raw value and static data of the pixel of row lr of the tile, flat index p; slot -1 outside the tile or
    // the image, where pixel 0 is read instead (no branch around the loads)
    auto load_pixel = [&](int lr, int p, T& raw, PixelStatic& st) {
        const bool inside = col_inside && lr < TILE_H && row0 + lr < ny;
        raw = __ldg(frame + (inside ? p : 0));
        st = pix[inside ? p : 0];
        if (!inside) st.slot = -1;
    };
    // each unit's words of the bit masks, written whole (after a barrier)
    auto write_words = [&]() {
        for (int u = threadIdx.x; u < UNITS; u += blockDim.x) {
            const int row = row0 + u / NW, wx = tx * NW + u % NW;
            if (row >= ny || wx >= nwords) continue;
            const long long w = ((long long)f * ny + row) * nwords + wx;
            if (do_pick) {
                pick_words[w] = picked[u];
                if (spot_words) spot_words[w] = spots[u];
            }
            if (do_peaks) {
                peak_words[w] = found[u];
            }
        }
    };
    auto body = [&](const auto& tab) {
        // 1. the tile: v, mark (peaks) and state (picking) of this thread's pixel, flat index p
        auto classify = [&](int p, T raw, const PixelStatic& st, float& v, unsigned char& mark, int& state) {
            state = 0;
            v = NAN_F;  // NaN outside the image, as the rules expect
            mark = MARK_NONE;
            if (st.slot < 0) return;
            float s, pvar;
            pixel_signal<T, PLAIN>(P, raw, p, slot_masked(st.slot), dark, dvar, gmap, s, pvar);
            const float q = quotient(s, st.norm);
            const Pos X = decode_place(st.slot, st.w);
            double2 peak0, peak1, pick0, pick1;
            load_bin(tab, X.i0, peak0, pick0);
            load_bin(tab, X.i1, peak1, pick1);
            if (do_peaks) v = peak_excess(peak0, peak1, s, st.norm, q, st.slot, st.w, peak_noise2, peak_cutoff2, mark);
            if (do_pick && !(st.slot & SLOT_PICK_OUT))
                state = pick_state<T>(P, raw, s, q, pick0, pick1, st.w, pick_noise, pick_noise2, pick_cutoff2,
                                      pick_spot2);
        };
        // ... into shared memory and the words of unit u = lr * NW + col_half (the whole warp)
        auto record = [&](int lr, float v, unsigned char mark, int state) {
            const int u = lr * NW + col_half;
            if (do_peaks) {
                const int e = (lr + G) * W + col_in_tile + G;
                sv[e] = v;
                sm[e] = mark;
                const unsigned int maybe_bits = __ballot_sync(0xffffffffu, mark >= MARK_MAYBE);
                const unsigned int strong_bits = __ballot_sync(0xffffffffu, mark == MARK_STRONG);
                if (lane == 0) maybe_words[u] = maybe_bits;
                if (strong_bits) {  // rare: list them
                    int first = 0;
                    if (lane == 0) first = atomicAdd(&nstrong, __popc(strong_bits));
                    first = __shfl_sync(0xffffffffu, first, 0);
                    const int at = first + __popc(strong_bits & below_lane);
                    if (mark == MARK_STRONG && at < ZINGER_LIST) strong[at] = (unsigned short)e;
                }
            }
            if (do_pick) {
                const unsigned int pw = __ballot_sync(0xffffffffu, state > 0);
                const unsigned int sw = __ballot_sync(0xffffffffu, state > 1);
                if (lane == 0) {
                    picked[u] = pw;
                    spots[u] = sw;
                }
            }
        };
        // a warp takes every TILE_WARPS-th unit; the next unit's loads are issued before this unit's arithmetic,
        // so that their latencies overlap
        const int step = STEP_ROWS * nx;
        int p = (row0 + warp / NW) * nx + col0 + col_in_tile;
        T next_raw;
        PixelStatic next_st;
        load_pixel(warp / NW, p, next_raw, next_st);
        for (int lr = warp / NW; lr < TILE_H; lr += STEP_ROWS, p += step) {
            const T raw = next_raw;
            const PixelStatic st = next_st;
            load_pixel(lr + STEP_ROWS, p + step, next_raw, next_st);
            float v;
            unsigned char mark;
            int state;
            classify(p, raw, st, v, mark, state);
            record(lr, v, mark, state);
        }
        if (!do_peaks) return;
        const int band = G * W, side = TILE_H * G;  // 2. the halo: top and bottom bands, then left and right sides
        for (int k = threadIdx.x; k < 2 * band + 2 * side; k += blockDim.x) {
            int lr, lc;
            if (k < 2 * band) {
                const int r = (k % band) / W;
                lr = k < band ? r : G + TILE_H + r;
                lc = k % W;
            } else {
                const int k2 = k - 2 * band, c = (k2 % side) % G;
                lr = G + (k2 % side) / G;
                lc = k2 < side ? c : G + TILE_W + c;
            }
            const int row = row0 - G + lr, c = col0 - G + lc;
            float v = NAN_F;
            unsigned char mark = MARK_NONE;
            if (row >= 0 && row < ny && c >= 0 && c < nx)
                v = peak_excess_at<T, PLAIN>(P, tab, frame, row * nx + c, pix, dark, dvar, gmap, peak_noise2,
                                             peak_cutoff2, mark);
            sv[lr * W + lc] = v;
            sm[lr * W + lc] = mark;
            if (mark == MARK_STRONG) {
                const int at = atomicAdd(&nstrong, 1);
                if (at < ZINGER_LIST) strong[at] = (unsigned short)(lr * W + lc);
            }
        }
        __syncthreads();
        // 3. the words of rule 2e into a list; zinger flags, each reading v and its own mark: on the listed
        // MARK_STRONG pixels, or on the whole window when the list overflowed
        for (int u = threadIdx.x; u < UNITS; u += blockDim.x) {
            unsigned int word = maybe_words[u];
            if (!word) continue;
            int at = atomicAdd(&nmaybe, __popc(word));
            const int first = (u / NW) * TILE_W + (u % NW) * 32;
            while (word) {
                maybe[at++] = (unsigned short)(first + __ffs(word) - 1);
                word &= word - 1u;
            }
        }
        const bool all_listed = nstrong <= ZINGER_LIST;
        for (int k = threadIdx.x; k < (all_listed ? nstrong : HH * W); k += blockDim.x) {
            const int e = all_listed ? strong[k] : k;
            const int lr = e / W, lc = e % W;
            if (sm[e] == MARK_STRONG && lr >= 1 && lr < HH - 1 && lc >= 1 && lc < W - 1 &&
                is_zinger(sv, W, lr, lc, min_spread))
                sm[e] = MARK_ZINGER;
        }
        __syncthreads();
        for (int k = threadIdx.x; k < nmaybe; k += blockDim.x) {  // the cheap tests, on the pixels of rule 2e
            const int lr = maybe[k] / TILE_W, lc = maybe[k] % TILE_W;
            if (peak_candidate(sv, sm, W, lr + G, lc + G)) listed[atomicAdd(&ncand, 1)] = maybe[k];
        }
        __syncthreads();
        // a lower bound of sigma_p^2 = sd^2 + noise^2 of every usable pixel of the tile (sd interpolates between
        // stds of at least least_std; the factor covers the roundings), 0 with the tables in device memory
        const double sd_floor = fits && least_std < 0x7ff0000000000000ULL ? __longlong_as_double(least_std) : 0.0;
        const double var_floor = (sd_floor * sd_floor + peak_noise2) * (1.0 - 1e-9);
        for (int k = threadIdx.x; k < ncand; k += blockDim.x) {
            const int lr = listed[k] / TILE_W, lc = listed[k] % TILE_W;
            const int p = (row0 + lr) * nx + col0 + lc;
            auto var_at = [&](int di, int dj) {  // sigma_p^2 of a usable pixel of the box (slot >= 0)
                const PixelStatic q = pix[p + di * nx + dj];
                const Pos X = decode_place(q.slot, q.w);
                double2 peak0, peak1, pick;
                load_bin(tab, X.i0, peak0, pick);
                load_bin(tab, X.i1, peak1, pick);
                return peak_var(peak0, peak1, q.w, peak_noise2);
            };
            if (peak_confirm<H>(sv, sm, W, lr + G, lc + G, peak_cutoff, spread_snr, min_spread, reject != 0,
                                var_floor, [&]() { return pix[p].norm; }, var_at))
                atomicOr(&found[lr * NW + lc / 32], 1u << (lc % 32));
        }
    };
    if (fits)
        body(SharedBins{bins, range.x});
    else
        body(GlobalBins{ftab});
    __syncthreads();
    write_words();
}

// pick.py _is_kept with cutoff_spot > 0, one thread per word: adds to the picked pixels the pixels inside the
// radial range (range_words, (ny, nwords), bits of r_lo <= r < r_hi) next to (8-neighbourhood) a pixel of
// state 2.
__global__ void grow_picks(long long nwords_total, int ny, int nwords, const unsigned int* __restrict__ spot_words,
                           const unsigned int* __restrict__ range_words, unsigned int* __restrict__ pick_words) {
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
    pick_words[w] |= near & range_words[(long long)row * nwords + wx];
}

// Inclusive sum of x over the lanes 0..lane of the warp (the whole warp calls it).
template <typename V>
__device__ __forceinline__ V warp_inclusive_sum(V x) {
    const int lane = threadIdx.x & 31;
    for (int o = 1; o < 32; o <<= 1) {
        const V y = __shfl_up_sync(0xffffffffu, x, o);
        if (lane >= o) x += y;
    }
    return x;
}

// Compaction of the set bits of the two bit masks (picked pixels, peaks), each (nframes, ny, nwords) words at
// words + k * stride (k = 0, 1), in index order: each frame's words_per_frame words are cut into chunks_per_frame
// chunks of EMIT_BLOCK (the last one partial), one block each (block = frame * chunks_per_frame + chunk;
// chunk_word gives a thread's word).
// 1. chunk_counts: the set bits of each chunk, counts[k * (nchunks + 1) + chunk];
// 2. chunk_offsets (one block of 1024 threads per mask): the counts turned, in place, into the set bits before
//    each chunk (entry nchunks: all of them), and frame_ptr[k * fptr_stride + f] = those before frame f,
//    f = 0..nframes;
// 3. the emit kernels: each thread finds the set bits before its word (block_offset) and lists its own.
//
// The flat index of this thread's word, or -1 past its frame's last word.
__device__ __forceinline__ long long chunk_word(long long words_per_frame, int chunks_per_frame) {
    const int f = blockIdx.x / chunks_per_frame, c = blockIdx.x % chunks_per_frame;
    const long long w = (long long)c * EMIT_BLOCK + threadIdx.x;
    return w < words_per_frame ? f * words_per_frame + w : -1;
}

// One warp per chunk, COUNT_WARPS chunks a block.
__global__ void __launch_bounds__(32 * COUNT_WARPS)
chunk_counts(const unsigned int* __restrict__ words, long long stride, long long words_per_frame,
             int chunks_per_frame, long long* __restrict__ counts, int nchunks) {
    const int k = blockIdx.y, lane = threadIdx.x & 31;
    const int chunk = blockIdx.x * COUNT_WARPS + (threadIdx.x >> 5);
    if (chunk >= nchunks) return;  // the whole warp
    const int f = chunk / chunks_per_frame;
    const long long first = (long long)(chunk % chunks_per_frame) * EMIT_BLOCK;
    const unsigned int* line = words + k * stride + f * words_per_frame;
    int c = 0;
#pragma unroll
    for (int i = 0; i < EMIT_BLOCK / 32; ++i) {
        const long long w = first + i * 32 + lane;
        if (w < words_per_frame) c += __popc(line[w]);
    }
    for (int o = 16; o > 0; o >>= 1) c += __shfl_xor_sync(0xffffffffu, c, o);
    if (lane == 0) counts[k * (nchunks + 1) + chunk] = c;
}

__global__ void __launch_bounds__(1024)
chunk_offsets(long long* __restrict__ counts, int nchunks, int chunks_per_frame, int nframes,
              long long* __restrict__ frame_ptr, long long fptr_stride) {
    __shared__ long long warp_sums[32];
    const int k = blockIdx.x, t = threadIdx.x, lane = t & 31, warp = t >> 5;
    long long* c = counts + k * (nchunks + 1);
    const int per = (nchunks + 1023) / 1024, lo = min(t * per, nchunks), hi = min(lo + per, nchunks);
    long long sum = 0;  // this thread's segment of chunks
    for (int i = lo; i < hi; ++i) sum += c[i];
    const long long x = warp_inclusive_sum(sum);  // inclusive scan of the segments' sums: within the warp,
    if (lane == 31) warp_sums[warp] = x;          // then over the warps
    __syncthreads();
    if (warp == 0) warp_sums[lane] = warp_inclusive_sum(warp_sums[lane]);
    __syncthreads();
    long long before = x - sum + (warp > 0 ? warp_sums[warp - 1] : 0);
    for (int i = lo; i < hi; ++i) {
        const long long n = c[i];
        c[i] = before;
        before += n;
    }
    if (t == 1023) c[nchunks] = before;
    __syncthreads();
    for (int f = t; f <= nframes; f += blockDim.x) frame_ptr[k * fptr_stride + f] = c[f * chunks_per_frame];
}

// The set bits before word `word` of this block's chunk in the mask, given those before the chunk (offset); every
// thread of the block calls it.
__device__ __forceinline__ long long block_offset(unsigned int word, long long offset) {
    __shared__ int warp_sums[EMIT_BLOCK / 32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int c = __popc(word);
    const int x = warp_inclusive_sum(c);
    if (lane == 31) warp_sums[warp] = x;
    __syncthreads();
    for (int i = 0; i < warp; ++i) offset += warp_sums[i];
    return offset + x - c;
}

// The emit kernels run one thread per word w of a (nframes, ny, nwords) bit mask, EMIT_BLOCK words a block;
// set_bits walks the set bits of the word in index order, calling visit(frame, flat pixel index, compacted
// position) from position pos on: index order within each frame.
template <typename Visit>
__device__ __forceinline__ void set_bits(long long w, int ny, int nx, int nwords, unsigned int word, long long pos,
                                         Visit visit) {
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
__global__ void __launch_bounds__(EMIT_BLOCK)
emit_picks(const T* __restrict__ frames, int ny, int nx, int nwords, const unsigned int* __restrict__ words,
           const long long* __restrict__ offsets, int chunks_per_frame, const float* __restrict__ dark,
           int is_integer, double lo, double hi, long long capacity, unsigned int* __restrict__ out_index,
           T* __restrict__ out_value) {
    const long long w = chunk_word((long long)ny * nwords, chunks_per_frame);
    const unsigned int word = w >= 0 ? words[w] : 0u;
    const long long pos = block_offset(word, offsets[blockIdx.x]);
    set_bits(w, ny, nx, nwords, word, pos, [&](long long f, long long p, long long pos) {
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
__global__ void __launch_bounds__(EMIT_BLOCK)
emit_peak_index(int ny, int nx, int nwords, const unsigned int* __restrict__ words,
                const long long* __restrict__ offsets, int chunks_per_frame, long long capacity,
                long long* __restrict__ out_index, long long* __restrict__ at) {
    const long long w = chunk_word((long long)ny * nwords, chunks_per_frame);
    const unsigned int word = w >= 0 ? words[w] : 0u;
    const long long pos = block_offset(word, offsets[blockIdx.x]);
    set_bits(w, ny, nx, nwords, word, pos, [&](long long f, long long p, long long pos) {
        if (pos >= capacity) return;
        out_index[pos] = p;
        at[pos] = f * ny * nx + p;
    });
}

// Sums of t[0..K), t[stride..stride + K) and t[2 stride..2 stride + K), each added in index order as the CPU adds
// its terms; the entries the CPU skips hold +0.0, which leaves every partial sum unchanged (a sum that starts at
// +0.0 is never -0.0), so that the loop needs no branch.
template <int K>
__device__ __forceinline__ void ordered_sums(const double* t, int stride, double& s0, double& s1, double& s2) {
    s0 = s1 = s2 = 0.0;
#pragma unroll 8
    for (int e = 0; e < K; ++e) {
        s0 += t[e];
        s1 += t[stride + e];
        s2 += t[2 * stride + e];
    }
}

// PEAK_LANES lanes per peak, 32 / PEAK_LANES peaks a warp, blocks of MEASURE_WARPS warps: measures each peak
// (peaks.py _measure_peaks and _centroid) over an 11 x 11 window of v and marks in shared memory, computed from
// the frame as tile_pass computes them, so that the zinger flags of the boxes are known.  The lanes of a peak
// compute the window, flag its zingers and compute the terms of every sum (the 49 Gaussian-weighted terms of each
// centroid iteration, those of the boxes); its first lane (the leader) adds them in the CPU's order (rows, then
// columns) and does the rest, so that the sums are the CPU's to the last bit.  The leaders of a warp's peaks add
// their sums side by side, the warp iterating until all its peaks have converged.  *total is the number of peaks
// of the batch (device memory: no host round trip).
template <typename T, int H>
__global__ void __launch_bounds__(32 * MEASURE_WARPS)
measure_peaks(const T* __restrict__ frames, const long long* __restrict__ total, int ny, int nx,
              const long long* __restrict__ at, const PixelStatic* __restrict__ pix,
              const float* __restrict__ dark, const float* __restrict__ dvar,
              const float* __restrict__ gmap, const double* __restrict__ dspacing,
              const double* __restrict__ par, const double* __restrict__ prof,
              int nbins, double noise2, double cutoff2, double min_spread,
              long long capacity, double* __restrict__ out_f, int* __restrict__ out_npix) {
    // the 7 x 7 centroid box, and the 5 x 5 integration box centred on the pixel nearest the centroid (up to 1 px
    // from the peak), plus the ring that the zinger test of their pixels reads
    constexpr int G = 5, S = 2 * G + 1, C = 3, CS = 2 * C + 1, L = PEAK_LANES, PEAKS = 32 * MEASURE_WARPS / L;
    __shared__ float window_v[PEAKS][S * S];
    __shared__ unsigned char window_m[PEAKS][S * S];  // marks, MARK_ZINGER once flagged
    __shared__ double weights[PEAKS][3 * CS * CS];   // terms of a sum (put_terms)
    __shared__ double factors[PEAKS][2 * CS];        // a centroid window's row factors, then column factors
    const unsigned int all = 0xffffffffu;
    const int group = threadIdx.x / L, gl = threadIdx.x % L;
    const bool leader = gl == 0;
    const long long pos = (long long)blockIdx.x * PEAKS + group;
    const bool active = pos < *total && pos < capacity;  // every lane takes part in the warp's syncs
    const long long npix = (long long)ny * nx;
    const long long here = active ? at[pos] : 0;
    const int f = (int)(here / npix);
    const int p = (int)(here - f * npix);
    const int i = p / nx, j = p % nx;
    const T* frame = frames + (long long)f * npix;
    float* sv = window_v[group];
    unsigned char* sm = window_m[group];
    double* wt = weights[group];
    double* fac = factors[group];
    const Par P = load_par(par);
    const double* tab = prof + (long long)f * nbins * NTAB;
    if (active) {
        for (int e = gl; e < S * S; e += L) {  // v and marks of the window, as tile_pass computes them
            const int ii = i - G + e / S, jj = j - G + e % S;
            float v = NAN_F;
            unsigned char mark = MARK_NONE;
            if (ii >= 0 && ii < ny && jj >= 0 && jj < nx)
                v = peak_excess_at<T, false>(P, GlobalBins{tab}, frame, ii * nx + jj, pix, dark, dvar, gmap, noise2,
                                             cutoff2, mark);
            sv[e] = v;
            sm[e] = mark;
        }
    }
    __syncwarp();
    if (active) {
        for (int e = gl; e < S * S; e += L) {  // is_zinger reads v only: each lane flags its own pixels
            const int a = e / S, b = e % S;
            if (a >= 1 && a < S - 1 && b >= 1 && b < S - 1 && sm[e] == MARK_STRONG &&
                is_zinger(sv, S, a, b, min_spread))
                sm[e] = MARK_ZINGER;
        }
    }
    __syncwarp();
    auto usable = [&](int ii, int jj) {
        const int k = (ii - i + G) * S + (jj - j + G);
        return isfinite(sv[k]) && sm[k] != MARK_ZINGER;
    };
    auto value = [&](int ii, int jj) { return sv[(ii - i + G) * S + (jj - j + G)]; };
    // Gaussian-windowed centroid (rms 1.3 px) over the 7 x 7 box, iterated to its fixed point from the centroid
    // of the positive excess of the 5 x 5 box (peaks.py _centroid)
    const int i0 = i - C > 0 ? i - C : 0, i1 = i + C + 1 < ny ? i + C + 1 : ny;
    const int j0 = j - C > 0 ? j - C : 0, j1 = j + C + 1 < nx ? j + C + 1 : nx;
    const double inv = 0.5 / (1.3 * 1.3);
    // the terms (weight, weight * row, weight * column) of entry e of a box, +0.0 where the CPU adds nothing
    auto put_terms = [&](int e, bool counted, double w, int ii, int jj) {
        wt[e] = counted ? w : 0.0;
        wt[CS * CS + e] = counted ? w * (double)ii : 0.0;
        wt[2 * CS * CS + e] = counted ? w * (double)jj : 0.0;
    };
    if (active) {
        for (int e = gl; e < 25; e += L) {
            const int ii = i - 2 + e / 5, jj = j - 2 + e % 5;
            const bool counted = ii >= 0 && ii < ny && jj >= 0 && jj < nx && usable(ii, jj) && value(ii, jj) > 0.0f;
            put_terms(e, counted, counted ? (double)value(ii, jj) : 0.0, ii, jj);
        }
    }
    __syncwarp();
    double row = 0.0, col = 0.0;
    if (active && leader) {
        double wsum, wi, wj;
        ordered_sums<25>(wt, CS * CS, wsum, wi, wj);
        row = wi / wsum;
        col = wj / wsum;
    }
    bool done = !active;  // the same in every lane of a peak
    for (int it = 0; it < 20 && __any_sync(all, !done); ++it) {
        row = __shfl_sync(all, row, 0, L);
        col = __shfl_sync(all, col, 0, L);
        if (!done) {
            for (int e = gl; e < 2 * CS; e += L) {  // the window is separable, as the CPU's: 7 + 7 factors
                const double d = e < CS ? (double)(i - C + e) - row : (double)(j - C + e - CS) - col;
                fac[e] = exp(-(d * d) * inv);
            }
        }
        __syncwarp();
        if (!done) {
            for (int e = gl; e < CS * CS; e += L) {
                const int ii = i - C + e / CS, jj = j - C + e % CS;
                const bool counted = ii >= i0 && ii < i1 && jj >= j0 && jj < j1 && usable(ii, jj);
                put_terms(e, counted, counted ? (double)value(ii, jj) * fac[e / CS] * fac[CS + e % CS] : 0.0, ii,
                          jj);
            }
        }
        __syncwarp();
        int stop = 0;
        if (!done && leader) {
            double wsum, wi, wj;
            ordered_sums<CS * CS>(wt, CS * CS, wsum, wi, wj);
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
        const int stopped = __shfl_sync(all, stop, 0, L);  // every lane takes part in the shuffle
        done = done || stopped;
    }
    // the 5 x 5 integration box around the pixel nearest the centroid: each lane the terms of its pixels, the
    // leader adds them in the CPU's order (rows, then columns)
    row = __shfl_sync(all, row, 0, L);
    col = __shfl_sync(all, col, 0, L);
    const int ci = (int)floor(row + 0.5) < 0 ? 0 : ((int)floor(row + 0.5) > ny - 1 ? ny - 1 : (int)floor(row + 0.5));
    const int cj = (int)floor(col + 0.5) < 0 ? 0 : ((int)floor(col + 0.5) > nx - 1 ? nx - 1 : (int)floor(col + 0.5));
    int nbox = 0;  // this lane's usable pixels of the box, then the peak's
    if (active) {
        for (int e = gl; e < 25; e += L) {  // the terms (intensity, scale, variance), +0.0 where the CPU adds nothing
            const int ii = ci - 2 + e / 5, jj = cj - 2 + e % 5;
            double scale = 0.0, variance = 0.0, intensity = 0.0;
            if (ii >= 0 && ii < ny && jj >= 0 && jj < nx && usable(ii, jj)) {
                const int q = ii * nx + jj;
                const PixelStatic st = pix[q];
                float s, pvar;
                pixel_signal<T, false>(P, frame[q], q, slot_masked(st.slot), dark, dvar, gmap, s, pvar);
                const double g = gmap ? (double)gmap[q] : P.gain;
                scale = (double)st.norm * g;
                intensity = (double)value(ii, jj) * scale;
                variance = (double)pvar * g * g;
                ++nbox;
            }
            wt[e] = intensity;
            wt[CS * CS + e] = scale;
            wt[2 * CS * CS + e] = variance;
        }
    }
    for (int o = L / 2; o > 0; o >>= 1) nbox += __shfl_xor_sync(all, nbox, o, L);
    __syncwarp();
    if (active && leader) {
        double total_i, scale_sum, variance_sum;
        ordered_sums<25>(wt, CS * CS, total_i, scale_sum, variance_sum);
        const PixelStatic st = pix[p];
        const Pos X = decode_place(st.slot, st.w);  // a peak lies in the radial range
        const double s_bg = interp(tab, X, TAB_SEM);
        variance_sum += scale_sum * scale_sum * s_bg * s_bg;
        const double g0 = gmap ? (double)gmap[p] : P.gain;
        double* o = out_f + pos * 7;
        o[0] = row;
        o[1] = col;
        o[2] = total_i;
        o[3] = sqrt(variance_sum);
        o[4] = (double)(sv[G * S + G] * st.norm) * g0;
        o[5] = interp(tab, X, TAB_PMEAN) * (double)st.norm * g0;
        o[6] = dspacing ? dspacing[(long long)ci * nx + cj] : NAN_D;
        out_npix[pos] = nbox;
    }
}
"""
