//! libjpeg-turbo through its TurboJPEG 3 API (the `turbojpeg` crate's raw bindings, since its safe wrapper has no
//! cropping region): partial decoding of the crop's rows and iMCU columns, and DCT-domain scaling by 1/2, 1/4, 1/8.

use super::{CropBox, DecodeError, Decoded, Region};
use crate::data::RgbImage;
use std::ffi::CStr;
use turbojpeg::raw;

/// One TurboJPEG decompressor: a thread's own (a handle must not be used from two threads at once).
pub struct Turbo {
    handle: raw::tjhandle,
}

// SAFETY: a TurboJPEG handle is plain heap state with no thread affinity; `&mut self` on every use keeps it to one
// thread at a time.
unsafe impl Send for Turbo {}

impl Drop for Turbo {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { raw::tj3Destroy(self.handle) }
    }
}

/// The frame as TurboJPEG reads it from the header.
struct Header {
    width: i32,
    height: i32,
    subsamp: i32,
    colorspace: i32,
}

impl Turbo {
    pub fn new() -> Result<Self, DecodeError> {
        // SAFETY: tj3Init has no preconditions; a null return is its failure.
        let handle = unsafe { raw::tj3Init(raw::TJINIT_TJINIT_DECOMPRESS as i32) };
        if handle.is_null() {
            return Err(DecodeError::Turbo("cannot create a decompressor".into()));
        }
        Ok(Self { handle })
    }

    fn error(&self) -> DecodeError {
        // SAFETY: tj3GetErrorStr returns a NUL-terminated string owned by the handle, valid until its next call.
        let text = unsafe { CStr::from_ptr(raw::tj3GetErrorStr(self.handle)) };
        DecodeError::Turbo(text.to_string_lossy().into_owned())
    }

    /// Whether a -1 from TurboJPEG was only a warning (corrupt or truncated data decoded as far as it goes, the
    /// rest grey), which is kept as libjpeg's own tools keep it.
    fn only_warning(&self) -> bool {
        // SAFETY: a valid handle.
        unsafe { raw::tj3GetErrorCode(self.handle) == raw::TJERR_TJERR_WARNING as i32 }
    }

    fn check(&self, rc: i32) -> Result<(), DecodeError> {
        if rc == 0 || self.only_warning() {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    fn header(&mut self, bytes: &[u8]) -> Result<Header, DecodeError> {
        // SAFETY: the pointer and length describe `bytes`, which outlives the call.
        let rc = unsafe {
            raw::tj3DecompressHeader(self.handle, bytes.as_ptr(), bytes.len() as raw::size_t)
        };
        if rc != 0 {
            return Err(self.error());
        }
        // SAFETY: a valid handle; tj3Get reads a parameter.
        let get = |p: raw::TJPARAM| unsafe { raw::tj3Get(self.handle, p as i32) };
        Ok(Header {
            width: get(raw::TJPARAM_TJPARAM_JPEGWIDTH),
            height: get(raw::TJPARAM_TJPARAM_JPEGHEIGHT),
            subsamp: get(raw::TJPARAM_TJPARAM_SUBSAMP),
            colorspace: get(raw::TJPARAM_TJPARAM_COLORSPACE),
        })
    }

    /// Decode `region` of `bytes` at 1/`scale_denom` of its size (1, 2, 4 or 8). The output covers the region
    /// widened left to the scaled iMCU boundary (partial decoding starts a row there) and out to whole scaled pixels;
    /// `crop` says where the region lies in it.
    pub fn decode(
        &mut self,
        bytes: &[u8],
        region: Region,
        scale_denom: u32,
    ) -> Result<Decoded, DecodeError> {
        let h = self.header(bytes)?;
        let d = scale_denom as i32;
        let factor = raw::tjscalingfactor { num: 1, denom: d };
        // SAFETY: a valid handle and a factor from TurboJPEG's supported set (1/1, 1/2, 1/4, 1/8).
        self.check(unsafe { raw::tj3SetScalingFactor(self.handle, factor) })?;
        let (sw, sh) = (scaled(h.width, d), scaled(h.height, d));
        let s = 1.0 / d as f64;
        // Chroma upsampling at the region's right and bottom edges reads the next iMCU; decoding one iMCU (scaled)
        // past them keeps the region's pixels bit-identical to a whole decode's (and the left and top edges are
        // decoded from one iMCU before the region for the same reason).
        let margin = scaled(MAX_IMCU, d);
        let x1 = ((f64::from(region.x + region.width) * s).ceil() as i32 + margin).min(sw);
        let y1 = ((f64::from(region.y + region.height) * s).ceil() as i32 + margin).min(sh);
        let y0 = ((f64::from(region.y) * s).floor() as i32 - margin).max(0);
        // Partial decoding needs a known subsampling (its iMCU width); an odd one decodes whole rows.
        let x0 = match mcu_width(h.subsamp) {
            Some(mcu) => {
                let step = scaled(mcu, d).max(1);
                (((f64::from(region.x) * s).floor() as i32 - margin).max(0)) / step * step
            }
            None => 0,
        };
        let x1 = if mcu_width(h.subsamp).is_some() {
            x1
        } else {
            sw
        };
        let crop = raw::tjregion {
            x: x0,
            y: y0,
            w: x1 - x0,
            h: y1 - y0,
        };
        // SAFETY: the header was read above; the region lies inside the scaled image with an aligned left edge.
        self.check(unsafe { raw::tj3SetCroppingRegion(self.handle, crop) })?;
        let cmyk = h.colorspace == raw::TJCS_TJCS_CMYK as i32
            || h.colorspace == raw::TJCS_TJCS_YCCK as i32;
        let (format, channels) = if cmyk {
            (raw::TJPF_TJPF_CMYK, 4)
        } else {
            (raw::TJPF_TJPF_RGB, 3)
        };
        let mut out = vec![0u8; crop.w as usize * crop.h as usize * channels];
        // SAFETY: `out` holds crop.w * crop.h pixels of `format`, the pitch 0 means tightly packed rows.
        let rc = unsafe {
            raw::tj3Decompress8(
                self.handle,
                bytes.as_ptr(),
                bytes.len() as raw::size_t,
                out.as_mut_ptr(),
                0,
                format,
            )
        };
        self.check(rc)?;
        if cmyk {
            out = cmyk_to_rgb(&out);
        }
        let image = RgbImage::from_raw(crop.w as u32, crop.h as u32, out)
            .map_err(|e| DecodeError::header(e.to_string()))?;
        Ok(Decoded {
            image,
            crop: CropBox {
                left: f64::from(region.x) * s - f64::from(x0),
                top: f64::from(region.y) * s - f64::from(y0),
                width: f64::from(region.width) * s,
                height: f64::from(region.height) * s,
            }
            .clamped(crop.w as u32, crop.h as u32),
            scale_denom,
        })
    }
}

/// The tallest and widest iMCU of a common subsampling (4:2:0 is 16x16; 4:1:1 is 32 wide but rare).
const MAX_IMCU: i32 = 16;

/// TJSCALED: a dimension at 1/`denom`, rounded up.
fn scaled(dim: i32, denom: i32) -> i32 {
    (dim + denom - 1) / denom
}

/// The iMCU width of a subsampling (tjMCUWidth), None when TurboJPEG does not know the subsampling.
fn mcu_width(subsamp: i32) -> Option<i32> {
    match subsamp {
        s if s == raw::TJSAMP_TJSAMP_444
            || s == raw::TJSAMP_TJSAMP_GRAY
            || s == raw::TJSAMP_TJSAMP_440
            || s == raw::TJSAMP_TJSAMP_441 =>
        {
            Some(8)
        }
        s if s == raw::TJSAMP_TJSAMP_422 || s == raw::TJSAMP_TJSAMP_420 => Some(16),
        s if s == raw::TJSAMP_TJSAMP_411 => Some(32),
        _ => None,
    }
}

/// libjpeg hands out Adobe CMYK (and YCCK converted to it) inverted, as Photoshop writes it: the ink amount is
/// 255 - value, so the RGB of a pixel is value * K / 255 (the same rule zune-jpeg and Pillow apply).
fn cmyk_to_rgb(cmyk: &[u8]) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(cmyk.len() / 4 * 3);
    for px in cmyk.chunks_exact(4) {
        let k = u16::from(px[3]);
        for &c in &px[..3] {
            rgb.push(((u16::from(c) * k + 127) / 255) as u8);
        }
    }
    rgb
}
