"""Building blocks of the LTX-2 transformer: timestep embeddings, AdaLN-single, caption
projection, attention with q/k RMSNorm and RoPE, feed-forward (ltx_core/model/transformer/*)."""

from __future__ import annotations

import math
from functools import lru_cache

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import numpy as np  # noqa: E402

from ltx import ops  # noqa: E402
from ltx.ops import Linear  # noqa: E402

TIMESTEP_CHANNELS = 256


@lru_cache(maxsize=4)
def _timestep_freqs(half: int, max_period: float) -> np.ndarray:
    # float32 exponent as in the reference, exp correctly rounded (torch's is within 1 ulp of it)
    exponent = np.float32(-math.log(max_period)) * np.arange(half, dtype=np.float32) / np.float32(half)
    return np.exp(exponent.astype(np.float64)).astype(np.float32)


def timestep_embedding(
    t: mx.array, channels: int = TIMESTEP_CHANNELS, max_period: float = 10000.0
) -> mx.array:
    """Sinusoidal features (N,) -> (N, channels) float32, [cos, sin] order (flip_sin_to_cos)."""
    freqs = mx.array(_timestep_freqs(channels // 2, float(max_period)))
    args = t.astype(mx.float32)[:, None] * freqs[None]  # (N, half)
    return mx.concatenate([mx.cos(args), mx.sin(args)], axis=-1)


class TimestepEmbedding(nn.Module):
    def __init__(self, dim: int, in_channels: int = TIMESTEP_CHANNELS):
        super().__init__()
        self.linear_1 = Linear(in_channels, dim)
        self.linear_2 = Linear(dim, dim)

    def __call__(self, x: mx.array) -> mx.array:
        return self.linear_2(nn.silu(self.linear_1(x)))


class _CombinedEmbedding(nn.Module):
    # checkpoint path: <adaln>.emb.timestep_embedder.linear_{1,2}
    def __init__(self, dim: int):
        super().__init__()
        self.timestep_embedder = TimestepEmbedding(dim)


class AdaLayerNormSingle(nn.Module):
    """t (N,) -> (modulation (N, coefficient * dim), embedded timestep (N, dim))."""

    def __init__(self, dim: int, coefficient: int):
        super().__init__()
        self.emb = _CombinedEmbedding(dim)
        self.linear = Linear(dim, coefficient * dim)

    def __call__(self, t: mx.array, dtype: mx.Dtype) -> tuple[mx.array, mx.array]:
        embedded = self.emb.timestep_embedder(timestep_embedding(t).astype(dtype))
        return self.linear(nn.silu(embedded)), embedded


class TextProjection(nn.Module):
    """PixArt caption projection: linear_1 -> GELU(tanh) -> linear_2."""

    def __init__(self, in_features: int, dim: int):
        super().__init__()
        self.linear_1 = Linear(in_features, dim)
        self.linear_2 = Linear(dim, dim)

    def __call__(self, x: mx.array) -> mx.array:
        return self.linear_2(nn.gelu_approx(self.linear_1(x)))


class _Project(nn.Module):
    # checkpoint path: ff.net.0.proj
    def __init__(self, dim: int, hidden: int, bias: bool = True):
        super().__init__()
        self.proj = Linear(dim, hidden, bias=bias)


class FeedForward(nn.Module):
    # bias=False: LTX-2.5's video feed-forward (ff_bias); its audio one keeps the biases
    def __init__(self, dim: int, mult: int = 4, bias: bool = True):
        super().__init__()
        self.net = [_Project(dim, dim * mult, bias), nn.Identity(), Linear(dim * mult, dim, bias=bias)]

    def __call__(self, x: mx.array) -> mx.array:
        h = self.net[0].proj(x)  # (B, T, 4D)
        return self.net[2](ops.gelu_tanh(h))


class Attention(nn.Module):
    """Multi-head attention; q/k RMSNorm over the full inner dim, RoPE on q and k, optional
    per-head gating (LTX-2.3: out * 2 sigmoid(to_gate_logits(x)))."""

    def __init__(
        self,
        query_dim: int,
        heads: int,
        dim_head: int,
        context_dim: int | None = None,
        eps: float = 1e-6,
        gated: bool = False,
    ):
        super().__init__()
        inner = heads * dim_head
        context_dim = query_dim if context_dim is None else context_dim
        self.heads, self.dim_head, self.eps = heads, dim_head, eps
        self.scale = dim_head**-0.5
        self.q_norm = nn.RMSNorm(inner, eps=eps)
        self.k_norm = nn.RMSNorm(inner, eps=eps)
        self.to_q = Linear(query_dim, inner)
        self.to_k = Linear(context_dim, inner)
        self.to_v = Linear(context_dim, inner)
        if gated:
            self.to_gate_logits = Linear(query_dim, heads)
        self.to_out = [Linear(inner, query_dim)]

    def _heads(self, x: mx.array) -> mx.array:
        b, t, _ = x.shape
        return x.reshape(b, t, self.heads, self.dim_head).transpose(0, 2, 1, 3)  # (B, H, T, Dh)

    def __call__(
        self,
        x: mx.array,
        context: mx.array | None = None,
        pe=None,
        k_pe=None,
        mask: mx.array | None = None,
        skip: bool = False,
        keep: mx.array | None = None,
    ) -> mx.array:
        """skip: value pass-through (STG); keep (B, 1, 1) in {0, 1}: per-sample mix of the two."""
        context = x if context is None else context
        v = self.to_v(context)  # (B, S, inner)
        if skip:
            out = v
        else:
            eps = float(self.eps)
            if pe is None:
                q = ops.rms_norm(self.to_q(x), self.q_norm.weight, eps)
                k = ops.rms_norm(self.to_k(context), self.k_norm.weight, eps)
            else:
                q = ops.rms_norm_rope(self.to_q(x), self.q_norm.weight, pe, eps)
                k = ops.rms_norm_rope(
                    self.to_k(context), self.k_norm.weight, pe if k_pe is None else k_pe, eps
                )
            b, t, _ = q.shape
            out = ops.attention(
                self._heads(q), self._heads(k), self._heads(v), self.scale, mask
            )  # (B, H, T, Dh)
            out = out.transpose(0, 2, 1, 3).reshape(b, t, -1)
            if keep is not None:
                out = out * keep + v * (1 - keep)
        if "to_gate_logits" in self:
            b, t, _ = out.shape
            gates = 2.0 * mx.sigmoid(self.to_gate_logits(x))  # (B, T, H)
            out = (out.reshape(b, t, self.heads, -1) * gates[..., None]).reshape(b, t, -1)
        return self.to_out[0](out)
