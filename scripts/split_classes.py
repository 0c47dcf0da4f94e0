"""Write the subset of an nfbench HDF5 data set holding only some classes, relabelled 0..k-1 in the given order.

    python scripts/split_classes.py IN.h5 OUT.h5 0 1 2 3 4

Keeps the file's attributes but `class_names` (the kept classes' names) and `mean` / `std` (recomputed from the
subset's train pixels, as `nfbench data import` computes them, so `nfbench data inspect` finds the file OK).
Needs h5py and numpy.
"""
import sys

import h5py
import numpy as np


def main(src, dst, classes):
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        for k, v in f.attrs.items():
            if k != "class_names":
                g.attrs[k] = v
        names = [f.attrs["class_names"][c] for c in classes]
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        g.attrs.create("class_names", np.array(names, dtype=object), dtype=h5py.string_dtype())
        g.attrs["source"] = f"{f.attrs.get('source', '')}; classes {classes} of {src}"
        remap = {c: i for i, c in enumerate(classes)}
        for split in ("train", "val"):
            labels = f[f"{split}/labels"][:]
            keep = np.isin(labels, classes)
            grp = g.create_group(split)
            grp.create_dataset("images", data=f[f"{split}/images"][:][keep])
            new = np.array([remap[int(l)] for l in labels[keep]], dtype=labels.dtype)
            grp.create_dataset("labels", data=new)
            if split == "train":
                px = grp["images"][:].reshape(-1, grp["images"].shape[-1]).astype(np.float64) / 255.0
                g.attrs["mean"] = px.mean(axis=0)
                g.attrs["std"] = px.std(axis=0)
            print(f"split_classes: {split}: {keep.sum()} images of classes {names}")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2], [int(c) for c in sys.argv[3:]])
