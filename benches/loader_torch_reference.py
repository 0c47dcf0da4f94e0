#!/usr/bin/env python3
"""The peers of nfbench's JPEG loader on the same files, one JSON line per measurement:

    loader_torch_reference.py DIR --impl torchvision|pil --mode train|decode --threads N [--resolution 192]
                              [--epochs E]

train: DIR/train/<class>/*.jpg through a DataLoader (batch 64, N worker processes, one thread each): torchvision
reads the file, `decode_jpeg`s it and applies v2 `RandomResizedCrop(R)` (antialiased bicubic, like nfbench's) +
`RandomHorizontalFlip`; PIL is torchvision's `ImageFolder` with the same transforms on PIL images (PIL's resize is
antialiased). decode: torchvision's `decode_jpeg` alone, whole images. Workers warm up on one batch each first.
"""
import argparse
import json
import time
from pathlib import Path

import torch
import torchvision
from torchvision.io import decode_jpeg, read_file, ImageReadMode
from torchvision.transforms import v2


def jpeg_files(root):
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    files = []
    for label, c in enumerate(classes):
        files += [(f, label) for f in sorted((root / "train" / c).iterdir())
                  if f.suffix.lower() in (".jpg", ".jpeg")]
    return files


class TorchvisionSet(torch.utils.data.Dataset):
    def __init__(self, files, transform):
        self.files, self.transform = files, transform

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        path, label = self.files[i]
        img = decode_jpeg(read_file(str(path)), mode=ImageReadMode.RGB)
        return (self.transform(img) if self.transform else img.shape[1]), label


def one_thread(_):
    torch.set_num_threads(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--impl", choices=["torchvision", "pil"], default="torchvision")
    ap.add_argument("--mode", choices=["train", "decode"], default="train")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resolution", type=int, default=192)
    ap.add_argument("--epochs", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(1)
    root = Path(a.dir)
    crop = [v2.RandomResizedCrop(a.resolution, antialias=True,
                                 interpolation=v2.InterpolationMode.BICUBIC),
            v2.RandomHorizontalFlip()]
    if a.impl == "pil":
        if a.mode != "train":
            raise SystemExit("pil: train mode only")
        ds = torchvision.datasets.ImageFolder(str(root / "train"), transform=v2.Compose(crop + [v2.PILToTensor()]))
    else:
        ds = TorchvisionSet(jpeg_files(root), v2.Compose(crop) if a.mode == "train" else None)
    batch = 64
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=a.threads,
                                         worker_init_fn=one_thread, drop_last=True, persistent_workers=True,
                                         prefetch_factor=2)
    it = iter(loader)
    for _ in range(a.threads):  # warm-up: worker start and page cache
        next(it)
    images, t = 0, time.perf_counter()
    for epoch in range(a.epochs):
        for x, y in (it if epoch == 0 else iter(loader)):
            images += len(y)
    secs = time.perf_counter() - t
    print(json.dumps({"impl": a.impl, "mode": a.mode, "threads": a.threads, "images": images,
                      "secs": round(secs, 3), "images_per_sec": round(images / secs, 1)}))


if __name__ == "__main__":
    main()
