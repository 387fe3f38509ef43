#!/usr/bin/env python3
"""Builds the small exporter-shaped ONNX fixtures in models/fixtures/ (random weights).

Needs Debian's python3-torch (1.13, TorchScript exporter) and python3-onnx:
    apt-get update && apt-get install -y python3-torch python3-onnx
    /usr/bin/python3 scripts/make-fixtures.py
then the MultiHeadAttention forms, rewritten from these with toma's own codec:
    npx tsx scripts/make-mha-fixtures.ts

Fixtures (all float32, dynamic batch, static spatial sizes):
  sd_transformer_32x32.onnx  diffusers Transformer2DModel-shaped (use_linear_projection, as SDXL):
                             GroupNorm -> proj_in (Linear) -> 2 BasicTransformerBlocks (LayerNorm,
                             attn1 self, attn2 cross to 77 text tokens with C_text=96, GEGLU FFN,
                             residuals) -> proj_out -> NCHW + residual. C=64, 4 heads x 16, grid 32x32.
                             Attention in the 4-D torch-2/Optimum form (Reshape -> Transpose(0,2,1,3));
                             block 0 scales the scores by a constant Mul (attn1) / Div (attn2),
                             block 1 multiplies q and k by sqrt(1/sqrt(d)) computed at run time
                             (Shape -> Slice -> Cast -> Sqrt -> Reciprocal -> Mul -> Sqrt).
  sd_transformer_64x64.onnx  the same at grid 64x64 with C=32, 2 heads x 16, in the 3-D torch-1 BMM
                             form (Reshape -> Transpose -> Reshape to [B*h, N, d], bmm, Mul scale).
  flux_joint.onnx            a Flux double-stream (MMDiT) block: AdaLN-modulated LayerNorm for image
                             (32x32 = 1024 tokens, given as [B, N, C] tokens: grid unknown to the
                             graph) and text (512 prefix tokens), q/k/v with bias, per-head RMSNorm on
                             q and k, Concat(text, image) on the sequence axis, RoPE on q and k from
                             graph inputs rope_cos / rope_sin [P+N, d], softmax attention, split back,
                             to_out / to_add_out, gates, FFNs. C=64, 2 heads x 32.
  sd_transformer_64x64_static.onnx  the 64x64 model exported with static shapes: the exporter folds
                             the head reshapes into constants that bake the sequence length 4096 (a
                             hazard the matcher reports, with the rewrite that removes it).
  sd_transformer_32x32_ext.onnx (+ sd_transformer_32x32_ext.onnx.data)  the 32x32 model with its
                             weights in an external data file (onnx.save_model save_as_external_data).
  *_mha.onnx                 (scripts/make-mha-fixtures.ts) the attention cores of the three raw models
                             rewritten into com.microsoft::MultiHeadAttention nodes.
Outputs are byte-reproducible (seeded). Tests feed random inputs through onnxruntime-node (no reference
outputs are stored, to keep the files small).
"""
import math
import os
import sys

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
OUT = os.path.join(ROOT, 'models', 'fixtures')
OPSET = 17


class Attention(nn.Module):
    """diffusers Attention with AttnProcessor2_0-like math, written out for the TorchScript exporter."""

    def __init__(self, dim, heads, cross_dim=None, form='4d', scale_mode='mul'):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        kv_dim = cross_dim or dim
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(kv_dim, dim, bias=False)
        self.to_v = nn.Linear(kv_dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)
        self.form = form
        self.scale_mode = scale_mode

    def forward(self, x, context=None):
        ctx = x if context is None else context
        b = x.shape[0]
        q, k, v = self.to_q(x), self.to_k(ctx), self.to_v(ctx)
        h, d = self.heads, self.head_dim
        if self.form == '4d':
            q = q.view(b, -1, h, d).transpose(1, 2)
            k = k.view(b, -1, h, d).transpose(1, 2)
            v = v.view(b, -1, h, d).transpose(1, 2)
            kt = k.transpose(-1, -2)
        else:  # 3-D BMM form (diffusers head_to_batch_dim)
            n, m = q.shape[1], k.shape[1]
            q = q.reshape(b, n, h, d).permute(0, 2, 1, 3).reshape(b * h, n, d)
            k = k.reshape(b, m, h, d).permute(0, 2, 1, 3).reshape(b * h, m, d)
            v = v.reshape(b, m, h, d).permute(0, 2, 1, 3).reshape(b * h, m, d)
            kt = k.transpose(1, 2)
        if self.scale_mode == 'mul':
            s = torch.matmul(q, kt) * (1.0 / math.sqrt(d))
        elif self.scale_mode == 'div':
            s = torch.matmul(q, kt) / math.sqrt(d)
        else:  # 'runtime-sqrt': torch-2 SDPA export, scale from the shape, sqrt applied to q and k
            scale = 1.0 / torch.sqrt(torch._shape_as_tensor(q)[-1:].float())
            root = torch.sqrt(scale)
            s = torch.matmul(q * root, kt * root)
        p = torch.softmax(s, dim=-1)
        o = torch.matmul(p, v)
        if self.form == '4d':
            o = o.transpose(1, 2).reshape(b, -1, h * d)
        else:
            n = o.shape[1]
            o = o.reshape(b, h, n, d).permute(0, 2, 1, 3).reshape(b, n, h * d)
        return self.to_out(o)


class GEGLU(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x):
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, heads, cross_dim, form, scales):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, None, form, scales[0])
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, cross_dim, form, scales[1])
        self.norm3 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(GEGLU(dim, 4 * dim), nn.Linear(4 * dim, dim))

    def forward(self, x, context):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class Transformer2D(nn.Module):
    def __init__(self, dim, heads, cross_dim, form, blocks=2):
        super().__init__()
        self.norm = nn.GroupNorm(32 if dim % 32 == 0 else 8, dim, eps=1e-6)
        self.proj_in = nn.Linear(dim, dim)
        scales = [('mul', 'div'), ('runtime-sqrt', 'runtime-sqrt')]
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(dim, heads, cross_dim, form, scales[i % 2]) for i in range(blocks)])
        self.proj_out = nn.Linear(dim, dim)

    def forward(self, sample, encoder_hidden_states):
        b, c, hh, ww = sample.shape
        res = sample
        x = self.norm(sample)
        x = x.permute(0, 2, 3, 1).reshape(b, hh * ww, c)
        x = self.proj_in(x)
        for blk in self.transformer_blocks:
            x = blk(x, encoder_hidden_states)
        x = self.proj_out(x)
        x = x.reshape(b, hh, ww, c).permute(0, 3, 1, 2)
        return x + res


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d) + 0.1 * torch.randn(d))
        self.eps = eps

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return x * torch.rsqrt(var + self.eps) * self.weight


def apply_rope(x, cos, sin):
    # diffusers apply_rotary_emb (use_real, unbind_dim=-1): pairs (x0, x1) rotate together
    shp = x.shape
    xr = x.reshape(shp[0], shp[1], shp[2], -1, 2)
    x_real, x_imag = xr[..., 0], xr[..., 1]
    rot = torch.stack([-x_imag, x_real], dim=-1).reshape(shp)
    return x * cos + rot * sin


class FluxJointBlock(nn.Module):
    """diffusers FluxTransformerBlock (double-stream) with FluxAttnProcessor math."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)  # affine: torch 1.13 exports elementwise_affine=False with an empty scale input
        self.norm1_context = nn.LayerNorm(dim, eps=1e-6)  # affine: torch 1.13 exports elementwise_affine=False with an empty scale input
        self.mod = nn.Linear(dim, 6 * dim)
        self.mod_context = nn.Linear(dim, 6 * dim)
        self.to_q, self.to_k, self.to_v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.add_q_proj, self.add_k_proj, self.add_v_proj = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.norm_q, self.norm_k = RMSNorm(self.head_dim), RMSNorm(self.head_dim)
        self.norm_added_q, self.norm_added_k = RMSNorm(self.head_dim), RMSNorm(self.head_dim)
        self.to_out = nn.Linear(dim, dim)
        self.to_add_out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)  # affine: torch 1.13 exports elementwise_affine=False with an empty scale input
        self.norm2_context = nn.LayerNorm(dim, eps=1e-6)  # affine: torch 1.13 exports elementwise_affine=False with an empty scale input
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(approximate='tanh'), nn.Linear(4 * dim, dim))
        self.ff_context = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(approximate='tanh'), nn.Linear(4 * dim, dim))

    def heads_split(self, t, b):
        return t.view(b, -1, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, hidden_states, encoder_hidden_states, temb, rope_cos, rope_sin):
        b = hidden_states.shape[0]
        P = encoder_hidden_states.shape[1]
        e = self.mod(F.silu(temb)).unsqueeze(1).chunk(6, dim=-1)
        ec = self.mod_context(F.silu(temb)).unsqueeze(1).chunk(6, dim=-1)
        x = self.norm1(hidden_states) * (1 + e[1]) + e[0]
        c = self.norm1_context(encoder_hidden_states) * (1 + ec[1]) + ec[0]
        q = self.norm_q(self.heads_split(self.to_q(x), b))
        k = self.norm_k(self.heads_split(self.to_k(x), b))
        v = self.heads_split(self.to_v(x), b)
        cq = self.norm_added_q(self.heads_split(self.add_q_proj(c), b))
        ck = self.norm_added_k(self.heads_split(self.add_k_proj(c), b))
        cv = self.heads_split(self.add_v_proj(c), b)
        q = torch.cat([cq, q], dim=2)
        k = torch.cat([ck, k], dim=2)
        v = torch.cat([cv, v], dim=2)
        q = apply_rope(q, rope_cos, rope_sin)
        k = apply_rope(k, rope_cos, rope_sin)
        s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
        o = torch.matmul(torch.softmax(s, dim=-1), v)
        o = o.transpose(1, 2).reshape(b, -1, self.heads * self.head_dim)
        txt, img = o[:, :P], o[:, P:]
        img = self.to_out(img)
        txt = self.to_add_out(txt)
        hidden_states = hidden_states + e[2] * img
        hidden_states = hidden_states + e[5] * self.ff(self.norm2(hidden_states) * (1 + e[4]) + e[3])
        encoder_hidden_states = encoder_hidden_states + ec[2] * txt
        encoder_hidden_states = encoder_hidden_states + ec[5] * self.ff_context(
            self.norm2_context(encoder_hidden_states) * (1 + ec[4]) + ec[3])
        return hidden_states, encoder_hidden_states


def rope_tables(P, H, W, d):
    # Flux-like: text rows at position 0, image rows by (row, col); d/2 frequency pairs, split over 2 axes
    half = d // 2
    pos = np.zeros((P + H * W, 2), np.float64)
    r, cc = np.meshgrid(np.arange(H), np.arange(W), indexing='ij')
    pos[P:, 0], pos[P:, 1] = r.ravel(), cc.ravel()
    freqs = 1.0 / (10000 ** (np.arange(half // 2) / (half // 2)))
    ang = np.concatenate([pos[:, :1] * freqs, pos[:, 1:] * freqs], axis=1)  # [S, half]
    cos = np.repeat(np.cos(ang), 2, axis=1).astype(np.float32)
    sin = np.repeat(np.sin(ang), 2, axis=1).astype(np.float32)
    return cos, sin


def randomize(m, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if p.dim() > 1:
                p.copy_(r / math.sqrt(p.shape[1]))
            elif name.endswith('weight'):  # norm scales
                p.copy_(1 + 0.1 * r)
            else:
                p.copy_(0.1 * r)
    return m


def export(model, args, names, outs, path, dynamic=True):
    dyn = None
    if dynamic:
        dyn = {n: {0: 'batch'} for n in names if n not in ('rope_cos', 'rope_sin')}
        for o in outs:
            dyn[o] = {0: 'batch'}
    torch.onnx.export(model, args, path, input_names=names, output_names=outs, opset_version=OPSET,
                      dynamic_axes=dyn, do_constant_folding=True)
    m = onnx.load(path)
    onnx.checker.check_model(m)
    return m


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    B = 2
    # SD-style stacks
    for (H, C, heads, form, seed) in ((32, 64, 4, '4d', 1), (64, 32, 2, '3d', 2)):
        name = f'sd_transformer_{H}x{H}'
        m = randomize(Transformer2D(C, heads, 96, form).eval(), seed)
        g = torch.Generator().manual_seed(100 + seed)
        sample = torch.randn(B, C, H, H, generator=g)
        ctx = torch.randn(B, 77, 96, generator=g)
        with torch.no_grad():
            y = m(sample, ctx)
        path = os.path.join(OUT, f'{name}.onnx')
        export(m, (sample, ctx), ['sample', 'encoder_hidden_states'], ['out_sample'], path)
        if H == 64:
            export(m, (sample, ctx), ['sample', 'encoder_hidden_states'], ['out_sample'],
                   os.path.join(OUT, f'{name}_static.onnx'), dynamic=False)
        if H == 32:
            model = onnx.load(path)
            ext = os.path.join(OUT, f'{name}_ext.onnx')
            if os.path.exists(ext + '.data'):
                os.remove(ext + '.data')
            onnx.save_model(model, ext, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=f'{name}_ext.onnx.data', size_threshold=1024)

    # Flux-style joint block
    C, heads, P, H = 64, 2, 512, 32
    m = randomize(FluxJointBlock(C, heads).eval(), 3)
    g = torch.Generator().manual_seed(103)
    B = 1
    hs = torch.randn(B, H * H, C, generator=g)
    ehs = torch.randn(B, P, C, generator=g)
    temb = torch.randn(B, C, generator=g)
    cos, sin = rope_tables(P, H, H, C // heads)
    cos_t, sin_t = torch.from_numpy(cos), torch.from_numpy(sin)
    with torch.no_grad():
        y, yc = m(hs, ehs, temb, cos_t, sin_t)
    path = os.path.join(OUT, 'flux_joint.onnx')
    names = ['hidden_states', 'encoder_hidden_states', 'temb', 'rope_cos', 'rope_sin']
    export(m, (hs, ehs, temb, cos_t, sin_t), names, ['out_hidden_states', 'out_encoder_hidden_states'], path)
    for f in sorted(os.listdir(OUT)):
        p = os.path.join(OUT, f)
        if os.path.isfile(p):
            print(f'{os.path.getsize(p):>10}  {f}')


if __name__ == '__main__':
    sys.exit(main())
