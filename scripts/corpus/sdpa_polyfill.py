"""torch.nn.functional.scaled_dot_product_attention for torch 1.13 (Debian 12's python3-torch).

diffusers 0.31's AttnProcessor2_0, JointAttnProcessor2_0 and FluxAttnProcessor2_0 refuse to load
without F.scaled_dot_product_attention (torch >= 2.0). Exports made with torch 2.x write SDPA through
the TorchScript exporter's symbolic, so the corpus reproduces that symbolic's node sequence exactly:
the op is an autograd.Function whose `symbolic` emits the same ONNX ops, and whose `forward`
computes the same arithmetic in eager mode (for the reference outputs and the ground-truth hooks).

Mirrored: `scaled_dot_product_attention` and `_attention_scale` of torch/onnx/symbolic_opset14.py,
the TorchScript exporter's SDPA symbolic added in torch 2.1 (text read at pytorch commit
0787dd0c6d09, the torch 2.1-era file that still imports `_beartype`; registered for opset 14 and
up, so it also writes opset 17 exports). Its node sequence:

    scale  = Cast(Div(Constant 1.0, Sqrt(Cast(Slice(Shape(q), [-1], [INT64_MAX]), float))), float)
             (only when the caller passes no scale; a given scale is a Constant)
    kT     = Transpose(k, perm=[..., -1, -2])
    scores = MatMul(Mul(q, Sqrt(scale)), Mul(kT, Sqrt(scale)))
    scores = Add(scores, mask)                       (float mask)
           | Add(scores, Where(mask, 0, -inf))        (bool mask)
    out    = MatMul(Softmax(scores, axis=-1), v)

is_causal builds a Trilu mask in torch; no diffusers 0.31 image model calls SDPA with is_causal=True,
so that branch refuses rather than guess. dropout_p must be 0 (inference export).
"""
import torch

_INT64_MAX = 9223372036854775807


def _attention_scale_eager(query):
    return 1.0 / torch.sqrt(torch.tensor(float(query.shape[-1]), dtype=query.dtype))


def _float_mask(attn_mask, dtype):
    if attn_mask.dtype == torch.bool:
        zero = torch.zeros((), dtype=dtype)
        neg_inf = torch.full((), float("-inf"), dtype=dtype)
        return torch.where(attn_mask, zero, neg_inf)
    return attn_mask


class _SDPA(torch.autograd.Function):
    @staticmethod
    def forward(ctx, query, key, value, attn_mask, scale):
        s = _attention_scale_eager(query) if scale is None else torch.tensor(scale, dtype=query.dtype)
        root = torch.sqrt(s)
        scores = torch.matmul(query * root, key.transpose(-1, -2) * root)
        if attn_mask is not None:
            scores = scores + _float_mask(attn_mask, scores.dtype)
        return torch.matmul(torch.softmax(scores, dim=-1), value)

    @staticmethod
    def symbolic(g, query, key, value, attn_mask, scale):
        if scale is None:
            onnx_float = query.type().scalarType()
            to = {"Float": 1, "Half": 10, "BFloat16": 16, "Double": 11}[onnx_float]
            shape = g.op("Shape", query)
            last = g.op(
                "Slice",
                shape,
                g.op("Constant", value_t=torch.tensor([-1], dtype=torch.int64)),
                g.op("Constant", value_t=torch.tensor([_INT64_MAX], dtype=torch.int64)),
            )
            embedding_size = g.op("Cast", last, to_i=to)
            one = g.op("Constant", value_t=torch.tensor([1.0], dtype=torch.float))
            scale_v = g.op("Div", one, g.op("Sqrt", embedding_size))
            scale_v = g.op("Cast", scale_v, to_i=to)
        else:
            scale_v = g.op("Constant", value_t=torch.tensor(scale, dtype=torch.float))

        rank = query.type().dim() if key.type().dim() is None else key.type().dim()
        perm = list(range(rank))
        perm[-1], perm[-2] = perm[-2], perm[-1]
        key_t = g.op("Transpose", key, perm_i=perm)

        q_scaled = g.op("Mul", query, g.op("Sqrt", scale_v))
        k_scaled = g.op("Mul", key_t, g.op("Sqrt", scale_v))
        scores = g.op("MatMul", q_scaled, k_scaled)

        if attn_mask is not None and not _is_none_value(attn_mask):
            if attn_mask.type().scalarType() == "Bool":
                zero = g.op("Constant", value_t=torch.tensor([0.0]))
                neg_inf = g.op("Constant", value_t=torch.tensor([-float("inf")]))
                attn_mask = g.op("Where", attn_mask, zero, neg_inf)
            scores = g.op("Add", scores, attn_mask)

        weights = g.op("Softmax", scores, axis_i=-1)
        return g.op("MatMul", weights, value)


def _is_none_value(v):
    return hasattr(v, "node") and v.node().mustBeNone()


def scaled_dot_product_attention(
    query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None
):
    if dropout_p != 0.0:
        raise ValueError("sdpa polyfill: dropout_p must be 0.0 (inference export only)")
    if is_causal:
        raise ValueError("sdpa polyfill: is_causal is not mirrored (no diffusers image model uses it)")
    return _SDPA.apply(query, key, value, attn_mask, None if scale is None else float(scale))


def install():
    """Make diffusers see torch >= 2.0's SDPA; refuses to shadow a real one."""
    import torch.nn.functional as F

    existing = getattr(F, "scaled_dot_product_attention", None)
    if existing is not None and existing is not scaled_dot_product_attention:
        raise RuntimeError("torch already has scaled_dot_product_attention; the polyfill is for torch 1.13")
    F.scaled_dot_product_attention = scaled_dot_product_attention
