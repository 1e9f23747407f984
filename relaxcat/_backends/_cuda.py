"""Fused CUDA kernels for the Gumbel-softmax, compiled with CuPy (NVRTC) on first use.

Used by the CuPy adapter, and by the PyTorch adapter for CUDA tensors (through DLPack) when
CuPy is installed. Importing this module imports CuPy and nothing else.

Random numbers are Philox4x32-10, counter-based: the noise of the element at linear index
``L`` of an array (row-major) is a pure function of ``(key, stream, L)``, so the kernels can
regenerate it instead of storing it, any element can be computed by any thread, and
:func:`gumbel_noise` draws exactly the noise the fused sampler uses. ``key`` is a 64-bit seed,
``stream`` a 64-bit draw counter. A float32 uniform is ``(w >> 8) * 2**-24`` for a 32-bit
word ``w`` (the grid of ``torch.rand``; one Philox call serves four elements); a float64
uniform takes 53 bits from two words. The noise is then the generic formula,
``-log(clip(-log U, tiny, max))``.

Kernels, one CUDA block per row of the category axis (the wrapper makes that axis the last):

* ``gs_forward``: pass 1 reads the row once, forms ``s = x + g`` and keeps an online
  ``(max, sum of exp((s - max) / tau), argmax)`` per thread (ties to the first index),
  reduced over the block; pass 2 writes ``exp((s - max) / tau) / sum`` (from a shared-memory
  copy of the row when it fits, else from ``s`` kept in the output buffer, or for half
  precision recomputing it) and/or the exact one-hot. The hard sample alone needs no
  second read.
* ``gs_noise``: the noise alone.
* ``gs_backward``: ``y * (g - <g, y>) / tau`` per row, the softmax vector-Jacobian product.
"""

from __future__ import annotations

import itertools
import os
import threading
from typing import Any

import cupy

_SOURCE = r"""
typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

struct Philox { u32 a, b, c, d; };

__device__ __forceinline__ Philox philox(u32 c0, u32 c1, u32 c2, u32 c3, u32 k0, u32 k1) {
    #pragma unroll
    for (int round = 0; round < 10; ++round) {
        u32 hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
        u32 hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
        c0 = hi1 ^ c1 ^ k0; c1 = lo1; c2 = hi0 ^ c3 ^ k1; c3 = lo0;
        k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
    }
    Philox r = {c0, c1, c2, c3};
    return r;
}

__device__ __forceinline__ u32 word(const Philox& r, int w) {
    return w == 0 ? r.a : (w == 1 ? r.b : (w == 2 ? r.c : r.d));
}

// ---- storage <-> compute conversions (inline PTX: no headers needed) ----
__device__ __forceinline__ float to_c(float v) { return v; }
__device__ __forceinline__ double to_c(double v) { return v; }
struct half_t { unsigned short bits; };
struct bf16_t { unsigned short bits; };
__device__ __forceinline__ float to_c(half_t v) {
    float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.bits)); return f;
}
__device__ __forceinline__ float to_c(bf16_t v) { return __uint_as_float(((u32)v.bits) << 16); }
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(double* p, double v) { *p = v; }
__device__ __forceinline__ void store(half_t* p, float v) {
    unsigned short h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v)); p->bits = h;
}
__device__ __forceinline__ void store(bf16_t* p, float v) {
    unsigned short h; asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(v)); p->bits = h;
}

__device__ __forceinline__ float ninf(float) { return -__int_as_float(0x7f800000); }
__device__ __forceinline__ double ninf(double) { return -__longlong_as_double(0x7ff0000000000000LL); }
// float32: the hardware approximations (a few ulp), so the kernels stay memory-bound;
// float64: the accurate library functions.
__device__ __forceinline__ float c_log(float v) { return __logf(v); }
__device__ __forceinline__ double c_log(double v) { return log(v); }
__device__ __forceinline__ float c_exp(float v) { return __expf(v); }
__device__ __forceinline__ double c_exp(double v) { return exp(v); }

// Uniform on [0, 1): float from 24 bits of one word, double from 53 bits of two.
__device__ __forceinline__ float uniform_f(u32 w) { return (float)(w >> 8) * 5.9604644775390625e-08f; }
__device__ __forceinline__ double uniform_d(u32 a, u32 b) {
    return ((double)(a >> 5) * 67108864.0 + (double)(b >> 6)) * 1.1102230246251565e-16;
}

// The generic noise formula: g = -log(clip(-log U, tiny, max)).
// E = -log U must be accurate to a few ulp *relative* for U near 1 (the noise's upper tail,
// which decides the argmax): the accurate logf there; g = -log E only needs absolute accuracy.
__device__ __forceinline__ float exponential_from(float u) {
    return fminf(fmaxf(-logf(u), 1.1754943508222875e-38f), 3.4028234663852886e+38f);
}
__device__ __forceinline__ double exponential_from(double u) {
    return fmin(fmax(-log(u), 2.2250738585072014e-308), 1.7976931348623157e+308);
}
__device__ __forceinline__ float gumbel_from(float u) { return -c_log(exponential_from(u)); }
__device__ __forceinline__ double gumbel_from(double u) { return -c_log(exponential_from(u)); }

// The uniform of the element at linear index L.
template <typename C> __device__ __forceinline__ C uniform_at(u64 L, u32 k0, u32 k1, u32 s0, u32 s1);
template <> __device__ __forceinline__ float uniform_at<float>(u64 L, u32 k0, u32 k1, u32 s0, u32 s1) {
    u64 q = L >> 2;
    Philox r = philox((u32)q, (u32)(q >> 32), s0, s1, k0, k1);
    return uniform_f(word(r, (int)(L & 3)));
}
template <> __device__ __forceinline__ double uniform_at<double>(u64 L, u32 k0, u32 k1, u32 s0, u32 s1) {
    u64 q = L >> 1;
    Philox r = philox((u32)q, (u32)(q >> 32), s0, s1, k0, k1);
    return (L & 1) ? uniform_d(r.c, r.d) : uniform_d(r.a, r.b);
}
template <typename C>
__device__ __forceinline__ C gumbel_at(u64 L, u32 k0, u32 k1, u32 s0, u32 s1) {
    return gumbel_from(uniform_at<C>(L, k0, k1, s0, s1));
}

template <typename C> struct Stat { C m; C d; i64 i; };

template <typename C>
__device__ __forceinline__ void merge(Stat<C>& a, const Stat<C>& b, C itau) {
    bool take = (b.m > a.m) || (b.m == a.m && b.i < a.i);
    Stat<C> hi = take ? b : a;
    Stat<C> lo = take ? a : b;
    C scaled = (lo.m == ninf(lo.m) || lo.d == (C)0) ? (C)0 : lo.d * c_exp((lo.m - hi.m) * itau);
    a.m = hi.m; a.d = hi.d + scaled; a.i = hi.i;
}

template <typename C>
__device__ __forceinline__ void push(Stat<C>& st, C s, i64 k, C itau, bool soft) {
    if (s > st.m) {
        if (soft) st.d = (st.m == ninf(s) ? (C)0 : st.d * c_exp((st.m - s) * itau)) + (C)1;
        st.m = s; st.i = k;
    } else if (soft && s != ninf(s)) {
        st.d += c_exp((s - st.m) * itau);
    } else if (!(s == s)) {  // NaN: poison the row, as the generic formula does
        st.d = s;
    }
}

template <typename C>
__device__ Stat<C> block_reduce(Stat<C> st, C itau) {
    __shared__ C sm[32];
    __shared__ C sd[32];
    __shared__ i64 si[32];
    const unsigned full = 0xffffffffu;
    for (int off = 16; off > 0; off >>= 1) {
        Stat<C> o;
        o.m = __shfl_down_sync(full, st.m, off);
        o.d = __shfl_down_sync(full, st.d, off);
        o.i = __shfl_down_sync(full, st.i, off);
        merge(st, o, itau);
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) { sm[warp] = st.m; sd[warp] = st.d; si[warp] = st.i; }
    __syncthreads();
    int nwarps = (blockDim.x + 31) >> 5;
    if (warp == 0) {
        Stat<C> w;
        w.m = lane < nwarps ? sm[lane] : ninf((C)0);
        w.d = lane < nwarps ? sd[lane] : (C)0;
        w.i = lane < nwarps ? si[lane] : (i64)0x7fffffffffffffffLL;
        for (int off = 16; off > 0; off >>= 1) {
            Stat<C> o;
            o.m = __shfl_down_sync(full, w.m, off);
            o.d = __shfl_down_sync(full, w.d, off);
            o.i = __shfl_down_sync(full, w.i, off);
            merge(w, o, itau);
        }
        if (lane == 0) { sm[0] = w.m; sd[0] = w.d; si[0] = w.i; }
    }
    __syncthreads();
    Stat<C> out; out.m = sm[0]; out.d = sd[0]; out.i = si[0];
    __syncthreads();  // the shared slots are reused by the next row
    return out;
}

// Linear index of element k of row r in the original array, whose category axis has
// `inner` elements after it: row r = (o, i) with r = o * inner + i.
__device__ __forceinline__ u64 linear(i64 r, i64 k, i64 n, i64 inner) {
    if (inner == 1) return (u64)(r * n + k);
    i64 o = r / inner, i = r - o * inner;
    return (u64)((o * n + k) * inner + i);
}

template <typename T, typename C>
__device__ void forward(const T* __restrict__ x, const T* __restrict__ noise, T* __restrict__ y,
                        T* __restrict__ hot, i64 rows, i64 n, i64 inner, C tau, u64 key,
                        const u64* __restrict__ key_ptr, u64 stream, int cache) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    C* srow = reinterpret_cast<C*>(smem_raw);
    if (key_ptr != 0) key = key_ptr[0];
    const u32 k0 = (u32)key, k1 = (u32)(key >> 32), s0 = (u32)stream, s1 = (u32)(stream >> 32);
    const bool soft = y != 0;
    // A row too long for shared memory keeps s = x + g in the output buffer between the
    // passes (when it has the compute precision), instead of regenerating the noise.
    const bool spill = soft && !cache && sizeof(T) == sizeof(C);
    const C itau = (C)1 / tau;  // multiply, do not divide, per element
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const i64 base = r * n;
        Stat<C> st; st.m = ninf((C)0); st.d = (C)0; st.i = (i64)0x7fffffffffffffffLL;
        if (noise == 0 && inner == 1 && sizeof(C) == 4) {
            // Four consecutive elements per Philox call, aligned on the array's index.
            const u64 first = (u64)base, last = (u64)(base + n);  // [first, last)
            for (u64 q = (first >> 2) + threadIdx.x; q <= ((last - 1) >> 2); q += blockDim.x) {
                Philox p = philox((u32)q, (u32)(q >> 32), s0, s1, k0, k1);
                #pragma unroll
                for (int w = 0; w < 4; ++w) {
                    u64 L = (q << 2) + w;
                    if (L < first || L >= last) continue;
                    i64 k = (i64)(L - first);
                    C s = to_c(x[base + k]) + (C)gumbel_from(uniform_f(word(p, w)));
                    if (cache) srow[k] = s; else if (spill) store(y + base + k, s);
                    push(st, s, k, itau, soft);
                }
            }
        } else {
            for (i64 k = threadIdx.x; k < n; k += blockDim.x) {
                C g = noise != 0 ? to_c(noise[base + k]) : gumbel_at<C>(linear(r, k, n, inner), k0, k1, s0, s1);
                C s = to_c(x[base + k]) + g;
                if (cache) srow[k] = s; else if (spill) store(y + base + k, s);
                push(st, s, k, itau, soft);
            }
        }
        Stat<C> tot = block_reduce(st, itau);
        const C inv = (C)1 / tot.d;
        for (i64 k = threadIdx.x; k < n; k += blockDim.x) {
            if (hot != 0) store(hot + base + k, (C)(k == tot.i ? 1 : 0));
            if (soft) {
                C s;
                if (cache) {
                    s = srow[k];
                } else if (spill) {
                    s = to_c(y[base + k]);  // written by this block in pass 1
                } else {
                    C g = noise != 0 ? to_c(noise[base + k]) : gumbel_at<C>(linear(r, k, n, inner), k0, k1, s0, s1);
                    s = to_c(x[base + k]) + g;
                }
                store(y + base + k, c_exp((s - tot.m) * itau) * inv);
            }
        }
        __syncthreads();
    }
}

// Gumbel noise, or (exponential != 0) the Exp(1) draws E it is -log of: the same stream.
template <typename T, typename C>
__device__ void noise_kernel(T* __restrict__ out, i64 total, u64 key, const u64* __restrict__ key_ptr,
                             u64 stream, int exponential) {
    if (key_ptr != 0) key = key_ptr[0];
    const u32 k0 = (u32)key, k1 = (u32)(key >> 32), s0 = (u32)stream, s1 = (u32)(stream >> 32);
    for (i64 L = blockIdx.x * (i64)blockDim.x + threadIdx.x; L < total; L += (i64)gridDim.x * blockDim.x) {
        C u = uniform_at<C>((u64)L, k0, k1, s0, s1);
        store(out + L, exponential ? exponential_from(u) : gumbel_from(u));
    }
}

template <typename T, typename C>
__device__ void backward(const T* __restrict__ g, const T* __restrict__ y, T* __restrict__ gx,
                         i64 rows, i64 n, C inv_tau) {
    __shared__ C partial[32];
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const i64 base = r * n;
        C dot = (C)0;
        for (i64 k = threadIdx.x; k < n; k += blockDim.x) dot += to_c(g[base + k]) * to_c(y[base + k]);
        for (int off = 16; off > 0; off >>= 1) dot += __shfl_down_sync(0xffffffffu, dot, off);
        int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
        if (lane == 0) partial[warp] = dot;
        __syncthreads();
        if (warp == 0) {
            C v = lane < nwarps ? partial[lane] : (C)0;
            for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
            if (lane == 0) partial[0] = v;
        }
        __syncthreads();
        const C total = partial[0];
        for (i64 k = threadIdx.x; k < n; k += blockDim.x) {
            C yk = to_c(y[base + k]);
            store(gx + base + k, yk * (to_c(g[base + k]) - total) * inv_tau);
        }
        __syncthreads();
    }
}

#define INSTANTIATE(NAME, T, C)                                                                \
extern "C" __global__ void gs_forward_##NAME(const T* x, const T* noise, T* y, T* hot, i64 rows, \
        i64 n, i64 inner, C tau, u64 key, const u64* key_ptr, u64 stream, int cache) {         \
    forward<T, C>(x, noise, y, hot, rows, n, inner, tau, key, key_ptr, stream, cache);         \
}                                                                                              \
extern "C" __global__ void gs_noise_##NAME(T* out, i64 total, u64 key, const u64* key_ptr,     \
        u64 stream, int exponential) {                                                         \
    noise_kernel<T, C>(out, total, key, key_ptr, stream, exponential);                         \
}                                                                                              \
extern "C" __global__ void gs_backward_##NAME(const T* g, const T* y, T* gx, i64 rows, i64 n,  \
        C inv_tau) {                                                                           \
    backward<T, C>(g, y, gx, rows, n, inv_tau);                                                \
}

INSTANTIATE(float32, float, float)
INSTANTIATE(float64, double, double)
INSTANTIATE(float16, half_t, float)
INSTANTIATE(bfloat16, bf16_t, float)
"""

#: Below this temperature 1 / tau overflows float32; the adapters use the generic path.
MIN_TAU = 1e-30
_SMEM_CACHE_BYTES = 48 * 1024 - 2048  # a row cached in shared memory, below the default limit
_modules: dict[int, Any] = {}
_lock = threading.Lock()
_process_key: int | None = None
_streams = itertools.count(1)


def _module() -> Any:
    device = cupy.cuda.Device().id
    if device not in _modules:
        with _lock:
            if device not in _modules:
                _modules[device] = cupy.RawModule(code=_SOURCE, options=("--std=c++14",))
    return _modules[device]


def kernel(name: str, kind: str) -> Any:
    return _module().get_function(f"gs_{name}_{kind}")


def fresh_key() -> tuple[int, int]:
    """``(key, stream)`` for ``rng=None``: a per-process random key, a new stream per draw."""
    global _process_key
    if _process_key is None:
        _process_key = int.from_bytes(os.urandom(8), "little")
    return _process_key, next(_streams)


def threads_for(n: int) -> int:
    """Threads per row: about 16 elements per thread, a power of two in [32, 1024]."""
    t = 32
    while t < 1024 and t * 16 < n:
        t *= 2
    return t


def _ptr_or_null(a: Any) -> Any:
    return a if a is not None else cupy.uint64(0)


def forward(
    x: Any,
    *,
    kind: str,
    tau: float,
    hard_out: Any | None,
    soft_out: Any | None,
    noise: Any | None,
    key: int,
    key_array: Any | None,
    stream: int,
    inner: int,
) -> None:
    """Launch ``gs_forward`` on a C-contiguous ``x`` of shape ``(rows, n)``.

    ``inner`` maps a row back to the original array's linear index for the noise (see
    ``linear`` in the source): the caller moved the category axis, which had ``inner``
    elements after it, to the end.
    """
    rows, n = x.shape
    if rows == 0 or n == 0:
        return
    itemsize = 8 if kind == "float64" else 4
    cache = soft_out is not None and n * itemsize <= _SMEM_CACHE_BYTES
    threads = threads_for(n)
    blocks = min(rows, 65535 * 16)
    ctype = cupy.float64 if kind == "float64" else cupy.float32
    kernel("forward", kind)(
        (blocks,),
        (threads,),
        (
            x,
            _ptr_or_null(noise),
            _ptr_or_null(soft_out),
            _ptr_or_null(hard_out),
            cupy.int64(rows),
            cupy.int64(n),
            cupy.int64(inner),
            ctype(tau),
            cupy.uint64(key),
            _ptr_or_null(key_array),
            cupy.uint64(stream),
            cupy.int32(1 if cache else 0),
        ),
        shared_mem=n * itemsize if cache else 0,
    )


def noise(
    out: Any, *, kind: str, key: int, key_array: Any | None, stream: int, exponential: bool = False
) -> None:
    """Fill ``out`` (C-contiguous) with the Gumbel noise of ``(key, stream)``.

    With ``exponential=True``, the Exp(1) draws ``E`` (clamped to [tiny, max]) whose
    ``-log`` that noise is: the two forms of one stream.
    """
    total = out.size
    if total == 0:
        return
    threads = 256
    blocks = min(-(-total // threads), 65535 * 32)
    kernel("noise", kind)(
        (blocks,),
        (threads,),
        (
            out,
            cupy.int64(total),
            cupy.uint64(key),
            _ptr_or_null(key_array),
            cupy.uint64(stream),
            cupy.int32(1 if exponential else 0),
        ),
    )


def backward(grad: Any, y: Any, out: Any, *, kind: str, tau: float) -> None:
    """``out = y * (grad - <grad, y>) / tau`` row by row, all C-contiguous ``(rows, n)``."""
    rows, n = y.shape
    if rows == 0 or n == 0:
        return
    ctype = cupy.float64 if kind == "float64" else cupy.float32
    kernel("backward", kind)(
        (min(rows, 65535 * 16),),
        (threads_for(n),),
        (grad, y, out, cupy.int64(rows), cupy.int64(n), ctype(1.0 / tau)),
    )
