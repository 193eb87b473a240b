//! Fixture helpers shared by the integration tests: hand-written files and small images
//! made directly with the `image` crate, independent of the synthetic generator.
#![allow(dead_code)]

use std::io::Cursor;
use std::path::Path;

use image::{GrayImage, ImageFormat, Luma, Rgb, RgbImage};

/// Writes `text` to `root/rel`, creating parent directories.
pub fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The bytes of a `w`×`h` JPEG: a colour gradient tinted by `tint`, or greyscale.
pub fn jpeg(w: u32, h: u32, tint: u8, grey: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut cursor = Cursor::new(&mut out);
    if grey {
        GrayImage::from_fn(w, h, |x, y| Luma([((x + y) * 4 % 256) as u8]))
            .write_to(&mut cursor, ImageFormat::Jpeg)
            .unwrap();
    } else {
        RgbImage::from_fn(w, h, |x, y| Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, tint]))
            .write_to(&mut cursor, ImageFormat::Jpeg)
            .unwrap();
    }
    out
}

/// Writes a JPEG to `root/rel`.
pub fn write_jpeg(root: &Path, rel: &str, w: u32, h: u32, tint: u8, grey: bool) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, jpeg(w, h, tint, grey)).unwrap();
}

/// The message of an error with its sources, asserting it contains every one of `parts`.
pub fn assert_error<T: std::fmt::Debug, E: std::error::Error>(result: Result<T, E>, parts: &[&str]) -> String {
    let message = dmlbench_datasets::error::with_sources(&result.expect_err("expected an error"));
    for part in parts {
        assert!(message.contains(part), "error {message:?} does not contain {part:?}");
    }
    message
}

/// `n` items spread over `classes` consecutive class ids starting at `first`, as evenly as
/// possible: the per-class counts of the published splits are not uniform either.
pub fn spread(n: usize, classes: usize, first: usize) -> Vec<usize> {
    (0..n).map(|i| first + i * classes / n).collect()
}
