#!/usr/bin/python3
"""A small MNIST classifier for the demo's metrics, exported to models/mnist_classifier.onnx.

    nice -n 19 /usr/bin/python3 models/train_classifier.py      # trains, tests, exports

Input  x        [B, 1, 32, 32] float32, pixels in [0, 1] (0 = background), digits padded 28 -> 32
                (a DiT sample x in [-1, 1] becomes (clamp(x, -1, 1) + 1) / 2).
Output logits   [B, 10] float32
       features [B, 128] float32: the penultimate layer (after ReLU), for the feature-cosine metric
                (the demo's analogue of the DINO score).
CNN: 3 x (Conv3x3 -> ReLU -> MaxPool2) with 16/32/64 channels, Linear 1024 -> 128 -> ReLU (features)
-> Dropout -> Linear 128 -> 10. Adam, 3 epochs of batch 128, random shifts of up to 2 pixels.
"""
import argparse
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


class Classifier(nn.Module):
    def __init__(self, feat=128):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 4 * 4, feat)
        self.drop = nn.Dropout(0.2)
        self.fc2 = nn.Linear(feat, 10)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)   # 16x16
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)   # 8x8
        h = F.max_pool2d(F.relu(self.conv3(h)), 2)   # 4x4
        feats = F.relu(self.fc1(h.flatten(1)))
        return self.fc2(self.drop(feats)), feats


def load_classifier(path):
    ck = torch.load(path)
    m = Classifier()
    m.load_state_dict(ck['model'])
    m.eval()
    return m


def shift(x, gen, max_shift=2):
    """Random translation by up to max_shift pixels (zero fill), per batch."""
    dx, dy = (torch.randint(-max_shift, max_shift + 1, (2,), generator=gen)).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))  # the 2-pixel zero border makes roll a shift


@torch.no_grad()
def accuracy(model, x, y, bs=1000):
    model.eval()
    correct = 0
    for i in range(0, x.shape[0], bs):
        correct += (model(x[i:i + bs])[0].argmax(1) == y[i:i + bs]).sum().item()
    return correct / x.shape[0]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--epochs', type=int, default=3)
    p.add_argument('--batch', type=int, default=128)
    p.add_argument('--lr', type=float, default=2e-3)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--ckpt', default=os.path.join(HERE, 'ckpt', 'classifier.pt'))
    p.add_argument('--onnx', default=os.path.join(HERE, 'mnist_classifier.onnx'))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    xtr, ytr = mnist_data.load('train')
    xte, yte = mnist_data.load('test')
    xtr, ytr, xte, yte = map(torch.from_numpy, (xtr, ytr, xte, yte))
    model = Classifier()
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    gen = torch.Generator().manual_seed(a.seed)
    n = xtr.shape[0]
    steps = a.epochs * (n // a.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=steps)
    t0 = time.time()
    step = 0
    print(f'classifier: {sum(p.numel() for p in model.parameters())} parameters, {a.epochs} epochs, seed {a.seed}', flush=True)
    for ep in range(a.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        tot = 0.0
        for i in range(n // a.batch):
            idx = perm[i * a.batch:(i + 1) * a.batch]
            loss = F.cross_entropy(model(shift(xtr[idx], gen))[0], ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item()
            step += 1
        acc = accuracy(model, xte, yte)
        print(f'epoch {ep + 1}: train loss {tot / (n // a.batch):.4f}, test accuracy {acc * 100:.2f}%, {time.time() - t0:.0f}s', flush=True)
    os.makedirs(os.path.dirname(a.ckpt), exist_ok=True)
    torch.save({'model': model.state_dict(), 'test_accuracy': acc}, a.ckpt)
    model.eval()
    torch.onnx.export(model, (xte[:2],), a.onnx, opset_version=17, input_names=['x'], output_names=['logits', 'features'],
                      dynamic_axes={'x': {0: 'batch'}, 'logits': {0: 'batch'}, 'features': {0: 'batch'}})
    print(f'test accuracy {acc * 100:.2f}%; wrote {a.onnx} ({os.path.getsize(a.onnx)} bytes) in {time.time() - t0:.0f}s total', flush=True)


if __name__ == '__main__':
    main()
