//! One decoded image in memory: 8-bit RGB, rows top to bottom, pixels interleaved (HWC). The type every stage after
//! decoding shares: the JPEG decoder produces it, the crops, resizes and RandAugment ops take and return it, and the
//! loader copies it into a batch. Grey and CMYK sources are converted to RGB by the decoder, so nothing downstream
//! branches on channel counts.

use super::DataError;

/// An 8-bit RGB image, HWC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl RgbImage {
    /// Channels per pixel.
    pub const CHANNELS: usize = 3;

    /// Wrap `pixels` (HWC, `height * width * 3` bytes).
    pub fn from_raw(width: u32, height: u32, pixels: Vec<u8>) -> Result<Self, DataError> {
        let want = width as usize * height as usize * Self::CHANNELS;
        if pixels.len() != want || width == 0 || height == 0 {
            return Err(DataError::config(format!(
                "an RGB image of {width}x{height} needs {want} bytes, got {}",
                pixels.len()
            )));
        }
        Ok(Self {
            width,
            height,
            pixels,
        })
    }

    /// A `width` x `height` image filled with one colour.
    pub fn filled(width: u32, height: u32, rgb: [u8; 3]) -> Self {
        let pixels = rgb
            .iter()
            .copied()
            .cycle()
            .take(width as usize * height as usize * Self::CHANNELS)
            .collect();
        Self {
            width,
            height,
            pixels,
        }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// The HWC bytes.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// The HWC bytes, for in-place transforms.
    pub fn pixels_mut(&mut self) -> &mut [u8] {
        &mut self.pixels
    }

    /// The pixel at column `x`, row `y`.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * Self::CHANNELS;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }

    pub fn into_raw(self) -> Vec<u8> {
        self.pixels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_raw_checks_the_byte_count_and_pixel_reads_hwc() {
        assert!(RgbImage::from_raw(2, 2, vec![0; 11]).is_err());
        assert!(RgbImage::from_raw(0, 2, vec![]).is_err());
        let img = RgbImage::from_raw(2, 1, vec![1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(img.pixel(1, 0), [4, 5, 6]);
        assert_eq!(RgbImage::filled(3, 2, [7, 8, 9]).pixel(2, 1), [7, 8, 9]);
    }
}
