#!/usr/bin/env python3
"""Make an ImageNet-like JPEG corpus from real photographs, reproducibly (a seed).

    make-jpeg-corpus.py --out DIR [--images N] [--classes K] [--seed S] [--photos DIR_OR_WHEEL]...

Sources: the photographs bundled in scikit-image's wheel (astronaut, chelsea, coffee, rocket, motorcycles, ...,
read straight from the wheel file, so scikit-image need not be installed: `pip download --no-deps scikit-image`),
and/or any folder of photos (e.g. Debian's /usr/share/backgrounds). Each output image is a random window of a
random source (area 25-100%, aspect 3/4-16/9), flipped at random, resized so its shorter side is 333-500 px
(ImageNet's typical range; its mean is ~500x375), and encoded at quality 90-96 with 4:2:0 chroma subsampling, or
4:4:4 for about a quarter of them; about 2% are greyscale, like ImageNet's. Written as DIR/train/cNN/NNNNNN.jpg
(K classes, round robin; or with --label source one class per photograph, so a model can learn the task) and a
few DIR/val/cNN/ files.
"""
import argparse
import io
import random
import sys
import zipfile
from pathlib import Path

from PIL import Image

# Natural photographs among scikit-image's data files (textures and synthetic images left out).
SKIMAGE_PHOTOS = [
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "motorcycle_right.png",
    "hubble_deep_field.jpg", "retina.jpg", "ihc.png", "grass.png", "gravel.png", "brick.png", "camera.png",
    "coins.png", "moon.png",
]


def load_sources(paths):
    images = []
    for p in map(Path, paths):
        if p.is_file() and p.suffix == ".whl":
            with zipfile.ZipFile(p) as z:
                for name in z.namelist():
                    if name.startswith("skimage/data/") and Path(name).name in SKIMAGE_PHOTOS:
                        images.append((name, Image.open(io.BytesIO(z.read(name))).convert("RGB")))
        elif p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"}:
                    try:
                        images.append((str(f), Image.open(f).convert("RGB")))
                    except OSError as e:
                        print(f"make-jpeg-corpus: skipping {f}: {e}", file=sys.stderr)
    return images


def window(rng, img):
    w, h = img.size
    for _ in range(20):
        area = rng.uniform(0.25, 1.0) * w * h
        aspect = rng.uniform(0.75, 16 / 9)
        cw, ch = int(round((area * aspect) ** 0.5)), int(round((area / aspect) ** 0.5))
        if 16 <= cw <= w and 16 <= ch <= h:
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            return img.crop((x, y, x + cw, y + ch))
    return img


def make(rng, img):
    img = window(rng, img)
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    short = rng.randint(333, 500)
    w, h = img.size
    scale = short / min(w, h)
    img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)
    if rng.random() < 0.02:
        img = img.convert("L")
    quality = rng.randint(90, 96)
    subsampling = 0 if rng.random() < 0.25 else 2
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, subsampling=subsampling)
    return buf.getvalue()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--val", type=int, default=100)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--label", choices=["round-robin", "source"], default="round-robin",
                    help="class folders cNN assigned round robin (no signal), or one class per source photograph "
                         "(a learnable task: windows of the same photo share a label)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--photos", action="append", required=True, help="a scikit-image wheel or a folder of photos")
    a = ap.parse_args()
    sources = load_sources(a.photos)
    if not sources:
        sys.exit("make-jpeg-corpus: no photographs found in " + ", ".join(a.photos))
    rng = random.Random(a.seed)
    out = Path(a.out)
    total = 0
    for split, n in (("train", a.images), ("val", a.val)):
        for i in range(n):
            k = rng.randrange(len(sources))
            name, img = sources[k]
            label = k if a.label == "source" else i % a.classes
            d = out / split / f"c{label:02d}"
            d.mkdir(parents=True, exist_ok=True)
            data = make(rng, img)
            (d / f"{i:06d}.jpg").write_bytes(data)
            total += len(data)
    print(f"make-jpeg-corpus: {a.images} + {a.val} JPEGs from {len(sources)} photographs in {out}, "
          f"{total / (a.images + a.val) / 1024:.0f} KiB each on average")


if __name__ == "__main__":
    main()
