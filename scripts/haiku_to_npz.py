"""Convert DeepMind's released NFNet weights (`F0_haiku.npz` ... `F7_haiku.npz`, which are dill pickles of a Haiku
parameter tree, not npz archives) into a flat npz that `nfbench weights import` reads natively.

    python scripts/haiku_to_npz.py F0_haiku.npz F0.npz
    nfbench weights import F0.npz --model nfnet_f0 --out f0.safetensors

Needs `dill` and `numpy` (and `jax` when the tree holds jax arrays; numpy arrays load without it). The tree is
{module: {leaf: array}}; each array is written as `module/leaf` (e.g. `NFNet/~/nf_block_3/~/conv0/w`), unchanged:
HWIO kernels, [in, out] linear weights, as DeepMind's code holds them. nfbench transposes them on import.
"""
import sys

import dill
import numpy as np


def main(src, dst):
    with open(src, "rb") as f:
        tree = dill.load(f)
    flat = {}
    for module, leaves in tree.items():
        for leaf, value in leaves.items():
            flat[f"{module}/{leaf}"] = np.asarray(value, dtype=np.float32)
    np.savez(dst, **flat)
    print(f"haiku_to_npz: {len(flat)} arrays from {src} -> {dst}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
