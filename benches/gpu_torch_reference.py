#!/usr/bin/env python3
"""The PyTorch side of scripts/gpu-check.sh: the same NF-ResNet training step nfbench runs, timed on the same GPU.

Model: NF-ResNet-50 as nfbench builds it (nfnets-spec.md): Scaled WS convs with gain and bias, gamma-scaled ReLU,
7x7/2 stem + 3x3/2 max pool, bottleneck blocks (3, 4, 6, 3), alpha 0.2 with predicted-variance betas, strided 1x1
WS shortcut on act(h) * beta in transition blocks, SkipInit gains, dropout 0.25, linear head. `--timm` uses timm's
`nf_resnet50` instead (it differs in details: gamma folded into WS, no SkipInit by default).
Step: bf16 autocast forward (f32 master weights), label smoothing 0.1, backward, AGC on the f32 gradients
(lambda 0.02, eps 1e-3, classifier weight excluded), coupled weight decay 5e-5 on weights only, SGD Nesterov 0.9.
Data: one random batch on the device (no loader), so this measures the step alone.
Prints a human line and one JSON line: {"img_per_s", "step_ms", "max_memory_allocated_mib", ...}.
"""
import argparse
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

RELU_GAMMA = 1.7139588594436646


class WSConv2d(nn.Conv2d):
    """Scaled weight standardisation, recomputed every forward: gain * (W - mean) / sqrt(max(N var, 1e-4))."""

    def __init__(self, cin, cout, k, stride=1, padding=0):
        super().__init__(cin, cout, k, stride=stride, padding=padding, bias=True)
        nn.init.normal_(self.weight, 0.0, 1.0 / math.sqrt(self.weight[0].numel()))
        nn.init.zeros_(self.bias)
        self.gain = nn.Parameter(torch.ones(cout, 1, 1, 1))

    def forward(self, x):
        w = self.weight
        fan_in = w[0].numel()
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        w = self.gain * (w - mean) * torch.rsqrt(torch.clamp(var * fan_in, min=1e-4))
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


def act(x):
    return F.relu(x) * RELU_GAMMA


class Bottleneck(nn.Module):
    def __init__(self, cin, cout, stride, alpha, beta):
        super().__init__()
        mid = cout // 4
        self.alpha, self.beta = alpha, beta
        self.shortcut = WSConv2d(cin, cout, 1, stride) if (stride != 1 or cin != cout) else None
        self.conv0 = WSConv2d(cin, mid, 1)
        self.conv1 = WSConv2d(mid, mid, 3, stride, 1)
        self.conv2 = WSConv2d(mid, cout, 1)
        self.skip_gain = nn.Parameter(torch.zeros(()))

    def forward(self, h):
        x = act(h) * self.beta
        short = self.shortcut(x) if self.shortcut is not None else h
        out = self.conv2(act(self.conv1(act(self.conv0(x)))))
        return short + out * (self.alpha * self.skip_gain)


class NFResNet(nn.Module):
    def __init__(self, depths=(3, 4, 6, 3), widths=(256, 512, 1024, 2048), alpha=0.2, classes=1000, dropout=0.25):
        super().__init__()
        self.stem = WSConv2d(3, 64, 7, 2, 3)
        blocks, cin, expected_var = [], 64, 1.0
        for stage, (d, w) in enumerate(zip(depths, widths)):
            for i in range(d):
                stride = 2 if (i == 0 and stage > 0) else 1
                blocks.append(Bottleneck(cin, w, stride, alpha, 1.0 / math.sqrt(expected_var)))
                if i == 0:
                    expected_var = 1.0
                expected_var += alpha**2
                cin = w
        self.blocks = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(cin, classes)
        nn.init.normal_(self.linear.weight, 0.0, 0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x):
        x = F.max_pool2d(self.stem(x), 3, 2, 1)
        x = act(self.blocks(x)).mean(dim=(2, 3))
        return self.linear(self.dropout(x))


@torch.no_grad()
def agc_(params, lam, eps):
    """Unit-wise AGC on f32 gradients (weights >= 2-D: per output unit; vectors and scalars: the whole tensor)."""
    for p in params:
        if p.grad is None:
            continue
        dims = tuple(range(1, p.ndim)) if p.ndim > 1 else None
        if dims:
            wn = torch.linalg.vector_norm(p, dim=dims, keepdim=True)
            gn = torch.linalg.vector_norm(p.grad, dim=dims, keepdim=True)
        else:
            wn, gn = torch.linalg.vector_norm(p), torch.linalg.vector_norm(p.grad)
        max_norm = wn.clamp(min=eps) * lam
        scale = torch.where(gn > max_norm, max_norm / gn.clamp(min=1e-6), torch.ones_like(gn))
        p.grad.mul_(scale)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--agc-lambda", type=float, default=0.02)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--timm", action="store_true", help="timm's nf_resnet50 instead of the spec's")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--device", default="cuda:0", help="cpu only for a smoke test of this script")
    a = ap.parse_args()
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("gpu_torch_reference: torch sees no CUDA device")
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    if a.timm:
        import timm

        model = timm.create_model("nf_resnet50", num_classes=a.classes)
        head_weight = model.get_classifier().weight
    else:
        model = NFResNet(classes=a.classes)
        head_weight = model.linear.weight
    model = model.to(dev).train()
    mf = torch.channels_last if a.channels_last else torch.contiguous_format
    model = model.to(memory_format=mf)
    params = [p for p in model.parameters() if p.requires_grad]
    clipped = [p for p in params if p is not head_weight]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": 5e-5}, {"params": no_decay, "weight_decay": 0.0}],
        lr=a.lr * a.batch / 256, momentum=0.9, nesterov=True,
    )
    x = torch.randn(a.batch, 3, a.resolution, a.resolution, device=dev).to(memory_format=mf)
    y = torch.randint(0, a.classes, (a.batch,), device=dev)
    amp = a.dtype == "bf16"

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        agc_(clipped, a.agc_lambda, 1e-3)
        opt.step()
        return loss

    for _ in range(a.warmup):
        step()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    sync()
    dt = time.perf_counter() - t0
    res = {
        "impl": "timm nf_resnet50" if a.timm else "spec nf_resnet50",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(dev) if cuda else "cpu",
        "batch": a.batch,
        "resolution": a.resolution,
        "dtype": a.dtype,
        "steps": a.steps,
        "img_per_s": a.batch * a.steps / dt,
        "step_ms": dt / a.steps * 1e3,
        "max_memory_allocated_mib": torch.cuda.max_memory_allocated(dev) / 2**20 if cuda else 0.0,
        "final_loss": float(loss),
        "params": sum(p.numel() for p in params),
    }
    print(
        f"pytorch {res['impl']} ({res['torch']}, {res['device']}): {a.resolution}px batch {a.batch} {a.dtype}, "
        f"{a.steps} steps: {res['img_per_s']:.1f} img/s, {res['step_ms']:.1f} ms/step, "
        f"max allocated {res['max_memory_allocated_mib']:.0f} MiB"
    )
    if a.json:
        print(json.dumps(res))


if __name__ == "__main__":
    main()
