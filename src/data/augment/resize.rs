//! Crop-and-resize in one pass with `fast_image_resize` (SIMD convolution), bicubic (Catmull-Rom, TF's and PIL's
//! bicubic kernel, a = -0.5). Unlike TF's `tf.image.resize` without antialias, the kernel widens when shrinking
//! (as PIL and torchvision's antialiased resize do), so large crops do not alias.

use crate::data::decode::{CropBox, DecodeError};
use crate::data::RgbImage;
use fast_image_resize as fir;

/// A resizer with its scratch buffers, one per thread.
#[derive(Default)]
pub struct Resizer {
    inner: fir::Resizer,
}

impl std::fmt::Debug for Resizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resizer")
    }
}

impl Resizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The `crop` box of `src` (fractional pixels) resized to `width` x `height`.
    pub fn crop_resize(
        &mut self,
        src: &RgbImage,
        crop: CropBox,
        width: u32,
        height: u32,
    ) -> Result<RgbImage, DecodeError> {
        let fail = |e: &dyn std::fmt::Display| DecodeError::Resize(e.to_string());
        let view = fir::images::ImageRef::new(
            src.width(),
            src.height(),
            src.pixels(),
            fir::PixelType::U8x3,
        )
        .map_err(|e| fail(&e))?;
        let mut dst = fir::images::Image::new(width, height, fir::PixelType::U8x3);
        let options = fir::ResizeOptions::new()
            .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::CatmullRom))
            .crop(crop.left, crop.top, crop.width, crop.height);
        self.inner
            .resize(&view, &mut dst, &options)
            .map_err(|e| fail(&e))?;
        RgbImage::from_raw(width, height, dst.into_vec()).map_err(|e| fail(&e))
    }
}

/// Mirror an image left-right in place.
pub fn flip_horizontal(img: &mut RgbImage) {
    let row = img.width() as usize * RgbImage::CHANNELS;
    let w = img.width() as usize;
    for line in img.pixels_mut().chunks_exact_mut(row) {
        for i in 0..w / 2 {
            let j = w - 1 - i;
            for c in 0..RgbImage::CHANNELS {
                line.swap(i * RgbImage::CHANNELS + c, j * RgbImage::CHANNELS + c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_size_keeps_pixels_and_a_flat_image_stays_flat() {
        let img = RgbImage::from_raw(4, 2, (0..24).collect()).unwrap();
        let box_all = CropBox {
            left: 0.0,
            top: 0.0,
            width: 4.0,
            height: 2.0,
        };
        let same = Resizer::new().crop_resize(&img, box_all, 4, 2).unwrap();
        assert_eq!(same, img);
        let flat = RgbImage::filled(50, 40, [10, 200, 90]);
        let crop = CropBox {
            left: 3.5,
            top: 7.25,
            width: 30.0,
            height: 20.0,
        };
        let out = Resizer::new().crop_resize(&flat, crop, 16, 16).unwrap();
        assert!(out.pixels().chunks(3).all(|p| p == [10, 200, 90]));
    }

    #[test]
    fn a_crop_resizes_the_cropped_part_only() {
        // Left half black, right half white: cropping the right half gives white only.
        let img = image::RgbImage::from_fn(40, 20, |x, _| {
            image::Rgb(if x < 20 { [0; 3] } else { [255; 3] })
        });
        let img = RgbImage::from_raw(40, 20, img.into_raw()).unwrap();
        let crop = CropBox {
            left: 22.0,
            top: 0.0,
            width: 18.0,
            height: 20.0,
        };
        let out = Resizer::new().crop_resize(&img, crop, 9, 10).unwrap();
        assert!(out.pixels().iter().all(|&v| v == 255), "{:?}", out.pixels());
    }

    #[test]
    fn flip_mirrors_each_row() {
        let mut img = RgbImage::from_raw(3, 1, vec![1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
        flip_horizontal(&mut img);
        assert_eq!(img.pixels(), &[7, 8, 9, 4, 5, 6, 1, 2, 3]);
    }
}
