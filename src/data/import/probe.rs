//! One source file of a JPEG import: keep its bytes, convert it, or skip it, and say why.
//!
//! Kept: a baseline (SOF0/SOF1) 8-bit 3-component JPEG (YCbCr) that decodes completely and whose longer side is at
//! most `max_side`. Converted (decoded, made RGB, resized to `max_side` if larger, re-encoded): every other JPEG or
//! PNG that decodes. Skipped: empty, not an image, truncated, undecodable, or more pixels than `max_pixels` by its
//! header (checked before anything is decoded, so a decompression bomb never allocates).

use image::imageops::FilterType;
use image::{DynamicImage, ImageFormat};

/// What happened to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Kept,
    Converted(String),
    Skipped(String),
}

impl Verdict {
    pub(crate) fn status(&self) -> &'static str {
        match self {
            Verdict::Kept => "kept",
            Verdict::Converted(_) => "converted",
            Verdict::Skipped(_) => "skipped",
        }
    }

    pub(crate) fn reason(&self) -> &str {
        match self {
            Verdict::Kept => "",
            Verdict::Converted(r) | Verdict::Skipped(r) => r,
        }
    }
}

/// The file's outcome: for kept and converted files, the JPEG bytes to store and their size.
#[derive(Debug, Clone)]
pub(crate) struct Processed {
    pub verdict: Verdict,
    pub bytes: Vec<u8>,
    pub height: u32,
    pub width: u32,
}

impl Processed {
    fn skipped(reason: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::Skipped(reason.into()),
            bytes: Vec::new(),
            height: 0,
            width: 0,
        }
    }
}

/// The settings that decide a file's fate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_side: u32,
    pub quality: u8,
    pub max_pixels: u64,
}

/// Decide and, when needed, convert. Never panics: a decoder panic on hostile input becomes a skip.
pub(crate) fn process(bytes: Vec<u8>, limits: Limits) -> Processed {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        process_inner(bytes, limits)
    })) {
        Ok(p) => p,
        Err(_) => Processed::skipped("the decoder failed on this file (panicked)"),
    }
}

fn process_inner(bytes: Vec<u8>, limits: Limits) -> Processed {
    if bytes.is_empty() {
        return Processed::skipped("empty file");
    }
    if bytes.starts_with(&[0xFF, 0xD8]) {
        process_jpeg(bytes, limits)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        process_png(&bytes, limits)
    } else {
        Processed::skipped("not an image (neither JPEG nor PNG content)")
    }
}

fn process_jpeg(bytes: Vec<u8>, limits: Limits) -> Processed {
    let header = match parse_jpeg_header(&bytes) {
        Ok(h) => h,
        Err(reason) => return Processed::skipped(reason),
    };
    if let Err(reason) = check_pixels(header.width, header.height, limits.max_pixels) {
        return Processed::skipped(reason);
    }
    if let Err(reason) = check_jpeg_complete(&bytes) {
        return Processed::skipped(reason);
    }
    let img = match image::load_from_memory_with_format(&bytes, ImageFormat::Jpeg) {
        Ok(img) => img,
        Err(e) => return Processed::skipped(format!("cannot decode: {e}")),
    };
    let mut reasons = header.conversion_reasons(limits.max_side);
    if (img.width(), img.height()) != (header.width, header.height) {
        reasons.push(format!(
            "decodes to {}x{}, header says {}x{}",
            img.width(),
            img.height(),
            header.width,
            header.height
        ));
    }
    if reasons.is_empty() {
        return Processed {
            verdict: Verdict::Kept,
            height: header.height,
            width: header.width,
            bytes,
        };
    }
    convert(img, reasons, limits)
}

fn process_png(bytes: &[u8], limits: Limits) -> Processed {
    // IHDR is the first chunk: width and height at bytes 16..24.
    if bytes.len() < 24 || &bytes[12..16] != b"IHDR" {
        return Processed::skipped("truncated PNG (no IHDR header)");
    }
    let be = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    if let Err(reason) = check_pixels(be(16), be(20), limits.max_pixels) {
        return Processed::skipped(reason);
    }
    match image::load_from_memory_with_format(bytes, ImageFormat::Png) {
        Ok(img) => convert(img, vec!["PNG content".into()], limits),
        Err(e) => Processed::skipped(format!("cannot decode PNG: {e}")),
    }
}

fn check_pixels(width: u32, height: u32, max_pixels: u64) -> Result<(), String> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(format!(
            "decompression bomb: {width}x{height} = {pixels} pixels exceeds --max-pixels {max_pixels}"
        ));
    }
    Ok(())
}

/// Decoded RGB, resized so the longer side is `max_side` when larger, re-encoded as baseline 4:2:0 JPEG.
fn convert(img: DynamicImage, reasons: Vec<String>, limits: Limits) -> Processed {
    let rgb = img.into_rgb8();
    let (w, h) = fit(rgb.width(), rgb.height(), limits.max_side);
    let rgb = if (w, h) == rgb.dimensions() {
        rgb
    } else {
        // Catmull-Rom (bicubic) with image's area-scaled support: antialiased like PIL's BICUBIC reduction.
        image::imageops::resize(&rgb, w, h, FilterType::CatmullRom)
    };
    match encode_rgb(rgb.as_raw(), w, h, limits.quality) {
        Ok(bytes) => Processed {
            verdict: Verdict::Converted(reasons.join("; ")),
            bytes,
            height: h,
            width: w,
        },
        Err(e) => Processed::skipped(format!("cannot re-encode: {e}")),
    }
}

/// The size with the longer side at most `max_side`, aspect kept (each side at least 1).
pub(crate) fn fit(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let longer = width.max(height);
    if longer <= max_side {
        return (width, height);
    }
    let scale = |x: u32| {
        ((u64::from(x) * u64::from(max_side) + u64::from(longer) / 2) / u64::from(longer)).max(1)
            as u32
    };
    (scale(width), scale(height))
}

/// Baseline JPEG, 4:2:0 with averaged chroma (as libjpeg and PIL write by default).
pub(crate) fn encode_rgb(
    rgb: &[u8],
    width: u32,
    height: u32,
    quality: u8,
) -> Result<Vec<u8>, String> {
    let (w, h) = (
        u16::try_from(width).map_err(|_| format!("width {width} exceeds 65535"))?,
        u16::try_from(height).map_err(|_| format!("height {height} exceeds 65535"))?,
    );
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, quality);
    enc.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
    enc.set_chroma_subsampling_method(jpeg_encoder::ChromaSubsamplingMethod::Average);
    enc.encode(rgb, w, h, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// What the frame header (SOFn) and an Adobe APP14 segment say about a JPEG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JpegHeader {
    /// The SOF marker's low nibble: 0 baseline, 1 extended sequential, 2 progressive, 3 lossless, ...
    pub sof: u8,
    pub precision: u8,
    pub height: u32,
    pub width: u32,
    pub components: u8,
    /// Adobe's colour transform: 0 none (RGB or CMYK), 1 YCbCr, 2 YCCK.
    pub adobe_transform: Option<u8>,
}

impl JpegHeader {
    /// Why this file cannot be kept as it is (empty: keep it).
    fn conversion_reasons(&self, max_side: u32) -> Vec<String> {
        let mut reasons = Vec::new();
        match self.sof {
            0 | 1 => {}
            2 => reasons.push("progressive (SOF2)".into()),
            n => reasons.push(format!("not baseline (SOF{n})")),
        }
        if self.precision != 8 {
            reasons.push(format!("{}-bit samples", self.precision));
        }
        match (self.components, self.adobe_transform) {
            (3, Some(0)) => reasons.push("RGB-coded (Adobe transform 0)".into()),
            (3, _) => {}
            (1, _) => reasons.push("greyscale".into()),
            (4, Some(2)) => reasons.push("YCCK".into()),
            (4, _) => reasons.push("CMYK".into()),
            (n, _) => reasons.push(format!("{n} components")),
        }
        let longer = self.width.max(self.height);
        if longer > max_side {
            reasons.push(format!("longer side {longer} > --max-side {max_side}"));
        }
        reasons
    }
}

/// Walk the markers from SOI to the first SOS, reading the frame header and Adobe's APP14. Segment contents other
/// than those two (EXIF, ICC, comments) are skipped by their length and never parsed, so a malformed EXIF block
/// does not stop a file that decodes.
pub(crate) fn parse_jpeg_header(b: &[u8]) -> Result<JpegHeader, String> {
    const TRUNCATED: &str = "truncated JPEG (the header ends early)";
    if !b.starts_with(&[0xFF, 0xD8]) {
        return Err("not a JPEG (no start-of-image marker)".into());
    }
    let mut i = 2;
    let mut frame: Option<JpegHeader> = None;
    let mut adobe = None;
    loop {
        // Tolerate stray bytes between segments (libjpeg warns and skips them too), then fill bytes.
        while i < b.len() && b[i] != 0xFF {
            i += 1;
        }
        while i < b.len() && b[i] == 0xFF {
            i += 1;
        }
        let Some(&marker) = b.get(i) else {
            return Err(TRUNCATED.into());
        };
        i += 1;
        match marker {
            0xD8 | 0x01 | 0xD0..=0xD7 => continue,
            0xD9 => return Err("no image data (end-of-image before any scan)".into()),
            _ => {}
        }
        let len = match b.get(i..i + 2) {
            Some(l) => usize::from(u16::from_be_bytes([l[0], l[1]])),
            None => return Err(TRUNCATED.into()),
        };
        if len < 2 {
            return Err(format!("bad JPEG segment length {len} at byte {i}"));
        }
        let Some(seg) = b.get(i + 2..i + len) else {
            return Err(TRUNCATED.into());
        };
        match marker {
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                if seg.len() < 6 {
                    return Err("bad JPEG frame header (too short)".into());
                }
                frame = Some(JpegHeader {
                    sof: marker & 0x0F,
                    precision: seg[0],
                    height: u32::from(u16::from_be_bytes([seg[1], seg[2]])),
                    width: u32::from(u16::from_be_bytes([seg[3], seg[4]])),
                    components: seg[5],
                    adobe_transform: None,
                });
            }
            0xEE if seg.starts_with(b"Adobe") && seg.len() >= 12 => adobe = Some(seg[11]),
            0xDA => break,
            _ => {}
        }
        i += len;
    }
    let mut header = frame.ok_or("no frame header (SOF) before the image data")?;
    if header.width == 0 || header.height == 0 {
        return Err(format!(
            "frame header gives an empty size {}x{}",
            header.width, header.height
        ));
    }
    header.adobe_transform = adobe;
    Ok(header)
}

/// JPEG decoders fill a cut-off image with grey instead of failing, so check for the end-of-image marker after the
/// last start-of-scan (inside entropy-coded data a 0xFF byte is always followed by 0x00 or a restart marker, so
/// neither marker can appear there by accident).
pub(crate) fn check_jpeg_complete(bytes: &[u8]) -> Result<(), String> {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    let Some(sos) = last_sos else {
        return Err("truncated JPEG (no image data)".into());
    };
    if bytes[sos + 2..].windows(2).any(|w| w == [0xFF, 0xD9]) {
        Ok(())
    } else {
        Err("truncated JPEG (no end-of-image marker)".into())
    }
}

/// Per-channel histograms of an image's decoded RGB pixels, for the mean/std attributes.
pub(crate) fn rgb_histogram(jpeg: &[u8]) -> Result<[[u64; 256]; 3], String> {
    let img = image::load_from_memory_with_format(jpeg, ImageFormat::Jpeg)
        .map_err(|e| e.to_string())?
        .into_rgb8();
    let mut hist = [[0u64; 256]; 3];
    for px in img.as_raw().chunks_exact(3) {
        for (h, &v) in hist.iter_mut().zip(px) {
            h[v as usize] += 1;
        }
    }
    Ok(hist)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_scales_the_longer_side_and_keeps_small_images() {
        assert_eq!(fit(500, 33, 512), (500, 33));
        assert_eq!(fit(3888, 2592, 512), (512, 341));
        assert_eq!(fit(2592, 3888, 512), (341, 512));
        assert_eq!(fit(10000, 3, 512), (512, 1));
    }

    #[test]
    fn headers_name_what_needs_converting() {
        let h = JpegHeader {
            sof: 0,
            precision: 8,
            height: 375,
            width: 500,
            components: 3,
            adobe_transform: None,
        };
        assert!(h.conversion_reasons(512).is_empty());
        let cmyk = JpegHeader {
            components: 4,
            adobe_transform: Some(0),
            ..h
        };
        assert_eq!(cmyk.conversion_reasons(512), vec!["CMYK".to_string()]);
        let big = JpegHeader {
            sof: 2,
            width: 600,
            ..h
        };
        assert_eq!(
            big.conversion_reasons(512),
            vec![
                "progressive (SOF2)".to_string(),
                "longer side 600 > --max-side 512".into()
            ]
        );
    }
}
