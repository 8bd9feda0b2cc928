"""Fractional-position rotary embeddings of LTX-2 (ltx_core/model/transformer/rope.py).

Angles: omega_k * (2 * midpoint_a / max_pos_a - 1), frequency-major and axis-minor, with the
frequency ladder omega_k = theta ** linspace(0, 1, n) * pi / 2 (numpy float64 when the checkpoint
says `frequencies_precision: float64`, else float32 exactly as torch computes it on the CPU, emulated
below). Tables are computed in float32 and cast to the compute dtype.

Table layouts (ltx.ops.apply_rope rotates with them; unlike the reference, heads stay after tokens so q/k need no transpose):
    split:       (cos, sin) each (B, T, H, Dh/2); rotates the two halves of every head.
    interleaved: (cos, sin) each (B, T, dim); rotates adjacent pairs.
"""

from __future__ import annotations

import math
from functools import lru_cache

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

ROPE_TYPES = ("split", "interleaved")


# ---------------------------------------------------------------------------------------------
# The reference's float32 ladder, bit for bit (issue #27). ltx-core's generate_freq_grid_pytorch is
# `theta ** torch.linspace(0, 1, n, dtype=float32)` then `* math.pi / 2`, always on the CPU (no
# device argument). What torch 2.x's CPU kernels do there, in an x86-64 build dispatching to AVX2 or
# AVX-512 (ATEN_CPU_CAPABILITY; every machine the reference runs on in practice):
#   linspace: step = 1.0f / (n - 1) in float32; i < n // 2: step * i; else 1 - step * (n - 1 - i),
#             which the compiler fuses into one FMA (the "default" capability build does not fuse).
#   pow:      the vectorised loop takes 2 * Vectorized<float>::size() elements a step through Sleef's
#             powf (u10, FMA build), the remainder (n mod 32 on AVX-512, n mod 16 on AVX2) through
#             std::pow, i.e. glibc's powf (all of it on "default"); neither is correctly rounded
#             (about 1.8% and 0.06% of the entries are 1 ulp off), so numpy's power (libm or SVML)
#             differs from both.
#   * math.pi: a float32 multiply by float32(pi); / 2: exact.
# The emulations below use only correctly rounded numpy float32/float64 arithmetic (FMAs emulated
# exactly), so they give the same bits on every machine. Checked against torch 2.13 (glibc 2.36) for
# every n below 4200 at theta 10000 on AVX-512, AVX2 and "default", and for thetas 0.5 to 1e6 and n
# up to 65537 on AVX-512 and AVX2; much longer loops (n ~ 1e5) split over threads (torch's
# GRAIN_SIZE), each with its own remainder, which this does not model.
TORCH_VECTOR_FLOATS = (
    16  # floats in a Vectorized<float> of the reference's CPU build (AVX-512; AVX2 8; 0: default)
)

_F32, _F64 = np.float32, np.float64


def _two_sum(a, b):
    s = a + b
    v = s - a
    return s, (a - (s - v)) + (b - v)


def _round_to_odd(s: np.ndarray, err: np.ndarray) -> np.ndarray:
    """s = RN(x), err = x - s exactly: x rounded to odd at s's precision."""
    bits = s.view(np.int64 if s.dtype == _F64 else np.int32)
    away = np.where(err > 0, np.inf, -np.inf).astype(s.dtype)
    return np.where((err != 0) & (bits & 1 == 0), np.nextafter(s, away), s)


def _fma32(a, b, c) -> np.ndarray:
    """float32 fused multiply-add: the product is exact in float64, the sum is rounded to odd in
    float64 then to nearest in float32 (exact since 53 >= 24 + 2)."""
    p = np.asarray(a, _F32).astype(_F64) * np.asarray(b, _F32).astype(_F64)
    s, e = _two_sum(p, np.asarray(c, _F32).astype(_F64))
    return _round_to_odd(np.asarray(s), np.asarray(e)).astype(_F32)


def _fma64(a, b, c) -> np.ndarray:
    """float64 fused multiply-add: Dekker's exact product, then Boldo and Melquiond's correctly
    rounded three-term sum (round-to-odd of the low parts)."""
    a, b, c = (np.asarray(v, _F64) for v in (a, b, c))
    split = _F64(134217729.0)  # 2^27 + 1
    p = a * b
    t = split * a
    ah = t - (t - a)
    al = a - ah
    t = split * b
    bh = t - (t - b)
    bl = b - bh
    pe = ((ah * bh - p) + ah * bl + al * bh) + al * bl  # p + pe = a * b
    th, tl = _two_sum(c, p)
    v, ve = _two_sum(tl, pe)
    return th + _round_to_odd(np.asarray(v), np.asarray(ve))


def _torch_linspace01(n: int, fused: bool = True) -> np.ndarray:
    """torch.linspace(0, 1, n, dtype=float32) on the CPU (fused: an AVX2/AVX-512 build)."""
    if n == 1:
        return np.zeros(1, _F32)
    i = np.arange(n)
    step = _F32(1) / _F32(max(n - 1, 1))
    head = i.astype(_F32) * step  # start (0) + step * i
    k = (n - 1 - i).astype(_F32)
    tail = _fma32(-step, k, _F32(1)) if fused else _F32(1) - step * k  # end - step * (n - 1 - i)
    return np.where(i < n // 2, head, tail).astype(_F32)


# Sleef 3.x xpowf (sleefsimdsp.c, ENABLE_FMA_SP): double-float log and exp. Pairs are (hi, lo).
def _df_mul_f(x, y):  # dfmul_vf2_vf2_vf
    s = x[0] * y
    return s, _fma32(x[1], y, _fma32(x[0], y, -s))


def _df_mul(x, y):  # dfmul_vf2_vf2_vf2
    s = x[0] * y[0]
    return s, _fma32(x[0], y[1], _fma32(x[1], y[0], _fma32(x[0], y[0], -s)))


def _df_squ(x):  # dfsqu_vf2_vf2
    s = x[0] * x[0]
    return s, _fma32(x[0] + x[0], x[1], _fma32(x[0], x[0], -s))


def _df_add(x, y):  # dfadd_vf2_vf2_vf2
    s = x[0] + y[0]
    return s, (((x[0] - s) + y[0]) + x[1]) + y[1]


def _df_add2(x, y):  # dfadd2_vf2_vf2_vf2
    s = x[0] + y[0]
    v = s - x[0]
    return s, ((x[0] - (s - v)) + (y[0] - v)) + (x[1] + y[1])


def _df_add2_f(x, y):  # dfadd2_vf2_vf2_vf
    s = x[0] + y
    v = s - x[0]
    return s, ((x[0] - (s - v)) + (y - v)) + x[1]


def _f_add2_f(x, y):  # dfadd2_vf2_vf_vf
    s = x + y
    v = s - x
    return s, (x - (s - v)) + (y - v)


def _df_div(n, d):  # dfdiv_vf2_vf2_vf2
    t = _F32(1) / d[0]
    s = n[0] * t
    u = _fma32(t, n[0], -s)
    v = _fma32(-d[1], t, _fma32(-d[0], t, _F32(1)))
    return s, _fma32(s, v, _fma32(n[1], t, u))


def _sleef_logkf(d: np.float32) -> tuple[np.float32, np.float32]:
    """logkf(d) for a positive normal float32 (exponent and mantissa as AVX-512's getexp/getmant)."""
    e = _F32(math.frexp(float(d * _F32(1 / 0.75)))[1] - 1)  # getexp: floor(log2)
    mf, ef = math.frexp(float(d))  # mantissa normalised to [0.75, 1.5)
    m = _F32(mf * 2 if mf < 0.75 else mf)
    x = _df_div(_f_add2_f(_F32(-1), m), _f_add2_f(_F32(1), m))
    x2 = _df_squ(x)
    t = _F32(0.240320354700088500976562)
    t = _fma32(t, x2[0], _F32(0.285112679004669189453125))
    t = _fma32(t, x2[0], _F32(0.400007992982864379882812))
    c = (_F32(0.66666662693023681640625), _F32(3.69183861259614332084311e-09))
    s = _df_mul_f((_F32(0.69314718246459960938), _F32(-1.904654323148236017e-09)), e)
    s = _df_add(s, (x[0] * _F32(2), x[1] * _F32(2)))
    s = _df_add(s, _df_mul(_df_mul(x2, x), _df_add2(_df_mul_f(x2, t), c)))
    return _F32(s[0]), _F32(s[1])


def _sleef_expkf(d) -> np.ndarray:
    u = (d[0] + d[1]) * _F32(1.442695040888963407359924681001892137426645954152985934135449406931)
    q = np.rint(u).astype(np.int32)  # cvtps_epi32: nearest, ties to even
    qf = q.astype(_F32)
    s = _df_add2_f(d, qf * -_F32(0.693145751953125))
    s = _df_add2_f(s, qf * -_F32(1.428606765330187045e-06))
    h = s[0] + s[1]  # dfnormalize
    s = (h, (s[0] - h) + s[1])
    u = _F32(0.00136324646882712841033936)
    for c in (0.00836596917361021041870117, 0.0416710823774337768554688, 0.166665524244308471679688):
        u = _fma32(u, s[0], _F32(c))
    u = _fma32(u, s[0], _F32(0.499999850988388061523438))
    t = _df_add(s, _df_mul_f(_df_squ(s), u))
    h = _F32(1) + t[0]  # dfadd_vf2_vf_vf2
    t = (h, ((_F32(1) - h) + t[0]) + t[1])
    u = np.ldexp(t[0] + t[1], q).astype(_F32)
    return np.where(d[0] < _F32(-104), _F32(0), u).astype(_F32)


def _sleef_powf(x: np.float32, y: np.ndarray) -> np.ndarray:
    """Sleef_powf*_u10 for x > 0, finite y."""
    r = _sleef_expkf(_df_mul_f(_sleef_logkf(x), y))
    r = np.where(np.isnan(r), _F32(np.inf), r)
    return np.where((y == 0) | (x == 1), _F32(1), r).astype(_F32)


# glibc >= 2.28 powf (sysdeps/ieee754/flt-32/e_powf.c, from Arm's optimized-routines; x86-64 has no
# TOINT_INTRINSICS, its FMA ifunc variant fuses the a * b + c below): tables powf_log2_data.c and
# exp2f_data.c (EXP2F_TABLE_BITS 5).
_H = float.fromhex
# fmt: off
_POWF_LOG2_TAB = [
    (_H(a), _H(b)) for a, b in (
        ("0x1.661ec79f8f3bep+0", "-0x1.efec65b963019p-2"), ("0x1.571ed4aaf883dp+0", "-0x1.b0b6832d4fca4p-2"),
        ("0x1.49539f0f010bp+0", "-0x1.7418b0a1fb77bp-2"), ("0x1.3c995b0b80385p+0", "-0x1.39de91a6dcf7bp-2"),
        ("0x1.30d190c8864a5p+0", "-0x1.01d9bf3f2b631p-2"), ("0x1.25e227b0b8eap+0", "-0x1.97c1d1b3b7afp-3"),
        ("0x1.1bb4a4a1a343fp+0", "-0x1.2f9e393af3c9fp-3"), ("0x1.12358f08ae5bap+0", "-0x1.960cbbf788d5cp-4"),
        ("0x1.0953f419900a7p+0", "-0x1.a6f9db6475fcep-5"), ("0x1p+0", "0x0p+0"),
        ("0x1.e608cfd9a47acp-1", "0x1.338ca9f24f53dp-4"), ("0x1.ca4b31f026aap-1", "0x1.476a9543891bap-3"),
        ("0x1.b2036576afce6p-1", "0x1.e840b4ac4e4d2p-3"), ("0x1.9c2d163a1aa2dp-1", "0x1.40645f0c6651cp-2"),
        ("0x1.886e6037841edp-1", "0x1.88e9c2c1b9ff8p-2"), ("0x1.767dcf5534862p-1", "0x1.ce0a44eb17bccp-2"),
    )
]
_POWF_LOG2_POLY = [_H(a) for a in (
    "0x1.27616c9496e0bp-2", "-0x1.71969a075c67ap-2", "0x1.ec70a6ca7baddp-2", "-0x1.7154748bef6c8p-1",
    "0x1.71547652ab82bp0",
)]
_EXP2F_TAB = np.array([
    0x3FF0000000000000, 0x3FEFD9B0D3158574, 0x3FEFB5586CF9890F, 0x3FEF9301D0125B51,
    0x3FEF72B83C7D517B, 0x3FEF54873168B9AA, 0x3FEF387A6E756238, 0x3FEF1E9DF51FDEE1,
    0x3FEF06FE0A31B715, 0x3FEEF1A7373AA9CB, 0x3FEEDEA64C123422, 0x3FEECE086061892D,
    0x3FEEBFDAD5362A27, 0x3FEEB42B569D4F82, 0x3FEEAB07DD485429, 0x3FEEA47EB03A5585,
    0x3FEEA09E667F3BCD, 0x3FEE9F75E8EC5F74, 0x3FEEA11473EB0187, 0x3FEEA589994CCE13,
    0x3FEEACE5422AA0DB, 0x3FEEB737B0CDC5E5, 0x3FEEC49182A3F090, 0x3FEED503B23E255D,
    0x3FEEE89F995AD3AD, 0x3FEEFF76F2FB5E47, 0x3FEF199BDD85529C, 0x3FEF3720DCEF9069,
    0x3FEF5818DCFBA487, 0x3FEF7C97337B9B5F, 0x3FEFA4AFA2A490DA, 0x3FEFD0765B6E4540,
], dtype=np.uint64)
_EXP2F_POLY = [_H(a) for a in ("0x1.c6af84b912394p-5", "0x1.ebfce50fac4f3p-3", "0x1.62e42ff0c52d6p-1")]
# fmt: on
_EXP2F_SHIFT = _H("0x1.8p+52") / 32


def _glibc_log2f(x: np.float32) -> np.float64:
    """log2_inline: log2(x) in float64 for a positive normal float32."""
    ix = int(np.array(x, _F32).view(np.uint32))
    tmp = (ix - 0x3F330000) & 0xFFFFFFFF
    top = tmp & 0xFF800000
    invc, logc = _POWF_LOG2_TAB[(tmp >> 19) % 16]
    z = _F64(np.array((ix - top) & 0xFFFFFFFF, np.uint32).view(_F32))
    k = int(np.array(top, np.uint32).view(np.int32)) >> 23
    a = [_F64(c) for c in _POWF_LOG2_POLY]
    r = _fma64(z, invc, -1.0)
    r2 = r * r
    y = _fma64(a[0], r, a[1])
    p = _fma64(a[2], r, a[3])
    r4 = r2 * r2
    q = _fma64(a[4], r, _F64(logc) + _F64(k))
    q = _fma64(p, r2, q)
    return _F64(_fma64(y, r4, q))


def _glibc_powf(x: np.float32, y: np.ndarray) -> np.ndarray:
    """glibc powf for x > 0 normal and |y * log2(x)| < 126."""
    xd = y.astype(_F64) * _glibc_log2f(x)
    kd = xd + _F64(_EXP2F_SHIFT)
    ki = kd.view(np.uint64)
    kd = kd - _F64(_EXP2F_SHIFT)
    r = xd - kd
    s = (_EXP2F_TAB[ki % np.uint64(32)] + (ki << np.uint64(47))).view(_F64)
    c = [_F64(v) for v in _EXP2F_POLY]
    z = _fma64(c[0], r, c[1])
    out = _fma64(z, r * r, _fma64(c[2], r, _F64(1))) * s
    return np.where((y == 0) | (x == 1), _F32(1), out.astype(_F32)).astype(_F32)


def _torch_pow(theta: float, y: np.ndarray, vector_floats: int = TORCH_VECTOR_FLOATS) -> np.ndarray:
    """`theta ** y` for a float32 tensor y on torch's CPU: Sleef over whole double vectors, glibc after."""
    x = _F32(theta)
    if not (2.0**-125 < float(x) < 2.0**125):
        raise ValueError(f"RoPE theta {theta} is outside the float32 ladder's range")
    body = len(y) // (2 * vector_floats) * (2 * vector_floats) if vector_floats else 0
    return np.concatenate([_sleef_powf(x, y[:body]), _glibc_powf(x, y[body:])]).astype(_F32)


def torch_ladder(theta: float, n: int, vector_floats: int = TORCH_VECTOR_FLOATS) -> np.ndarray:
    """generate_freq_grid_pytorch's n frequencies, bit for bit: theta ** linspace(0, 1, n) * pi / 2 in
    float32 as torch computes it on the CPU; vector_floats 0 is the "default" (no AVX) capability."""
    omega = _torch_pow(theta, _torch_linspace01(n, fused=vector_floats > 0), vector_floats)
    return ((omega * _F32(math.pi)) / _F32(2)).astype(_F32)


@lru_cache(maxsize=16)
def _ladder(theta: float, n_axes: int, dim: int, double_precision: bool) -> np.ndarray:
    n = dim // (2 * n_axes)
    if double_precision:  # generate_freq_grid_np
        exps = np.linspace(np.log(1.0) / np.log(theta), np.log(theta) / np.log(theta), n, dtype=np.float64)
        out = (np.power(theta, exps) * math.pi / 2).astype(np.float32)
    else:  # generate_freq_grid_pytorch
        out = torch_ladder(theta, n)
    out.flags.writeable = False  # cached: shared by every caller
    return out


def ladder(theta: float, n_axes: int, dim: int, double_precision: bool = True) -> np.ndarray:
    """(dim // (2 * n_axes),) float32 angular frequencies as numpy (read-only): the reference's
    generate_freq_grid_np when double_precision, else its generate_freq_grid_pytorch, bit for bit."""
    return _ladder(float(theta), int(n_axes), int(dim), bool(double_precision))


def frequency_ladder(theta: float, n_axes: int, dim: int, double_precision: bool = True) -> mx.array:
    """(dim // (2 * n_axes),) float32 angular frequencies (see `ladder`)."""
    return mx.array(ladder(theta, n_axes, dim, double_precision))


def rope_angles(
    positions: mx.array,
    dim: int,
    max_pos: list[int] | tuple[int, ...],
    theta: float = 10000.0,
    double_precision: bool = True,
    use_middle: bool = True,
) -> mx.array:
    """(B, n_axes, T, 2) bounds -> (B, T, n * n_axes) float32 angles."""
    n_axes = positions.shape[1]
    if n_axes != len(max_pos):
        raise ValueError(f"positions have {n_axes} axes but max_pos {list(max_pos)} has {len(max_pos)}")
    pos = positions.astype(mx.float32) if positions.dtype != mx.bfloat16 else positions
    grid = (pos[..., 0] + pos[..., 1]) / 2.0 if use_middle else pos[..., 0]  # (B, A, T), reference dtype
    frac = mx.stack([grid[:, a] / max_pos[a] for a in range(n_axes)], axis=-1)  # (B, T, A)
    frac = (frac * 2 - 1).astype(mx.float32)
    omega = frequency_ladder(theta, n_axes, dim, double_precision)  # (n,)
    angles = omega[:, None] * frac[:, :, None, :]  # (B, T, n, A): frequency-major, axis-minor
    return angles.reshape(*angles.shape[:2], -1)


def precompute_rope(
    positions: mx.array,
    dim: int,
    heads: int,
    max_pos: list[int] | tuple[int, ...],
    rope_type: str = "split",
    theta: float = 10000.0,
    double_precision: bool = True,
    dtype: mx.Dtype = mx.float32,
    use_middle: bool = True,
) -> tuple[mx.array, mx.array]:
    """cos/sin tables for `dim` channels split over `heads` (layouts in the module docstring)."""
    angles = rope_angles(positions, dim, max_pos, theta, double_precision, use_middle)  # (B, T, N)
    cos, sin = mx.cos(angles), mx.sin(angles)
    b, t, n = angles.shape
    if rope_type == "split":
        pad = dim // 2 - n
        if pad:
            cos = mx.concatenate([mx.ones((b, t, pad), cos.dtype), cos], axis=-1)
            sin = mx.concatenate([mx.zeros((b, t, pad), sin.dtype), sin], axis=-1)
        cos, sin = cos.reshape(b, t, heads, -1), sin.reshape(b, t, heads, -1)
    elif rope_type == "interleaved":
        cos, sin = mx.repeat(cos, 2, axis=-1), mx.repeat(sin, 2, axis=-1)
        pad = dim % (2 * positions.shape[1])
        if pad:
            cos = mx.concatenate([mx.ones((b, t, pad), cos.dtype), cos], axis=-1)
            sin = mx.concatenate([mx.zeros((b, t, pad), sin.dtype), sin], axis=-1)
    else:
        raise ValueError(f"rope_type {rope_type!r} is not one of {ROPE_TYPES}")
    return cos.astype(dtype), sin.astype(dtype)
