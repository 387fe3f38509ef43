"""Two places where torch 1.13's ONNX symbolics differ from torch 2.x's; the corpus registers the
torch 2.x behaviour (opset 17 only) so its exports look like the ones users make today.

1. aten::layer_norm (torch/onnx/symbolic_opset17.py). torch 1.13 passes an absent weight/bias
   through, so nn.LayerNorm(elementwise_affine=False) -- SD3, Flux, PixArt and DiT's AdaLayerNorm* --
   becomes a LayerNormalization with an empty scale input, which the ONNX checker rejects. torch 2.x
   writes Constant ones / zeros of normalized_shape instead. Affine LayerNorms export as before.

2. aten::repeat_interleave with one repeat count (symbolic_opset13.repeat_interleave). torch 1.13
   falls back to the opset-9 form: SplitToSequence + Loop over every slice (for Flux's RoPE table,
   `freqs.cos().repeat_interleave(2, dim=1)`). torch 2.x (symbolic_helper.
   _repeat_interleave_single_value_repeat_helper, read in the torch 2.1 source) writes
   Unsqueeze(dim+1) -> Tile(constant [1,..,repeats,..]) -> flatten(dim, dim+1). Vector repeats still
   take torch 1.13's path.
"""
import torch
from torch.onnx import symbolic_helper


@symbolic_helper.parse_args("v", "is", "v", "v", "f", "none")
def _layer_norm(g, input, normalized_shape, weight, bias, eps, cudnn_enable):
    dtype = {"Float": torch.float32, "Half": torch.float16, "Double": torch.float64, "BFloat16": torch.bfloat16}.get(
        input.type().scalarType(), torch.float32
    )
    if symbolic_helper._is_none(weight):
        weight = g.op("Constant", value_t=torch.ones(normalized_shape, dtype=dtype))
    if symbolic_helper._is_none(bias):
        bias = g.op("Constant", value_t=torch.zeros(normalized_shape, dtype=dtype))
    return g.op("LayerNormalization", input, weight, bias, epsilon_f=eps, axis_i=-len(normalized_shape))


def _single_repeat(repeats):
    value = symbolic_helper._maybe_get_const(repeats, "t")
    if isinstance(value, int):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return int(value.item())
    return None


def _repeat_interleave(g, self, repeats, dim=None, output_size=None):
    from torch.onnx import symbolic_opset9, symbolic_opset13

    reps = _single_repeat(repeats)
    rank = symbolic_helper._get_tensor_rank(self)
    if reps is not None and rank is not None and not symbolic_helper._is_none(dim):
        d = symbolic_helper._get_const(dim, "i", "dim")
        if d < 0:
            d += rank
        unsqueezed = symbolic_helper._unsqueeze_helper(g, self, [d + 1])
        per_dim = torch.ones(rank + 1, dtype=torch.int64)
        per_dim[d + 1] = reps
        tiled = g.op("Tile", unsqueezed, g.op("Constant", value_t=per_dim))
        return symbolic_opset9.flatten(g, tiled, d, d + 1)
    return symbolic_opset13.repeat_interleave(g, self, repeats, dim, output_size)


def install(opset):
    if opset >= 17:
        torch.onnx.register_custom_op_symbolic("aten::layer_norm", _layer_norm, opset)
        torch.onnx.register_custom_op_symbolic("aten::repeat_interleave", _repeat_interleave, opset)
