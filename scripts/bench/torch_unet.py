#!/usr/bin/env python3
"""The throughput bench's UNet step in PyTorch, for the flex / tch / PyTorch table in
BENCHMARKS.md: the same network as host/src/model.rs (depth 4, 3x3 convolutions without bias,
BatchNorm, ReLU, 2x2 max-pool, 2x2 stride-2 transposed convolutions, 1x1 head), the same step
as host/benches/throughput.rs (batch 4 of normal noise, soft class Dice with smooth 1, plain
SGD lr 1e-3) and the same inference (batch 1, eval mode). Needs torch (any build; CPU is used):

    python3 scripts/bench/torch_unet.py [--quick] [--threads N]
"""
import argparse
import statistics
import time

import torch
from torch import nn


class DoubleConv(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class UNet(nn.Module):
    def __init__(self, base, depth=4, classes=3):
        super().__init__()
        ch = [base << i for i in range(depth + 1)]
        self.down = nn.ModuleList(DoubleConv(3 if i == 0 else ch[i - 1], ch[i]) for i in range(depth + 1))
        self.up_t = nn.ModuleList(nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2) for i in range(depth))
        self.up_c = nn.ModuleList(DoubleConv(2 * ch[i], ch[i]) for i in range(depth))
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Conv2d(ch[0], classes, 1)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        skips.pop()
        for i in reversed(range(len(self.up_t))):
            x = self.up_c[i](torch.cat([skips.pop(), self.up_t[i](x)], 1))
        return self.head(x)


def dice_loss(logits, onehot):
    p = torch.softmax(logits, 1)
    inter = (p * onehot).sum((0, 2, 3))
    dice = (2 * inter + 1) / (p.sum((0, 2, 3)) + onehot.sum((0, 2, 3)) + 1)
    return 1 - dice.mean()


def bench(size, base, batch=4, steps=3, runs=5):
    model = UNet(base)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    target = torch.zeros(batch, 3, size, size)
    target[:, 2] = 1
    target[:, 2, size // 3:size // 2, size // 3:size // 2] = 0
    target[:, 1, size // 3:size // 2, size // 3:size // 2] = 1
    times = []
    for step in range(steps + 1):
        x = torch.randn(batch, 3, size, size)
        t = time.perf_counter()
        opt.zero_grad()
        loss = dice_loss(model(x), target)
        loss.backward()
        opt.step()
        if step > 0:
            times.append(time.perf_counter() - t)
    model.eval()
    infer = []
    with torch.no_grad():
        for run in range(runs + 1):
            x = torch.randn(1, 3, size, size)
            t = time.perf_counter()
            model(x)
            if run > 0:
                infer.append((time.perf_counter() - t) * 1e3)
    return batch / statistics.median(times), statistics.median(infer)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="256 px only")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"UNet depth 4 on PyTorch {torch.__version__} (CPU), {torch.get_num_threads()} threads; "
          "batch 4 for training (SGD, class Dice), 1 for inference")
    print(f"{'size':>6} {'base':>5} {'torch train img/s':>18} {'torch infer ms':>15}")
    configs = [(256, 8), (256, 16)] + ([] if args.quick else [(512, 8), (512, 16)])
    for size, base in configs:
        best = max((bench(size, base, steps=2 if size >= 512 else 3) for _ in range(2)), key=lambda r: r[0])
        print(f"{size:>6} {base:>5} {best[0]:>18.2f} {best[1]:>15.1f}")


if __name__ == "__main__":
    main()
