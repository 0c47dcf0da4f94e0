#!/usr/bin/env python3
"""PyTorch reference for `nfbench bench`: trains the identical network on CPU and prints the same JSON line.

The network is not re-described here: `nfbench bench --plan-out FILE` writes the plan of the network it measures
(every conv with its shape, stride, groups, WS and bias; activation and gamma; alpha and every block's beta; SE;
head), and this script builds exactly that plan in PyTorch: Scaled WS convs (`gain * (w - mean) /
sqrt(max(N * var, eps))` in the graph), TF-style 'SAME' padding, NF blocks `h + alpha * skip_gain * f(act(h) *
beta)`, the same train step (forward, label-smoothed cross-entropy, backward, unit-wise AGC, SGD with Nesterov
momentum and coupled weight decay, per-layer statistics every `stats_every` steps) on a fixed synthetic batch.

    python benches/torch_reference.py PLAN.json [--steps N] [--warmup N] [--threads 2] [--layout channels_last]
"""

import argparse
import json
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def same_pads(size, k, s):
    """TF 'SAME' padding (before, after) along one axis, as the model computes it."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class Act(nn.Module):
    GAMMA = {
        "relu": 1.7139588594436646,
        "gelu": 1.7015043497085571,
        "silu": 1.7881293296813965,
        "elu": 1.2716004848480225,
        "leaky_relu": 1.70590341091156,
        "relu6": 1.7131484746932983,
        "tanh": 1.5939117670059204,
        "sigmoid": 4.803835391998291,
        "softplus": 1.9203323125839233,
        "identity": 1.0,
    }

    def __init__(self, name, scaled):
        super().__init__()
        self.name = name
        self.gamma = self.GAMMA[name] if scaled else 1.0

    def forward(self, x):
        f = {
            "relu": F.relu,
            "gelu": lambda t: F.gelu(t, approximate="tanh"),  # the model uses the tanh form
            "silu": F.silu,
            "elu": F.elu,
            "leaky_relu": lambda t: F.leaky_relu(t, 0.01),
            "relu6": F.relu6,
            "tanh": torch.tanh,
            "sigmoid": torch.sigmoid,
            "softplus": F.softplus,
            "identity": lambda t: t,
        }[self.name]
        y = f(x)
        return y * self.gamma if self.gamma != 1.0 else y


class Conv(nn.Module):
    """A conv of the plan: optional Scaled WS with a gain, optional bias, 'SAME' padding."""

    def __init__(self, p, eps):
        super().__init__()
        self.k, self.stride, self.groups, self.eps = p["kernel"], p["stride"], p["groups"], eps
        fan_in = p["in"] // p["groups"] * p["kernel"] ** 2
        self.fan_in = fan_in
        self.weight = nn.Parameter(torch.randn(p["out"], p["in"] // p["groups"], self.k, self.k) / math.sqrt(fan_in))
        self.gain = nn.Parameter(torch.ones(p["out"])) if p["ws"] else None
        self.bias = nn.Parameter(torch.zeros(p["out"])) if p["bias"] else None

    def effective_weight(self):
        w = self.weight
        if self.gain is None:
            return w
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        scale = torch.rsqrt(torch.clamp(var * self.fan_in, min=self.eps))
        return (w - mean) * scale * self.gain.view(-1, 1, 1, 1)

    def forward(self, x):
        t, b = same_pads(x.shape[2], self.k, self.stride)
        l, r = same_pads(x.shape[3], self.k, self.stride)
        if t == b and l == r and t == l:
            return F.conv2d(x, self.effective_weight(), self.bias, self.stride, t, 1, self.groups)
        x = F.pad(x, (l, r, t, b))
        return F.conv2d(x, self.effective_weight(), self.bias, self.stride, 0, 1, self.groups)


def max_pool_same(x):
    t, b = same_pads(x.shape[2], 3, 2)
    l, r = same_pads(x.shape[3], 3, 2)
    if t == b and l == r and t == l:
        return F.max_pool2d(x, 3, 2, t)
    return F.max_pool2d(F.pad(x, (l, r, t, b), value=float("-inf")), 3, 2)


def avg_pool_same(x):
    t, b = same_pads(x.shape[2], 2, 2)
    l, r = same_pads(x.shape[3], 2, 2)
    if t or b or l or r:
        x = F.pad(x, (l, r, t, b))
    return F.avg_pool2d(x, 2, 2)


class Block(nn.Module):
    def __init__(self, p, act, eps, skip_gain_init):
        super().__init__()
        self.alpha, self.beta, self.act = p["alpha"], p["beta"], act
        self.convs = nn.ModuleList(Conv(c, eps) for c in p["convs"])
        self.bns = nn.ModuleList(nn.BatchNorm2d(c) for c in p.get("bns", []))
        self.shortcut = Conv(p["shortcut"], eps) if p["shortcut"] else None
        self.shortcut_pool = p["shortcut_pool"]
        self.norm = p["norm"]
        if p["se"]:
            c, hidden = p["se"]
            self.se = nn.Sequential(nn.Linear(c, hidden), nn.ReLU(), nn.Linear(hidden, c))
        else:
            self.se = None
        self.skip_gain = nn.Parameter(torch.full((), float(skip_gain_init))) if p["skip_gain"] else None

    def forward(self, x):
        if self.norm == "nf":
            pre = self.act(x) * self.beta
        elif self.norm == "bn":
            pre = self.act(self.bns[0](x))
        else:
            pre = self.act(x)
        if self.shortcut is None:
            sc = x
        elif self.shortcut_pool:
            sc = self.shortcut(avg_pool_same(pre))
        else:
            sc = self.shortcut(pre)
        out = self.convs[0](pre)
        for i, conv in enumerate(self.convs[1:], start=1):
            z = self.bns[i](out) if i < len(self.bns) else out
            out = conv(self.act(z))
        if self.se is not None:
            s = torch.sigmoid(self.se(out.mean(dim=(2, 3))))
            out = out * (2.0 * s)[:, :, None, None]
        if self.skip_gain is not None:
            out = out * self.skip_gain
        if self.alpha != 1.0:
            out = out * self.alpha
        return sc + out


class Net(nn.Module):
    def __init__(self, plan):
        super().__init__()
        norm = plan["norm"]
        eps = plan["ws_eps"]
        self.act = Act(plan["activation"], norm == "nf")
        self.stem = nn.ModuleList()
        self.stem_ops = []
        for op in plan["stem"]:
            if op["op"] == "conv":
                self.stem.append(Conv(op, eps))
            elif op["op"] == "bn":
                self.stem.append(nn.BatchNorm2d(op["ch"]))
            self.stem_ops.append(op["op"])
        self.blocks = nn.ModuleList(Block(dict(b, norm=norm), self.act, eps, plan["skip_gain_init"]) for b in plan["blocks"])
        head = plan["head"]
        self.final_conv = Conv(head["final_conv"], eps) if head.get("final_conv") else None
        self.final_bn = nn.BatchNorm2d(head["final_bn"]) if head.get("final_bn") else None
        self.linear = nn.Linear(head["linear"]["in"], head["linear"]["out"])
        nn.init.normal_(self.linear.weight, 0.0, 0.01)
        nn.init.zeros_(self.linear.bias)
        self.dropout = plan["dropout"]

    def forward(self, x):
        layers = iter(self.stem)
        for op in self.stem_ops:
            if op in ("conv", "bn"):
                x = next(layers)(x)
            elif op == "act":
                x = self.act(x)
            elif op == "maxpool":
                x = max_pool_same(x)
        for block in self.blocks:
            x = block(x)
        if self.final_conv is not None:
            x = self.final_conv(x)
        if self.final_bn is not None:
            x = self.final_bn(x)
        x = self.act(x).mean(dim=(2, 3))
        if self.dropout > 0:
            x = F.dropout(x, self.dropout, self.training)
        return self.linear(x)


def unit_norms(t):
    """Unit-wise norms as AGC defines them: per output channel / unit for matrices and kernels, whole tensor else."""
    if t.ndim <= 1:
        return t.norm()
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.ndim - 1)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("plan")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layout", choices=["channels_last", "contiguous"], default="channels_last")
    args = ap.parse_args()
    with open(args.plan) as f:
        plan = json.load(f)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    fmt = torch.channels_last if args.layout == "channels_last" else torch.contiguous_format
    net = Net(plan).to(memory_format=fmt)
    net.train()
    batch, res, classes = plan["batch_size"], plan["resolution"], plan["num_classes"]
    x = torch.randn(batch, plan["in_channels"], res, res).to(memory_format=fmt)
    y = torch.randint(0, classes, (batch,))
    opt = plan["optim"]
    agc = plan["agc"]
    params = [(n, p) for n, p in net.named_parameters()]
    decays = {n: p.ndim > 1 for n, p in params}  # weights only: never gains, biases, skip gains
    excluded = {n for n, _ in params if n.startswith("linear.weight")} if agc["exclude_classifier"] else set()
    momenta = {n: torch.zeros_like(p) for n, p in params}
    lr = opt["lr"] * batch / 256.0
    split = {"forward": 0.0, "backward": 0.0, "agc": 0.0, "optimiser": 0.0, "statistics": 0.0}
    total = 0.0
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        logits = net(x)
        loss = F.cross_entropy(logits, y, label_smoothing=opt["label_smoothing"])
        t1 = time.perf_counter()
        net.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        with torch.no_grad():
            stats = []
            if agc["enabled"]:
                for n, p in params:
                    if n in excluded or p.grad is None:
                        continue
                    g = p.grad
                    max_norm = unit_norms(p).clamp(min=agc["eps"]) * agc["lambda"]
                    gn = unit_norms(g)
                    clipped = g * (max_norm / gn.clamp(min=1e-6))
                    p.grad = torch.where(gn > max_norm, clipped, g)
            t3 = time.perf_counter()
            for n, p in params:
                if p.grad is None:
                    continue
                g = p.grad
                if decays[n] and opt["weight_decay"] > 0:
                    g = g.add(p, alpha=opt["weight_decay"])
                m = momenta[n]
                m.mul_(opt["momentum"]).add_(g)
                upd = g.add(m, alpha=opt["momentum"]) if opt["nesterov"] else m
                p.add_(upd, alpha=-lr)
            t4 = time.perf_counter()
            if step % plan["stats_every"] == 0:
                for n, p in params:
                    if p.grad is not None:
                        stats.append(torch.stack([p.grad.norm(), p.norm()]))
                torch.stack(stats).tolist()
            t5 = time.perf_counter()
        if step >= args.warmup:
            for k, v in zip(split, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                split[k] += v
            total += t5 - t0
    n = args.steps
    step_ms = total / n * 1000.0
    out = {
        "impl": "torch",
        "torch": torch.__version__,
        "model": plan["name"],
        "batch_size": batch,
        "resolution": res,
        "threads": args.threads,
        "layout": args.layout,
        "steps": n,
        "images_per_sec": batch / (total / n),
        "step_ms": step_ms,
        "forward_ms": split["forward"] / n * 1000.0,
        "backward_ms": split["backward"] / n * 1000.0,
        "agc_ms": split["agc"] / n * 1000.0,
        "optimiser_ms": split["optimiser"] / n * 1000.0,
        "statistics_ms": split["statistics"] / n * 1000.0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "params": sum(p.numel() for p in net.parameters()),
        "loss": loss.item(),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
