//! The stored size of a JPEG from its frame header, without decoding: the crop of an image is drawn from its size
//! before any pixel is decoded, and both decoders must agree on it, so it is read here, once, decoder-independently.

use super::DecodeError;

/// Start-of-frame markers (SOF0..SOF15) carry the frame size; 0xC4 (DHT), 0xC8 (JPG) and 0xCC (DAC) share the range
/// but are not frames.
fn is_frame_marker(m: u8) -> bool {
    (0xC0..=0xCF).contains(&m) && !matches!(m, 0xC4 | 0xC8 | 0xCC)
}

/// Width and height of the JPEG in `bytes`, from its first frame header.
pub fn jpeg_size(bytes: &[u8]) -> Result<(u32, u32), DecodeError> {
    if bytes.len() < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
        return Err(DecodeError::NotJpeg);
    }
    let mut i = 2;
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return Err(DecodeError::header(format!(
                "expected a marker at byte {i}"
            )));
        }
        let marker = bytes[i + 1];
        // Fill bytes (0xFF 0xFF ...) may precede a marker; standalone markers carry no length.
        if marker == 0xFF {
            i += 1;
            continue;
        }
        if matches!(marker, 0x01 | 0xD0..=0xD7) {
            i += 2;
            continue;
        }
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        if is_frame_marker(marker) {
            let body = bytes
                .get(i + 4..i + 2 + len)
                .filter(|b| b.len() >= 5)
                .ok_or_else(|| DecodeError::header("truncated frame header"))?;
            let height = u16::from_be_bytes([body[1], body[2]]) as u32;
            let width = u16::from_be_bytes([body[3], body[4]]) as u32;
            if height == 0 || width == 0 {
                return Err(DecodeError::header(format!(
                    "frame header gives a {width}x{height} image"
                )));
            }
            return Ok((width, height));
        }
        if marker == 0xDA || marker == 0xD9 {
            break;
        }
        i += 2 + len;
    }
    Err(DecodeError::header("no frame header before the image data"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_size_of_an_encoded_image_and_rejects_other_bytes() {
        let img = image::RgbImage::from_fn(37, 21, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
            .encode_image(&img)
            .unwrap();
        assert_eq!(jpeg_size(&bytes).unwrap(), (37, 21));
        assert!(matches!(
            jpeg_size(b"\x89PNG\r\n"),
            Err(DecodeError::NotJpeg)
        ));
        assert!(jpeg_size(&bytes[..20]).is_err());
    }
}
