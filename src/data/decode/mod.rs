//! JPEG decoding for the loader's threads: libjpeg-turbo (cargo feature `turbojpeg`, on by default) with
//! crop-region and DCT-scaled decoding, or zune-jpeg, pure Rust, which decodes whole images.
//!
//! The loader asks for a region of the stored image and the size it will be resized to; the decoder returns the
//! pixels of at least that region ([`Decoded`]), possibly DCT-scaled by 1/2, 1/4 or 1/8 when the region is at least
//! twice the target in both directions, and the fractional box ([`CropBox`]) the region occupies in them, which the
//! resizer then crops and resizes in one pass. So only the crop's rows and iMCU columns are decoded, and large
//! crops are decoded at a fraction of their pixels.

pub mod header;
#[cfg(feature = "turbojpeg")]
mod turbo;
mod zune;

pub use header::jpeg_size;

use crate::data::RgbImage;
use serde::{Deserialize, Serialize};

/// Why an image could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a JPEG (no start-of-image marker)")]
    NotJpeg,
    #[error("bad JPEG header: {0}")]
    Header(String),
    #[error("{width}x{height} is above the decoder's limit of {limit} pixels a side")]
    TooLarge { width: u32, height: u32, limit: u32 },
    #[error("libjpeg-turbo: {0}")]
    Turbo(String),
    #[error("zune-jpeg")]
    Zune(#[source] zune_jpeg::errors::DecodeErrors),
    #[error("resize: {0}")]
    Resize(String),
    #[error("the {0:?} decoder is not in this build (enable the `turbojpeg` cargo feature)")]
    Unavailable(DecoderKind),
}

impl DecodeError {
    fn header(reason: impl Into<String>) -> Self {
        Self::Header(reason.into())
    }
}

/// Which JPEG decoder the loader uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoderKind {
    /// libjpeg-turbo: SIMD, partial and scaled decoding (needs the `turbojpeg` feature).
    Turbo,
    /// zune-jpeg: pure Rust, whole-image decoding.
    Zune,
}

impl DecoderKind {
    /// The fastest decoder in this build.
    pub fn best() -> Self {
        if cfg!(feature = "turbojpeg") {
            Self::Turbo
        } else {
            Self::Zune
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Turbo => "turbojpeg",
            Self::Zune => "zune",
        }
    }
}

/// A rectangle of a stored image, in its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Region {
    /// The whole of a `width` x `height` image.
    pub fn whole(width: u32, height: u32) -> Self {
        Self {
            x: 0,
            y: 0,
            width,
            height,
        }
    }
}

/// Where a requested region lies in a decoded image, in (fractional) pixels of that image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropBox {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

impl CropBox {
    /// The box of `region` in an unscaled, uncropped decode.
    pub fn of(region: Region) -> Self {
        Self {
            left: f64::from(region.x),
            top: f64::from(region.y),
            width: f64::from(region.width),
            height: f64::from(region.height),
        }
    }

    /// Kept inside a `width` x `height` image (rounding of scaled sizes can overshoot by a fraction of a pixel).
    pub fn clamped(self, width: u32, height: u32) -> Self {
        let left = self.left.clamp(0.0, f64::from(width) - 1.0);
        let top = self.top.clamp(0.0, f64::from(height) - 1.0);
        Self {
            left,
            top,
            width: self.width.min(f64::from(width) - left).max(1.0),
            height: self.height.min(f64::from(height) - top).max(1.0),
        }
    }
}

/// Decoded pixels covering a requested region.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub image: RgbImage,
    /// The requested region within `image`.
    pub crop: CropBox,
    /// The DCT scaling used: the image is 1/`scale_denom` of the stored size.
    pub scale_denom: u32,
}

impl Decoded {
    /// The region cut out at whole pixels (the crop box rounded): for tests and for callers without a resizer.
    pub fn cut(&self) -> RgbImage {
        let (x0, y0) = (self.crop.left.round() as u32, self.crop.top.round() as u32);
        let w = (self.crop.width.round() as u32).clamp(1, self.image.width() - x0);
        let h = (self.crop.height.round() as u32).clamp(1, self.image.height() - y0);
        let row = self.image.width() as usize * RgbImage::CHANNELS;
        let mut pixels = Vec::with_capacity(w as usize * h as usize * RgbImage::CHANNELS);
        for y in y0..y0 + h {
            let start = y as usize * row + x0 as usize * RgbImage::CHANNELS;
            pixels.extend_from_slice(
                &self.image.pixels()[start..start + w as usize * RgbImage::CHANNELS],
            );
        }
        RgbImage::from_raw(w, h, pixels).unwrap_or_else(|_| RgbImage::filled(1, 1, [0; 3]))
    }
}

/// The largest side accepted: ImageNet's largest is 3888 px (a larger "image" is a decompression bomb).
pub const MAX_SIDE: u32 = 16384;

/// The DCT scaling for decoding `region` when it will be resized to `target` (width, height): the largest of
/// 1/8, 1/4, 1/2 that keeps the scaled region at least as large as the target in both directions, else 1.
pub fn scale_for(region: Region, target: (u32, u32)) -> u32 {
    [8, 4, 2]
        .into_iter()
        .find(|&d| region.width / d >= target.0.max(1) && region.height / d >= target.1.max(1))
        .unwrap_or(1)
}

/// A decoder for one thread.
pub struct JpegDecoder {
    kind: DecoderKind,
    #[cfg(feature = "turbojpeg")]
    turbo: Option<turbo::Turbo>,
}

impl std::fmt::Debug for JpegDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JpegDecoder")
            .field("kind", &self.kind)
            .finish()
    }
}

impl JpegDecoder {
    pub fn new(kind: DecoderKind) -> Result<Self, DecodeError> {
        match kind {
            #[cfg(feature = "turbojpeg")]
            DecoderKind::Turbo => Ok(Self {
                kind,
                turbo: Some(turbo::Turbo::new()?),
            }),
            #[cfg(not(feature = "turbojpeg"))]
            DecoderKind::Turbo => Err(DecodeError::Unavailable(kind)),
            DecoderKind::Zune => Ok(Self {
                kind,
                #[cfg(feature = "turbojpeg")]
                turbo: None,
            }),
        }
    }

    pub fn kind(&self) -> DecoderKind {
        self.kind
    }

    /// The whole image.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<RgbImage, DecodeError> {
        let (w, h) = checked_size(bytes)?;
        Ok(self.decode_region(bytes, Region::whole(w, h), 1)?.image)
    }

    /// `region` of the image (clamped to it), DCT-scaled by 1/`scale_denom` (1, 2, 4 or 8; zune ignores it and
    /// decodes whole images at full size).
    pub fn decode_region(
        &mut self,
        bytes: &[u8],
        region: Region,
        scale_denom: u32,
    ) -> Result<Decoded, DecodeError> {
        let (w, h) = checked_size(bytes)?;
        let region = clamp_region(region, w, h);
        #[cfg(feature = "turbojpeg")]
        if let Some(turbo) = self.turbo.as_mut() {
            return turbo.decode(bytes, region, scale_denom.clamp(1, 8).next_power_of_two());
        }
        let _ = scale_denom;
        zune::decode(bytes, region, MAX_SIDE)
    }
}

/// The frame size, refused above [`MAX_SIDE`].
fn checked_size(bytes: &[u8]) -> Result<(u32, u32), DecodeError> {
    let (width, height) = jpeg_size(bytes)?;
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(DecodeError::TooLarge {
            width,
            height,
            limit: MAX_SIDE,
        });
    }
    Ok((width, height))
}

fn clamp_region(r: Region, width: u32, height: u32) -> Region {
    let x = r.x.min(width - 1);
    let y = r.y.min(height - 1);
    Region {
        x,
        y,
        width: r.width.clamp(1, width - x),
        height: r.height.clamp(1, height - y),
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    pub(crate) use super::tests::{encode, photo};
}
#[cfg(test)]
mod tests;
