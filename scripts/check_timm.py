"""Fixtures for tests/weights_timm.rs: random-initialised timm NF models with every parameter perturbed, their
weights, inputs, logits and per-block signal statistics; and the check that nfbench's timm export loads strictly.

    python scripts/check_timm.py make DIR      # write DIR/manifest.json and the fixture files
    python scripts/check_timm.py verify DIR    # load DIR/exported/<case>.safetensors with strict=True, compare logits

Cases: a small dm_nfnet configuration (nfbench's `nfnet_tiny`), dm_nfnet_f0 itself, and nf_resnet50 (its weights
saved as a PyTorch zip pickle, to go through that reader). Inputs: a square batch with even intermediate sizes and
a non-square one with odd ones.
"""
import json
import os
import sys
from dataclasses import replace

import torch
import timm
from safetensors.torch import load_file, save_file
from timm.models.nfnet import NormFreeNet, _dm_nfnet_cfg

TOL = 1e-4
CASES = {
    # case: (nfbench --model, builder, weights file extension)
    "dm_nfnet_tiny": ("nfnet_tiny", lambda: NormFreeNet(
        replace(_dm_nfnet_cfg(depths=(1, 1, 1, 1), channels=(64, 128, 192, 256)), stem_chs=32, group_size=16),
        num_classes=10), "safetensors"),
    "dm_nfnet_f0": ("dm_nfnet_f0", lambda: timm.create_model("dm_nfnet_f0", pretrained=False, num_classes=1000),
                    "safetensors"),
    "nf_resnet50": ("nf_resnet50", lambda: timm.create_model("nf_resnet50", pretrained=False, num_classes=1000),
                    "pth"),
}
INPUTS = [(2, 3, 64, 64), (1, 3, 72, 90)]


def perturb(model, seed):
    """Every parameter off its init: skip gains non-zero, gains and biases random, conv kernels small (std 0.02,
    so timm's WS eps 1e-5 is 2.5% of the variance and its fold is visible)."""
    g = torch.Generator().manual_seed(seed)
    rnd = lambda p: torch.randn(p.shape, generator=g)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("skipinit_gain"):
                p.copy_(0.3 + 0.2 * rnd(p).abs())
            elif name.endswith(".gain"):
                p.copy_(1.0 + 0.2 * rnd(p))
            elif name.endswith(".bias"):
                p.copy_(0.05 * rnd(p))
            elif name.startswith("head.fc"):
                p.copy_(0.05 * rnd(p))
            elif p.dim() == 4:
                p.copy_(0.02 * rnd(p))
            else:
                raise SystemExit(f"unperturbed parameter {name}")


def block_stats(model):
    """Hooks recording (avg_sq_mean, avg_var) of each block's output and the variance of its branch before the
    skip gain (DeepMind's res_avg_var), in block order."""
    rows, res = [], []

    def moments(x):
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=False)
        return mean, var

    def on_block(_m, _i, out):
        mean, var = moments(out)
        rows.append([float((mean ** 2).mean()), float(var.mean())])

    def on_branch(m, _i, out):
        # attn_last's output is multiplied by attn_gain (2) before the skip gain; conv3's goes on as it is.
        scale = getattr(m, "_nf_gain", 1.0)
        res.append(float(moments(out * scale)[1].mean()))

    for stage in model.stages:
        for block in stage:
            block.register_forward_hook(on_block)
            if block.attn_last is not None:
                block.attn_last._nf_gain = block.attn_gain
                block.attn_last.register_forward_hook(on_branch)
            else:
                block.conv3.register_forward_hook(on_branch)

    def take():
        out = torch.tensor([r + [v] for r, v in zip(rows, res)], dtype=torch.float32)
        rows.clear()
        res.clear()
        return out

    return take


def make(d):
    os.makedirs(d, exist_ok=True)
    manifest = []
    for i, (case, (ours, build, ext)) in enumerate(CASES.items()):
        torch.manual_seed(i)
        model = build().eval()
        perturb(model, 100 + i)
        weights = f"{case}.{ext}"
        sd = {k: v.contiguous() for k, v in model.state_dict().items()}
        if ext == "pth":
            torch.save(sd, os.path.join(d, weights))
        else:
            save_file(sd, os.path.join(d, weights))
        take = block_stats(model)
        io = {}
        g = torch.Generator().manual_seed(7 + i)
        for j, shape in enumerate(INPUTS):
            x = torch.randn(shape, generator=g)
            with torch.no_grad():
                logits = model(x)
            io[f"x{j}"], io[f"logits{j}"], io[f"spp{j}"] = x, logits.contiguous(), take()
        save_file(io, os.path.join(d, f"{case}_io.safetensors"))
        manifest.append({"case": case, "model": ours, "weights": weights, "inputs": len(INPUTS)})
        print(f"check_timm: {case}: {sum(p.numel() for p in model.parameters())} parameters", file=sys.stderr)
    with open(os.path.join(d, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


def verify(d):
    """timm's load_state_dict(strict=True) takes nfbench's export, and the model gives the stored logits."""
    bad = 0
    for case, (_ours, build, _ext) in CASES.items():
        path = os.path.join(d, "exported", f"{case}.safetensors")
        model = build().eval()
        model.load_state_dict(load_file(path), strict=True)
        io = load_file(os.path.join(d, f"{case}_io.safetensors"))
        for j in range(len(INPUTS)):
            with torch.no_grad():
                got = model(io[f"x{j}"])
            want = io[f"logits{j}"]
            err = float((got - want).abs().max() / want.abs().max())
            ok = err <= TOL
            bad += not ok
            print(f"check_timm: export {case} input {j}: strict load ok, logits rel. error {err:.2e} "
                  f"({'ok' if ok else 'FAIL'})")
    if bad:
        raise SystemExit(f"check_timm: {bad} exported logit check(s) failed")


if __name__ == "__main__":
    torch.set_num_threads(max(1, int(os.environ.get("NFBENCH_TORCH_THREADS", "2"))))
    {"make": make, "verify": verify}[sys.argv[1]](sys.argv[2])
