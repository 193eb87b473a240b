//! Reading and decoding image files (JPEG, PNG) to 8-bit RGB.
//!
//! Some CUB images are greyscale (and a few datasets contain CMYK or paletted files), so
//! every image is converted to RGB; [`Decoded::greyscale`] says whether it was grey.
//!
//! The JPEG decoder used by the `image` crate fills a file that ends early with grey
//! instead of failing, which would hide a truncated download. A JPEG must therefore
//! contain its end-of-image marker after the first scan header; one that does not is
//! reported as truncated.

use std::io::Cursor;
use std::path::Path;

use image::{ColorType, ImageReader, RgbImage};

use crate::error::DatasetError;

/// A decoded image.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The pixels, RGB.
    pub image: RgbImage,
    /// Whether the file was greyscale (with or without alpha).
    pub greyscale: bool,
}

/// Reads and decodes the image file at `path`.
pub fn read(path: &Path) -> Result<Decoded, DatasetError> {
    let bytes = std::fs::read(path).map_err(|e| DatasetError::io(path, e))?;
    decode(&bytes, path)
}

/// Decodes the bytes of an image file; `path` is for messages.
pub fn decode(bytes: &[u8], path: &Path) -> Result<Decoded, DatasetError> {
    if bytes.is_empty() {
        return Err(DatasetError::image(path, "empty file (0 bytes)"));
    }
    if bytes.starts_with(&[0xFF, 0xD8]) {
        check_jpeg_complete(bytes).map_err(|why| DatasetError::image(path, why))?;
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DatasetError::image(path, format!("cannot read: {e}")))?;
    if reader.format().is_none() {
        return Err(DatasetError::image(path, "not a JPEG or PNG file (unrecognised signature)"));
    }
    let image = reader.decode().map_err(|e| DatasetError::image(path, format!("corrupt image: {e}")))?;
    if image.width() == 0 || image.height() == 0 {
        return Err(DatasetError::image(path, "image has no pixels"));
    }
    let greyscale = matches!(image.color(), ColorType::L8 | ColorType::La8 | ColorType::L16 | ColorType::La16);
    Ok(Decoded { image: image.into_rgb8(), greyscale })
}

/// Checks that a JPEG's segments are intact up to the first scan and that an end-of-image
/// marker (`FF D9`) follows it. Inside entropy-coded data a `FF` byte is always followed
/// by `00` or a restart marker, so `FF D9` after the scan header can only be the real end;
/// an EXIF thumbnail's own end marker sits before the scan and does not count.
fn check_jpeg_complete(bytes: &[u8]) -> Result<(), String> {
    let mut pos = 2;
    loop {
        // Markers may be preceded by any number of fill bytes 0xFF.
        while pos < bytes.len() && bytes[pos] == 0xFF && bytes.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        if pos + 2 > bytes.len() {
            return Err(format!("truncated JPEG: file ends at byte {} before the image data", bytes.len()));
        }
        if bytes[pos] != 0xFF {
            return Err(format!("corrupt JPEG: expected a marker at byte {pos}, found 0x{:02X}", bytes[pos]));
        }
        let marker = bytes[pos + 1];
        match marker {
            0xDA => break,
            0xD9 => return Err("corrupt JPEG: end-of-image marker before any image data".into()),
            0x01 | 0xD0..=0xD7 => pos += 2,
            _ => {
                if pos + 4 > bytes.len() {
                    return Err(format!("truncated JPEG: file ends at byte {} inside a segment header", bytes.len()));
                }
                let len = u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]) as usize;
                if len < 2 {
                    return Err(format!("corrupt JPEG: segment at byte {pos} has length {len}"));
                }
                pos += 2 + len;
            }
        }
    }
    if bytes[pos..].windows(2).any(|w| w == [0xFF, 0xD9]) {
        Ok(())
    } else {
        Err(format!("truncated JPEG: no end-of-image marker after the image data ({} bytes)", bytes.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, ImageFormat, Luma, Rgb};

    fn jpeg_bytes(grey: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut cursor = Cursor::new(&mut out);
        if grey {
            GrayImage::from_fn(40, 30, |x, y| Luma([(x * 6 + y) as u8]))
                .write_to(&mut cursor, ImageFormat::Jpeg)
                .unwrap();
        } else {
            RgbImage::from_fn(40, 30, |x, y| Rgb([(x * 6) as u8, (y * 8) as u8, 90]))
                .write_to(&mut cursor, ImageFormat::Jpeg)
                .unwrap();
        }
        out
    }

    #[test]
    fn decodes_rgb_and_greyscale_to_rgb() {
        let d = decode(&jpeg_bytes(false), Path::new("c.jpg")).unwrap();
        assert_eq!((d.image.width(), d.image.height(), d.greyscale), (40, 30, false));
        let g = decode(&jpeg_bytes(true), Path::new("g.jpg")).unwrap();
        assert!(g.greyscale);
        // A grey pixel becomes three equal channels.
        let p = g.image.get_pixel(20, 10);
        assert_eq!((p[0], p[1]), (p[1], p[2]));
    }

    #[test]
    fn rejects_empty_truncated_and_garbage_files() {
        let p = Path::new("x/bad.jpg");
        let m = decode(&[], p).unwrap_err().to_string();
        assert_eq!(m, "x/bad.jpg: empty file (0 bytes)");
        let full = jpeg_bytes(false);
        for cut in [full.len() - 2, full.len() / 2, 300, 20, 3] {
            let m = decode(&full[..cut], p).unwrap_err().to_string();
            assert!(m.starts_with("x/bad.jpg: ") && m.contains("JPEG"), "cut {cut}: {m}");
        }
        let m = decode(b"hello, not an image", p).unwrap_err().to_string();
        assert!(m.contains("not a JPEG or PNG"), "{m}");
        let mut png = Vec::new();
        RgbImage::new(8, 8).write_to(&mut Cursor::new(&mut png), ImageFormat::Png).unwrap();
        let m = decode(&png[..png.len() / 2], p).unwrap_err().to_string();
        assert!(m.contains("corrupt image"), "{m}");
    }
}
