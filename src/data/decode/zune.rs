//! The pure-Rust fallback: zune-jpeg (the decoder `image` 0.25 uses). It has no partial or scaled decoding, so it
//! decodes the whole image and leaves the crop to the resizer.

use super::{CropBox, DecodeError, Decoded, Region};
use crate::data::RgbImage;
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

/// Decode all of `bytes` to RGB (grey, CMYK and YCCK converted by zune) and point the crop box at `region`.
pub fn decode(bytes: &[u8], region: Region, max_side: u32) -> Result<Decoded, DecodeError> {
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(max_side as usize)
        .set_max_height(max_side as usize)
        .set_strict_mode(false);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    let pixels = decoder.decode().map_err(DecodeError::Zune)?;
    let info = decoder
        .info()
        .ok_or_else(|| DecodeError::header("zune-jpeg gave no image info"))?;
    let image = RgbImage::from_raw(info.width as u32, info.height as u32, pixels)
        .map_err(|e| DecodeError::header(e.to_string()))?;
    Ok(Decoded {
        image,
        crop: CropBox::of(region),
        scale_denom: 1,
    })
}
