//! Image files of every kind real ImageNet holds, made in code (no binary fixtures): baseline RGB JPEGs, CMYK and
//! YCCK (Adobe, inverted), greyscale, progressive, a PNG named .JPEG, truncated files, a malformed EXIF block,
//! extreme aspect ratios, large images and a decompression-bomb header. And tree builders for the ImageNet layouts.
#![allow(dead_code)]

use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
use std::path::{Path, PathBuf};

/// A smooth RGB picture with some texture (compresses like a photo, not like a flat colour); `seed` varies it.
pub fn picture(width: u32, height: u32, seed: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            let t = (x * 7 + y * 3 + seed * 31) % 64;
            v.push(((x * 255) / width.max(1)) as u8 ^ (seed as u8 & 0x1F));
            v.push(((y * 255) / height.max(1)) as u8);
            v.push((96 + t + (seed * 13) % 96) as u8);
        }
    }
    v
}

fn encode(data: &[u8], w: u32, h: u32, color: ColorType, progressive: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = Encoder::new(&mut out, 92);
    // Adobe's CMYK/YCCK files are not subsampled; YCbCr ones mostly 4:2:0.
    let four = matches!(color, ColorType::Cmyk | ColorType::CmykAsYcck);
    enc.set_sampling_factor(if four {
        SamplingFactor::R_4_4_4
    } else {
        SamplingFactor::R_4_2_0
    });
    enc.set_progressive(progressive);
    enc.encode(data, w as u16, h as u16, color)
        .expect("fixture encodes");
    out
}

/// A baseline 8-bit YCbCr JPEG (what ImageNet mostly holds): kept byte for byte.
pub fn baseline(width: u32, height: u32, seed: u32) -> Vec<u8> {
    encode(
        &picture(width, height, seed),
        width,
        height,
        ColorType::Rgb,
        false,
    )
}

pub fn progressive(width: u32, height: u32) -> Vec<u8> {
    encode(
        &picture(width, height, 3),
        width,
        height,
        ColorType::Rgb,
        true,
    )
}

pub fn grey(width: u32, height: u32) -> Vec<u8> {
    let luma: Vec<u8> = picture(width, height, 5).chunks(3).map(|p| p[1]).collect();
    encode(&luma, width, height, ColorType::Luma, false)
}

/// CMYK ink values (0 = no ink) of one colour, the whole image: `ink` = [c, m, y, k].
fn cmyk_pixels(width: u32, height: u32, ink: [u8; 4]) -> Vec<u8> {
    ink.iter()
        .copied()
        .cycle()
        .take((width * height * 4) as usize)
        .collect()
}

/// An Adobe CMYK JPEG (inverted values, APP14 transform 0) of one ink colour.
pub fn cmyk(width: u32, height: u32, ink: [u8; 4]) -> Vec<u8> {
    encode(
        &cmyk_pixels(width, height, ink),
        width,
        height,
        ColorType::Cmyk,
        false,
    )
}

/// An Adobe YCCK JPEG (APP14 transform 2) of one ink colour.
pub fn ycck(width: u32, height: u32, ink: [u8; 4]) -> Vec<u8> {
    encode(
        &cmyk_pixels(width, height, ink),
        width,
        height,
        ColorType::CmykAsYcck,
        false,
    )
}

/// PNG content (the file will be named .JPEG, as one ImageNet train file is).
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_raw(width, height, picture(width, height, 9)).expect("size");
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("png encodes");
    out.into_inner()
}

/// The first `fraction` of a baseline JPEG: the end-of-image marker is gone.
pub fn truncated(width: u32, height: u32, fraction: f64) -> Vec<u8> {
    let full = baseline(width, height, 11);
    full[..(full.len() as f64 * fraction) as usize].to_vec()
}

/// A baseline JPEG with an APP1 EXIF block a strict parser rejects (bad byte order mark, IFD offset past the end,
/// an entry count larger than the block).
pub fn bad_exif(width: u32, height: u32) -> Vec<u8> {
    let jpeg = baseline(width, height, 13);
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(b"MX\0\x2a\xff\xff\xff\xf0\x7f\xff");
    payload.extend_from_slice(&[0xAB; 9]);
    let len = (payload.len() + 2) as u16;
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A small JPEG whose frame header claims `width` x `height` (the scan data is that of a 16x16 image): a
/// decompression bomb by its header.
pub fn bomb_header(width: u16, height: u16) -> Vec<u8> {
    let mut jpeg = baseline(16, 16, 17);
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline has SOF0");
    // FF C0, length (2), precision (1), height (2), width (2).
    jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    jpeg
}

/// A PNG whose IHDR claims `width` x `height` (the rest is that of a 16x16 image; the chunk CRC no longer matches,
/// which a bomb check made from the header never reaches).
pub fn png_bomb_header(width: u32, height: u32) -> Vec<u8> {
    let mut png = png(16, 16);
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    png
}

/// What the importer must do with a fixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Kept,
    Converted,
    Skipped,
}

/// One bad-file kind: the file name, its content, the expected outcome and a word the log's reason must contain.
pub struct Fixture {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    pub expect: Expect,
    pub reason: &'static str,
}

/// Every kind real ImageNet contains (sizes kept small; "large" is 1200x900 against --max-side 512).
pub fn every_kind() -> Vec<Fixture> {
    let f = |name, bytes, expect, reason| Fixture {
        name,
        bytes,
        expect,
        reason,
    };
    vec![
        f("ok.JPEG", baseline(64, 48, 1), Expect::Kept, ""),
        f(
            "cmyk.JPEG",
            cmyk(40, 30, [0, 255, 255, 0]),
            Expect::Converted,
            "CMYK",
        ),
        f(
            "ycck.JPEG",
            ycck(40, 30, [0, 255, 255, 0]),
            Expect::Converted,
            "YCCK",
        ),
        f("grey.JPEG", grey(48, 40), Expect::Converted, "greyscale"),
        f("png.JPEG", png(30, 20), Expect::Converted, "PNG content"),
        f(
            "progressive.JPEG",
            progressive(64, 48),
            Expect::Converted,
            "progressive",
        ),
        f(
            "truncated.JPEG",
            truncated(64, 48, 0.6),
            Expect::Skipped,
            "truncated",
        ),
        f("exif.JPEG", bad_exif(64, 48), Expect::Kept, ""),
        f("wide.JPEG", baseline(500, 33, 2), Expect::Kept, ""),
        f(
            "large.JPEG",
            baseline(1200, 900, 3),
            Expect::Converted,
            "longer side 1200 > --max-side 512",
        ),
        f(
            "bomb.JPEG",
            bomb_header(30000, 30000),
            Expect::Skipped,
            "decompression bomb",
        ),
        f(
            "pngbomb.JPEG",
            png_bomb_header(20000, 20000),
            Expect::Skipped,
            "decompression bomb",
        ),
        f("empty.JPEG", Vec::new(), Expect::Skipped, "empty file"),
        f(
            "text.JPEG",
            b"not an image at all".to_vec(),
            Expect::Skipped,
            "not an image",
        ),
    ]
}

pub fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("fixture written");
}

/// `root/train/<wnid>/<wnid>_<i>.JPEG` for each class, `per_class` small baseline images each; returns the paths
/// in sorted order per class.
pub fn train_tree(root: &Path, wnids: &[&str], per_class: usize, size: (u32, u32)) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for (k, wnid) in wnids.iter().enumerate() {
        for i in 0..per_class {
            let p = root
                .join("train")
                .join(wnid)
                .join(format!("{wnid}_{i:04}.JPEG"));
            write(&p, &baseline(size.0, size.1, (k * 1000 + i) as u32));
            paths.push(p);
        }
    }
    paths
}

/// `root/val/ILSVRC2012_val_<id>.JPEG` for ids 1..=n (flat, as the devkit ships it); the bytes of image `id` are
/// a baseline picture seeded by `id`.
pub fn flat_val(root: &Path, n: usize, size: (u32, u32)) -> Vec<PathBuf> {
    (1..=n)
        .map(|id| {
            let p = root
                .join("val")
                .join(format!("ILSVRC2012_val_{id:08}.JPEG"));
            write(&p, &baseline(size.0, size.1, 50_000 + id as u32));
            p
        })
        .collect()
}
