use super::*;

/// A photo-like test image: smooth gradients, edges and deterministic texture (flat colour would hide errors).
pub(crate) fn photo(width: u32, height: u32) -> image::RgbImage {
    image::RgbImage::from_fn(width, height, |x, y| {
        let n = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) >> 7;
        let edge = if (x / 23 + y / 17) % 2 == 0 { 60 } else { 0 };
        image::Rgb([
            ((x * 255 / width) as u8).wrapping_add(edge),
            ((y * 255 / height) as u8) / 2 + (n % 32) as u8,
            (((x + y) * 3) % 256) as u8 / 2 + edge,
        ])
    })
}

pub(crate) fn encode(img: &image::RgbImage, quality: u8) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
        .encode_image(img)
        .unwrap();
    bytes
}

fn max_abs_diff(a: &RgbImage, b: &RgbImage) -> u8 {
    assert_eq!((a.width(), a.height()), (b.width(), b.height()));
    a.pixels()
        .iter()
        .zip(b.pixels())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

#[cfg_attr(not(feature = "turbojpeg"), allow(dead_code))]
fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    let sum: u64 = a
        .pixels()
        .iter()
        .zip(b.pixels())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.pixels().len() as f64
}

/// The full decode's pixels inside `r`.
fn cut(full: &RgbImage, r: Region) -> RgbImage {
    Decoded {
        image: full.clone(),
        crop: CropBox::of(r),
        scale_denom: 1,
    }
    .cut()
}

/// Box-average a full decode down by `d` (what DCT scaling approximates).
#[cfg_attr(not(feature = "turbojpeg"), allow(dead_code))]
fn box_down(full: &RgbImage, d: u32) -> RgbImage {
    let (w, h) = (full.width().div_ceil(d), full.height().div_ceil(d));
    let mut out = Vec::new();
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let (mut sum, mut n) = (0u32, 0u32);
                for yy in y * d..((y + 1) * d).min(full.height()) {
                    for xx in x * d..((x + 1) * d).min(full.width()) {
                        sum += u32::from(full.pixel(xx, yy)[c]);
                        n += 1;
                    }
                }
                out.push(((sum + n / 2) / n) as u8);
            }
        }
    }
    RgbImage::from_raw(w, h, out).unwrap()
}

const REGIONS: [Region; 4] = [
    Region {
        x: 0,
        y: 0,
        width: 64,
        height: 40,
    },
    Region {
        x: 37,
        y: 19,
        width: 101,
        height: 77,
    },
    Region {
        x: 130,
        y: 91,
        width: 69,
        height: 58,
    },
    Region {
        x: 5,
        y: 148,
        width: 190,
        height: 1,
    },
];

#[test]
fn scale_is_the_largest_that_keeps_the_region_at_least_the_target() {
    let r = |w, h| Region {
        x: 0,
        y: 0,
        width: w,
        height: h,
    };
    assert_eq!(scale_for(r(400, 400), (192, 192)), 2);
    assert_eq!(scale_for(r(383, 800), (192, 192)), 1);
    assert_eq!(scale_for(r(1600, 1536), (192, 192)), 8);
    assert_eq!(scale_for(r(800, 780), (192, 192)), 4);
}

#[test]
fn zune_region_is_the_whole_decode_cut_and_grey_becomes_rgb() {
    let bytes = encode(&photo(200, 150), 92);
    let mut zune = JpegDecoder::new(DecoderKind::Zune).unwrap();
    let full = zune.decode(&bytes).unwrap();
    assert_eq!((full.width(), full.height()), (200, 150));
    for r in REGIONS {
        let part = zune.decode_region(&bytes, r, 4).unwrap();
        assert_eq!(part.scale_denom, 1, "zune never scales");
        assert_eq!(max_abs_diff(&part.cut(), &cut(&full, r)), 0, "{r:?}");
    }
    let grey = image::GrayImage::from_fn(40, 30, |x, y| image::Luma([(x * 6 + y) as u8]));
    let mut g = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut g, 95)
        .encode_image(&grey)
        .unwrap();
    let rgb = zune.decode(&g).unwrap();
    let p = rgb.pixel(20, 10);
    assert!(
        p[0] == p[1] && p[1] == p[2],
        "grey decodes to equal channels: {p:?}"
    );
    assert!(p[0].abs_diff(130) <= 3, "grey value kept: {p:?}");
}

#[test]
fn bad_bytes_are_errors_not_panics() {
    let mut zune = JpegDecoder::new(DecoderKind::Zune).unwrap();
    assert!(matches!(
        zune.decode(b"GIF89a...."),
        Err(DecodeError::NotJpeg)
    ));
    let bytes = encode(&photo(64, 48), 90);
    assert!(
        zune.decode(&bytes[..bytes.len() / 3]).is_ok()
            || zune.decode(&bytes[..bytes.len() / 3]).is_err()
    );
    assert!(zune.decode(&bytes[..30]).is_err());
}

#[cfg(feature = "turbojpeg")]
mod turbo_tests {
    use super::*;

    fn turbo() -> JpegDecoder {
        JpegDecoder::new(DecoderKind::Turbo).unwrap()
    }

    fn encode_turbo(img: &image::RgbImage, subsamp: turbojpeg::Subsamp) -> Vec<u8> {
        let image = turbojpeg::Image {
            pixels: img.as_raw().as_slice(),
            width: img.width() as usize,
            pitch: img.width() as usize * 3,
            height: img.height() as usize,
            format: turbojpeg::PixelFormat::RGB,
        };
        let mut c = turbojpeg::Compressor::new().unwrap();
        c.set_quality(93).unwrap();
        c.set_subsamp(subsamp).unwrap();
        c.compress_to_vec(image).unwrap()
    }

    #[test]
    fn region_decode_is_bit_exact_with_the_whole_decode_cut() {
        for subsamp in [
            turbojpeg::Subsamp::Sub2x2,
            turbojpeg::Subsamp::None,
            turbojpeg::Subsamp::Sub2x1,
        ] {
            let bytes = encode_turbo(&photo(200, 150), subsamp);
            let mut dec = turbo();
            let full = dec.decode(&bytes).unwrap();
            for r in REGIONS {
                let part = dec.decode_region(&bytes, r, 1).unwrap();
                assert!(
                    part.image.width() < 200 || r.x < 16,
                    "only the region's columns are decoded"
                );
                assert_eq!(
                    max_abs_diff(&part.cut(), &cut(&full, r)),
                    0,
                    "{subsamp:?} {r:?}"
                );
            }
        }
    }

    #[test]
    fn scaled_decode_is_close_to_a_box_downscale_of_the_whole_decode() {
        let bytes = encode_turbo(&photo(320, 240), turbojpeg::Subsamp::Sub2x2);
        let mut dec = turbo();
        let full = dec.decode(&bytes).unwrap();
        for d in [2, 4, 8] {
            let scaled = dec
                .decode_region(&bytes, Region::whole(320, 240), d)
                .unwrap();
            assert_eq!(scaled.scale_denom, d);
            let reference = box_down(&full, d);
            let mad = mean_abs_diff(&scaled.image, &reference);
            // DCT scaling is a low-pass in the frequency domain, not a box filter: close, not equal.
            assert!(mad < 6.0, "1/{d}: mean abs difference {mad}");
        }
        // A region at 1/2: its box is the region's half-size box.
        let r = Region {
            x: 101,
            y: 33,
            width: 180,
            height: 150,
        };
        let part = dec.decode_region(&bytes, r, 2).unwrap();
        assert!((part.crop.width - 90.0).abs() < 1e-9 && (part.crop.height - 75.0).abs() < 1e-9);
        let reference = cut(
            &box_down(&full, 2),
            Region {
                x: 51,
                y: 17,
                width: 90,
                height: 75,
            },
        );
        let mad = mean_abs_diff(&part.cut(), &reference);
        assert!(mad < 6.0, "region at 1/2: mean abs difference {mad}");
    }

    #[test]
    fn turbo_and_zune_agree_on_a_whole_decode() {
        let bytes = encode(&photo(200, 150), 92);
        let a = turbo().decode(&bytes).unwrap();
        let b = JpegDecoder::new(DecoderKind::Zune)
            .unwrap()
            .decode(&bytes)
            .unwrap();
        let mad = mean_abs_diff(&a, &b);
        assert!(
            mad < 1.0,
            "IDCT and upsampling differ only in rounding: {mad}"
        );
    }

    #[test]
    fn cmyk_is_converted_to_rgb() {
        // An inverted (Adobe) CMYK image of one colour: C=255-0, M=255-128, Y=255-255 at K=255-0 (no ink: value 255).
        let (w, h) = (32usize, 16usize);
        let px = [255u8, 127, 0, 255];
        let cmyk: Vec<u8> = px.iter().copied().cycle().take(w * h * 4).collect();
        let image = turbojpeg::Image {
            pixels: cmyk.as_slice(),
            width: w,
            pitch: w * 4,
            height: h,
            format: turbojpeg::PixelFormat::CMYK,
        };
        let mut c = turbojpeg::Compressor::new().unwrap();
        c.set_quality(100).unwrap();
        let bytes = c.compress_to_vec(image).unwrap();
        for kind in [DecoderKind::Turbo, DecoderKind::Zune] {
            let rgb = JpegDecoder::new(kind).unwrap().decode(&bytes).unwrap();
            let p = rgb.pixel(10, 5);
            for (got, want) in p.iter().zip([255u8, 127, 0]) {
                assert!(got.abs_diff(want) <= 4, "{kind:?}: {p:?}");
            }
        }
    }
}
