//! Resizing, cropping and augmentation, from an RGB image to a normalised CHW `f32`
//! tensor, following torchvision's definitions.
//!
//! A [`Transform`] is an optional deterministic [`Resize`] (the shorter side to 256, or a
//! fixed 256×256) followed by either the training augmentation (RandomResizedCrop,
//! horizontal flip, optional colour jitter) or the evaluation centre crop, then ImageNet
//! mean/std normalisation. [`recipe`] gives the per-dataset recipes of Boudiaf et al.
//! (ECCV 2020).
//!
//! Resampling is bilinear with antialiasing when shrinking (the filter support grows with
//! the scale factor, as in PIL and torchvision's `antialias=True`). The resize and the crop
//! are fused: the crop is chosen in the coordinates of the resized image, as torchvision
//! would, and then sampled straight from the original, so each output pixel is
//! interpolated once. With a [`crate::cache::ResizeCache`] the resized image is kept
//! instead and the crop is sampled from it; the two differ by interpolation rounding only.
//!
//! Colour jitter is applied to the crop, with torchvision's tensor semantics (values in
//! [0, 1], clamped after each step, the four adjustments in a random order). The reference
//! code jitters before cropping; per-pixel adjustments commute with cropping, and only
//! contrast differs (it blends towards the mean grey of the crop rather than of the whole
//! image).
//!
//! Randomness comes from [`image_rng`]`(seed, epoch, index)`, so an image's augmentation
//! depends on those three numbers only, not on threads or batch composition.
//!
//! ```
//! use dmlbench_datasets::transform::{image_rng, Resize, Transform};
//! let image = image::RgbImage::from_pixel(80, 60, image::Rgb([255, 128, 0]));
//! let t = Transform::train(Some(Resize::Shorter(64)), 56);
//! let mut out = vec![0.0; t.output_len()];
//! t.apply(&image, &mut image_rng(1, 0, 7), &mut out);
//! // Red channel of a uniform orange image: (1.0 - 0.485) / 0.229.
//! assert!((out[0] - 2.2489).abs() < 1e-3);
//! ```

use image::RgbImage;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::format::Format;

/// ImageNet channel means (RGB), for inputs in [0, 1].
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The random generator of one image's augmentation.
pub type ImageRng = ChaCha8Rng;

/// The generator for image `index` in epoch `epoch` of a run seeded with `seed`. The three
/// numbers form the ChaCha key directly, so distinct triples give independent streams.
pub fn image_rng(seed: u64, epoch: u64, index: u64) -> ImageRng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&epoch.to_le_bytes());
    key[16..24].copy_from_slice(&index.to_le_bytes());
    key[24..].copy_from_slice(b"dmlb-img");
    ChaCha8Rng::from_seed(key)
}

/// A deterministic resize applied before cropping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resize {
    /// Shorter side to this size, aspect ratio kept (torchvision `Resize(256)`: the longer
    /// side is `int(size · long / short)`).
    Shorter(u32),
    /// Exactly this size (torchvision `Resize((h, w))`).
    Exact {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },
}

impl Resize {
    /// The size of a `width`×`height` image after resizing.
    pub fn apply_to(self, width: u32, height: u32) -> (u32, u32) {
        match self {
            Resize::Exact { width, height } => (width, height),
            Resize::Shorter(s) => {
                if width <= height {
                    (s, ((s as u64 * height as u64) / width.max(1) as u64).max(1) as u32)
                } else {
                    (((s as u64 * width as u64) / height.max(1) as u64).max(1) as u32, s)
                }
            }
        }
    }
}

/// torchvision's `ColorJitter`: each factor is drawn uniformly from
/// [max(0, 1−x), 1+x] (hue: [−x, x], x ≤ 0.5); a zero disables that adjustment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColorJitter {
    /// Brightness strength.
    pub brightness: f32,
    /// Contrast strength.
    pub contrast: f32,
    /// Saturation strength.
    pub saturation: f32,
    /// Hue strength, at most 0.5.
    pub hue: f32,
}

impl ColorJitter {
    /// The CUB setting of the reference code: (0.25, 0.25, 0.25, 0).
    pub const CUB: ColorJitter = ColorJitter { brightness: 0.25, contrast: 0.25, saturation: 0.25, hue: 0.0 };
    /// The Cars196 setting of the reference code: (0.3, 0.3, 0.3, 0.1).
    pub const CARS: ColorJitter = ColorJitter { brightness: 0.3, contrast: 0.3, saturation: 0.3, hue: 0.1 };
}

/// What follows the resize.
#[derive(Debug, Clone, PartialEq)]
pub enum Augment {
    /// Training: RandomResizedCrop to `size`×`size`, horizontal flip with probability
    /// `flip`, then optional colour jitter.
    RandomResizedCrop {
        /// Output side.
        size: u32,
        /// Range of the crop's share of the image area (torchvision default (0.08, 1);
        /// the DML recipes use (0.16, 1)).
        scale: (f64, f64),
        /// Range of the crop's aspect ratio w/h, sampled log-uniformly.
        ratio: (f64, f64),
        /// Probability of a horizontal flip.
        flip: f64,
        /// Colour jitter, if any.
        jitter: Option<ColorJitter>,
    },
    /// Evaluation: the central `size`×`size` crop (zero-padded if the image is smaller).
    CenterCrop {
        /// Output side.
        size: u32,
    },
}

/// A complete transform from a decoded RGB image to a normalised CHW tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Transform {
    /// The resize applied first, if any.
    pub resize: Option<Resize>,
    /// Crop and augmentation.
    pub augment: Augment,
    /// Channel means subtracted (inputs in [0, 1]).
    pub mean: [f32; 3],
    /// Channel standard deviations divided by.
    pub std: [f32; 3],
}

impl Transform {
    /// The DML training transform: RandomResizedCrop(`crop`, scale (0.16, 1), ratio
    /// (3/4, 4/3)) and a horizontal flip with probability ½, no jitter.
    pub fn train(resize: Option<Resize>, crop: u32) -> Self {
        Transform {
            resize,
            augment: Augment::RandomResizedCrop {
                size: crop,
                scale: (0.16, 1.0),
                ratio: (3.0 / 4.0, 4.0 / 3.0),
                flip: 0.5,
                jitter: None,
            },
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }

    /// The evaluation transform: resize, then the central `crop`×`crop`.
    pub fn eval(resize: Option<Resize>, crop: u32) -> Self {
        Transform { resize, augment: Augment::CenterCrop { size: crop }, mean: IMAGENET_MEAN, std: IMAGENET_STD }
    }

    /// The same transform with colour jitter (training transforms only; an evaluation
    /// transform is returned unchanged).
    pub fn with_jitter(mut self, jitter: ColorJitter) -> Self {
        if let Augment::RandomResizedCrop { jitter: j, .. } = &mut self.augment {
            *j = Some(jitter);
        }
        self
    }

    /// The output side length (outputs are square).
    pub fn output_side(&self) -> usize {
        match self.augment {
            Augment::RandomResizedCrop { size, .. } | Augment::CenterCrop { size } => size as usize,
        }
    }

    /// Number of `f32` values of one output image: 3 × side × side.
    pub fn output_len(&self) -> usize {
        3 * self.output_side() * self.output_side()
    }

    /// The deterministic first step alone: the image after [`Transform::resize`] (a copy if
    /// there is none). This is what a resize cache stores.
    pub fn prepare(&self, image: &RgbImage) -> RgbImage {
        match self.resize {
            None => image.clone(),
            Some(resize) => {
                let (w, h) = resize.apply_to(image.width(), image.height());
                let rect = Rect { x0: 0.0, y0: 0.0, w: image.width() as f64, h: image.height() as f64 };
                let hwc = resample(image, rect, w as usize, h as usize, false);
                let bytes = hwc.iter().map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8).collect();
                RgbImage::from_raw(w, h, bytes).expect("buffer has w·h·3 values")
            }
        }
    }

    /// Transforms an original (decoded, not resized) image into `out`, which must hold
    /// [`Transform::output_len`] values (CHW).
    pub fn apply(&self, image: &RgbImage, rng: &mut ImageRng, out: &mut [f32]) {
        let frame = match self.resize {
            Some(r) => r.apply_to(image.width(), image.height()),
            None => (image.width(), image.height()),
        };
        self.run(image, frame, rng, out);
    }

    /// Transforms an image that [`Transform::prepare`] already resized (as a resize cache
    /// returns it) into `out`.
    pub fn apply_prepared(&self, prepared: &RgbImage, rng: &mut ImageRng, out: &mut [f32]) {
        self.run(prepared, (prepared.width(), prepared.height()), rng, out);
    }

    /// Chooses the crop in `frame` coordinates (the image as resized), maps it onto
    /// `image`, samples, jitters and normalises.
    fn run(&self, image: &RgbImage, frame: (u32, u32), rng: &mut ImageRng, out: &mut [f32]) {
        let side = self.output_side();
        assert_eq!(out.len(), 3 * side * side, "output buffer has the wrong length");
        let (fw, fh) = (frame.0 as f64, frame.1 as f64);
        let (sx, sy) = (image.width() as f64 / fw, image.height() as f64 / fh);
        let (crop, flip, jitter) = match &self.augment {
            Augment::RandomResizedCrop { size: _, scale, ratio, flip, jitter } => {
                let crop = random_resized_crop_params(frame.0, frame.1, *scale, *ratio, rng);
                let flip = rng.random::<f64>() < *flip;
                let jitter = jitter.map(|j| JitterDraw::sample(&j, rng));
                (crop, flip, jitter)
            }
            Augment::CenterCrop { size } => (center_crop_params(frame.0, frame.1, *size), false, None),
        };
        let rect = Rect {
            x0: crop.left as f64 * sx,
            y0: crop.top as f64 * sy,
            w: crop.width as f64 * sx,
            h: crop.height as f64 * sy,
        };
        let mut hwc = resample(image, rect, side, side, flip);
        if let Some(draw) = jitter {
            draw.apply(&mut hwc);
        }
        let plane = side * side;
        for (p, px) in hwc.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * plane + p] = (px[c] - self.mean[c]) / self.std[c];
            }
        }
    }
}

/// Sizes for [`recipe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecipeSizes {
    /// Resize target (256 in the literature).
    pub resize: u32,
    /// Crop side (224 in the literature).
    pub crop: u32,
}

impl Default for RecipeSizes {
    fn default() -> Self {
        RecipeSizes { resize: 256, crop: 224 }
    }
}

/// A dataset's training and evaluation transforms.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    /// Training transform.
    pub train: Transform,
    /// Evaluation transform.
    pub eval: Transform,
}

/// The transforms of Boudiaf et al.'s code for `format`, with configurable sizes (use
/// e.g. 64/56 for small synthetic images):
///
/// | format | resize (train and eval) | RandomResizedCrop ratio | jitter when enabled |
/// |---|---|---|---|
/// | CUB, folder, features | shorter side | 3/4–4/3 | (0.25, 0.25, 0.25, 0) |
/// | Cars196 | fixed square | 1 (square crops) | (0.3, 0.3, 0.3, 0.1) |
/// | SOP | fixed square | 3/4–4/3 | (0.25, 0.25, 0.25, 0) |
/// | In-Shop | fixed square | 3/4–4/3 | (0.25, 0.25, 0.25, 0) |
///
/// All use scale (0.16, 1) and a flip with probability ½ for training, and a centre crop
/// for evaluation. The reference code enables jitter for CUB and Cars196 and does not
/// resize In-Shop (its images are already 256×256, so the fixed square resize leaves them
/// unchanged and makes other sizes work).
pub fn recipe(format: Format, sizes: RecipeSizes, jitter: bool) -> Recipe {
    let square = Resize::Exact { width: sizes.resize, height: sizes.resize };
    let (resize, jitter_values) = match format {
        Format::Cub | Format::Folder | Format::Features => (Resize::Shorter(sizes.resize), ColorJitter::CUB),
        Format::Cars196 => (square, ColorJitter::CARS),
        Format::Sop | Format::Inshop => (square, ColorJitter::CUB),
    };
    let mut train = Transform::train(Some(resize), sizes.crop);
    if format == Format::Cars196
        && let Augment::RandomResizedCrop { ratio, .. } = &mut train.augment
    {
        *ratio = (1.0, 1.0);
    }
    if jitter {
        train = train.with_jitter(jitter_values);
    }
    Recipe { train, eval: Transform::eval(Some(resize), sizes.crop) }
}

/// A crop box in integer pixel coordinates of the (resized) frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    /// Top row (negative when padding).
    pub top: i64,
    /// Left column (negative when padding).
    pub left: i64,
    /// Height.
    pub height: i64,
    /// Width.
    pub width: i64,
}

fn uniform(rng: &mut ImageRng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// torchvision's `RandomResizedCrop.get_params`: up to 10 attempts at a crop with area
/// share in `scale` and log-uniform aspect ratio in `ratio` that fits; then the centre
/// crop with the ratio clamped to `ratio`. Sizes are rounded half to even, like Python.
pub fn random_resized_crop_params(
    width: u32,
    height: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut ImageRng,
) -> CropBox {
    let (w_img, h_img) = (width as i64, height as i64);
    let area = (width as f64) * (height as f64);
    let (log_lo, log_hi) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * uniform(rng, scale.0, scale.1);
        let aspect = uniform(rng, log_lo, log_hi).exp();
        let w = (target * aspect).sqrt().round_ties_even() as i64;
        let h = (target / aspect).sqrt().round_ties_even() as i64;
        if 0 < w && w <= w_img && 0 < h && h <= h_img {
            let top = rng.random_range(0..=h_img - h);
            let left = rng.random_range(0..=w_img - w);
            return CropBox { top, left, height: h, width: w };
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < ratio.0.min(ratio.1) {
        (w_img, (w_img as f64 / ratio.0.min(ratio.1)).round_ties_even() as i64)
    } else if in_ratio > ratio.0.max(ratio.1) {
        ((h_img as f64 * ratio.0.max(ratio.1)).round_ties_even() as i64, h_img)
    } else {
        (w_img, h_img)
    };
    CropBox { top: (h_img - h) / 2, left: (w_img - w) / 2, height: h, width: w }
}

/// torchvision's `CenterCrop`: offsets `round((size_in − size) / 2)`; an image smaller
/// than the crop is padded with zeros, `(size − size_in) // 2` before.
pub fn center_crop_params(width: u32, height: u32, size: u32) -> CropBox {
    let offset = |len: u32| -> i64 {
        if len >= size { ((len - size) as f64 / 2.0).round_ties_even() as i64 } else { -(((size - len) / 2) as i64) }
    };
    CropBox { top: offset(height), left: offset(width), height: size as i64, width: size as i64 }
}

/// A rectangle in source pixel coordinates.
#[derive(Debug, Clone, Copy)]
struct Rect {
    x0: f64,
    y0: f64,
    w: f64,
    h: f64,
}

/// Filter taps of one axis: for output `i`, input indices `start[i]..start[i] + len[i]`
/// with weights `weights[i * k ..]`.
struct Taps {
    start: Vec<usize>,
    len: Vec<usize>,
    weights: Vec<f32>,
    k: usize,
}

/// Bilinear (triangle) taps mapping `out` samples onto `[x0, x0 + span)` of an axis of
/// `input` pixels. When shrinking, the triangle is widened by the scale factor so that
/// every input pixel contributes (antialiasing). Output samples whose centre falls outside
/// the input get no taps and come out as zero (padding).
fn taps(input: usize, x0: f64, span: f64, out: usize) -> Taps {
    let scale = span / out as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // the triangle's radius is 1 input pixel, widened
    let k = (support.ceil() as usize) * 2 + 1;
    let mut t = Taps { start: vec![0; out], len: vec![0; out], weights: vec![0.0; out * k], k };
    for i in 0..out {
        let center = x0 + (i as f64 + 0.5) * scale;
        if center < 0.0 || center >= input as f64 {
            continue;
        }
        let lo = ((center - support + 0.5).floor().max(0.0)) as usize;
        let hi = ((center + support + 0.5).floor() as usize).min(input);
        let n = (hi - lo).min(k);
        let mut total = 0.0;
        let w = &mut t.weights[i * k..i * k + n];
        for (j, wj) in w.iter_mut().enumerate() {
            let x = ((lo + j) as f64 - center + 0.5) / filter_scale;
            *wj = (1.0 - x.abs()).max(0.0) as f32;
            total += *wj;
        }
        if total > 0.0 {
            w.iter_mut().for_each(|v| *v /= total);
        }
        t.start[i] = lo;
        t.len[i] = n;
    }
    t
}

/// Samples `rect` of `image` into an `ow`×`oh` HWC buffer of values in [0, 1], mirrored
/// horizontally when `flip`. Separable: rows first (only the rows the vertical taps use),
/// then columns.
fn resample(image: &RgbImage, rect: Rect, ow: usize, oh: usize, flip: bool) -> Vec<f32> {
    let (iw, ih) = (image.width() as usize, image.height() as usize);
    let src = image.as_raw();
    let tx = taps(iw, rect.x0, rect.w, ow);
    let ty = taps(ih, rect.y0, rect.h, oh);
    let used = (0..oh).filter(|&i| ty.len[i] > 0);
    let row_lo = used.clone().map(|i| ty.start[i]).min().unwrap_or(0);
    let row_hi = used.map(|i| ty.start[i] + ty.len[i]).max().unwrap_or(0);

    let stride = ow * 3;
    let mut rows = vec![0f32; (row_hi.saturating_sub(row_lo)) * stride];
    for y in row_lo..row_hi {
        let line = &src[y * iw * 3..(y + 1) * iw * 3];
        let dst = &mut rows[(y - row_lo) * stride..(y - row_lo + 1) * stride];
        for o in 0..ow {
            let s = if flip { ow - 1 - o } else { o };
            let (start, n) = (tx.start[s], tx.len[s]);
            let w = &tx.weights[s * tx.k..s * tx.k + n];
            let (mut r, mut g, mut b) = (0f32, 0f32, 0f32);
            for (j, &wj) in w.iter().enumerate() {
                let p = (start + j) * 3;
                r += wj * line[p] as f32;
                g += wj * line[p + 1] as f32;
                b += wj * line[p + 2] as f32;
            }
            dst[o * 3] = r;
            dst[o * 3 + 1] = g;
            dst[o * 3 + 2] = b;
        }
    }

    let mut out = vec![0f32; oh * stride];
    for o in 0..oh {
        let (start, n) = (ty.start[o], ty.len[o]);
        let dst = &mut out[o * stride..(o + 1) * stride];
        for (j, &wj) in ty.weights[o * ty.k..o * ty.k + n].iter().enumerate() {
            let row = &rows[(start + j - row_lo) * stride..(start + j - row_lo + 1) * stride];
            for (d, s) in dst.iter_mut().zip(row) {
                *d += wj * s;
            }
        }
        dst.iter_mut().for_each(|v| *v = (*v / 255.0).clamp(0.0, 1.0));
    }
    out
}

/// The random choices of one colour jitter: an order and the four factors.
#[derive(Debug, Clone, Copy)]
struct JitterDraw {
    order: [usize; 4],
    brightness: Option<f32>,
    contrast: Option<f32>,
    saturation: Option<f32>,
    hue: Option<f32>,
}

impl JitterDraw {
    fn sample(j: &ColorJitter, rng: &mut ImageRng) -> Self {
        // A uniform random permutation (Fisher–Yates), then the factors in a fixed order.
        let mut order = [0, 1, 2, 3];
        for i in (1..4).rev() {
            let k = rng.random_range(0..=i);
            order.swap(i, k);
        }
        let mut factor = |x: f32| (x > 0.0).then(|| uniform(rng, (1.0 - x as f64).max(0.0), 1.0 + x as f64) as f32);
        let brightness = factor(j.brightness);
        let contrast = factor(j.contrast);
        let saturation = factor(j.saturation);
        let hue = (j.hue > 0.0).then(|| uniform(rng, -(j.hue as f64), j.hue as f64) as f32);
        JitterDraw { order, brightness, contrast, saturation, hue }
    }

    fn apply(&self, hwc: &mut [f32]) {
        for step in self.order {
            match step {
                0 => {
                    if let Some(b) = self.brightness {
                        hwc.iter_mut().for_each(|v| *v = (*v * b).clamp(0.0, 1.0));
                    }
                }
                1 => {
                    if let Some(c) = self.contrast {
                        let n = (hwc.len() / 3).max(1) as f32;
                        let mean = hwc.chunks_exact(3).map(grey).sum::<f32>() / n;
                        hwc.iter_mut().for_each(|v| *v = (c * *v + (1.0 - c) * mean).clamp(0.0, 1.0));
                    }
                }
                2 => {
                    if let Some(s) = self.saturation {
                        for p in hwc.chunks_exact_mut(3) {
                            let g = grey(p);
                            p.iter_mut().for_each(|v| *v = (s * *v + (1.0 - s) * g).clamp(0.0, 1.0));
                        }
                    }
                }
                _ => {
                    if let Some(h) = self.hue {
                        hwc.chunks_exact_mut(3).for_each(|p| shift_hue(p, h));
                    }
                }
            }
        }
    }
}

/// ITU-R 601-2 luma, as torchvision's `rgb_to_grayscale`.
fn grey(p: &[f32]) -> f32 {
    0.2989 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

/// torchvision's `adjust_hue` on one pixel: to HSV, rotate hue by `shift` turns, back.
fn shift_hue(p: &mut [f32], shift: f32) {
    let (r, g, b) = (p[0], p[1], p[2]);
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let v = maxc;
    let cr = maxc - minc;
    if cr == 0.0 {
        return; // grey: hue undefined, unchanged
    }
    let s = cr / maxc;
    let (rc, gc, bc) = ((maxc - r) / cr, (maxc - g) / cr, (maxc - b) / cr);
    let h6 = if maxc == r {
        bc - gc
    } else if maxc == g {
        2.0 + rc - bc
    } else {
        4.0 + gc - rc
    };
    let h = ((h6 / 6.0 + 1.0) % 1.0 + shift + 1.0) % 1.0;
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let pp = (v * (1.0 - s)).clamp(0.0, 1.0);
    let q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
    let t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0);
    let (nr, ng, nb) = match (i as i32).rem_euclid(6) {
        0 => (v, t, pp),
        1 => (q, v, pp),
        2 => (pp, v, t),
        3 => (pp, q, v),
        4 => (t, pp, v),
        _ => (v, pp, q),
    };
    p[0] = nr;
    p[1] = ng;
    p[2] = nb;
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| Rgb([(x * 255 / w.max(2).saturating_sub(1).max(1)) as u8, (y % 256) as u8, 7]))
    }

    /// Channel `c` of output pixel (x, y), back in [0, 1].
    fn pixel(t: &Transform, out: &[f32], c: usize, x: usize, y: usize) -> f32 {
        let side = t.output_side();
        out[c * side * side + y * side + x] * t.std[c] + t.mean[c]
    }

    #[test]
    fn resize_shorter_side_truncates_like_torchvision() {
        // 500×375 → shorter side 256: long side int(256·500/375) = int(341.33) = 341.
        assert_eq!(Resize::Shorter(256).apply_to(500, 375), (341, 256));
        assert_eq!(Resize::Shorter(256).apply_to(375, 500), (256, 341));
        assert_eq!(Resize::Exact { width: 64, height: 32 }.apply_to(500, 375), (64, 32));
    }

    #[test]
    fn center_crop_offsets_round_half_to_even_and_pad() {
        // (341 − 224) / 2 = 58.5 → 58 (Python's round), (256 − 224) / 2 = 16.
        assert_eq!(center_crop_params(341, 256, 224), CropBox { top: 16, left: 58, height: 224, width: 224 });
        // (227 − 224) / 2 = 1.5 → 2.
        assert_eq!(center_crop_params(227, 224, 224).left, 2);
        // A 10-pixel image and a 16 crop: (16 − 10) // 2 = 3 pixels of padding before.
        assert_eq!(center_crop_params(10, 10, 16).top, -3);
    }

    #[test]
    fn identity_crop_copies_pixels_exactly() {
        let img = gradient(20, 12);
        let t = Transform::eval(None, 12);
        let mut out = vec![0.0; t.output_len()];
        t.apply(&img, &mut image_rng(0, 0, 0), &mut out);
        // left = round((20 − 12) / 2) = 4.
        for (x, y) in [(0, 0), (5, 3), (11, 11)] {
            let want = img.get_pixel(x as u32 + 4, y as u32);
            for c in 0..3 {
                let got = pixel(&t, &out, c, x, y);
                assert!((got - want[c] as f32 / 255.0).abs() < 1e-5, "({x},{y}) c{c}: {got}");
            }
        }
    }

    #[test]
    fn padding_is_zero_before_normalisation() {
        let img = RgbImage::from_pixel(4, 4, Rgb([255, 255, 255]));
        let t = Transform::eval(None, 8);
        let mut out = vec![0.0; t.output_len()];
        t.apply(&img, &mut image_rng(0, 0, 0), &mut out);
        assert!(pixel(&t, &out, 0, 0, 0).abs() < 1e-6); // padding
        assert!((pixel(&t, &out, 0, 3, 3) - 1.0).abs() < 1e-6); // image
    }

    #[test]
    fn downscaling_averages_like_a_box_for_integer_factors() {
        // Halving with the widened triangle: output pixel 0 covers inputs 0..=2 with
        // weights (0.75, 0.75, 0.25) / 1.75 around centre 1.0 (PIL's BILINEAR reduce).
        let img = RgbImage::from_fn(4, 1, |x, _| Rgb([[0, 100, 200, 40][x as usize], 0, 0]));
        let t = Transform::eval(Some(Resize::Exact { width: 2, height: 1 }), 1);
        let prepared = t.prepare(&img);
        assert_eq!(prepared.dimensions(), (2, 1));
        let want0 = (0.75 * 0.0 + 0.75 * 100.0 + 0.25 * 200.0) / 1.75;
        let want1 = (0.25 * 100.0 + 0.75 * 200.0 + 0.75 * 40.0) / 1.75;
        assert_eq!(prepared.get_pixel(0, 0)[0], (want0 as f32).round() as u8);
        assert_eq!(prepared.get_pixel(1, 0)[0], (want1 as f32).round() as u8);
    }

    #[test]
    fn flip_mirrors_the_crop() {
        let img = gradient(16, 16);
        let mut t = Transform::train(None, 16);
        if let Augment::RandomResizedCrop { scale, flip, .. } = &mut t.augment {
            *scale = (1.0, 1.0);
            *flip = 1.0;
        }
        if let Augment::RandomResizedCrop { ratio, .. } = &mut t.augment {
            *ratio = (1.0, 1.0);
        }
        let mut out = vec![0.0; t.output_len()];
        t.apply(&img, &mut image_rng(3, 0, 0), &mut out);
        // The whole image, mirrored: output column 0 is input column 15.
        assert!((pixel(&t, &out, 0, 0, 5) - 1.0).abs() < 1e-5);
        assert!(pixel(&t, &out, 0, 15, 5).abs() < 1e-5);
    }

    #[test]
    fn random_resized_crop_respects_bounds_and_ranges() {
        let mut rng = image_rng(9, 1, 2);
        for _ in 0..2000 {
            let c = random_resized_crop_params(500, 375, (0.16, 1.0), (0.75, 4.0 / 3.0), &mut rng);
            assert!(c.top >= 0 && c.left >= 0 && c.top + c.height <= 375 && c.left + c.width <= 500, "{c:?}");
            let share = (c.width * c.height) as f64 / (500.0 * 375.0);
            // Rounding of w and h lets the area stray slightly past the range.
            assert!((0.155..=1.0).contains(&share), "{share}");
        }
    }

    #[test]
    fn random_resized_crop_falls_back_to_a_clamped_centre_crop() {
        // A 1000×10 strip cannot fit any crop with ratio ≤ 4/3 and area ≥ 16%: all ten
        // attempts fail, and the fallback clamps the ratio: h = 10, w = round(10·4/3) = 13.
        let mut rng = image_rng(0, 0, 0);
        let c = random_resized_crop_params(1000, 10, (0.16, 1.0), (0.75, 4.0 / 3.0), &mut rng);
        assert_eq!(c, CropBox { top: 0, left: (1000 - 13) / 2, height: 10, width: 13 });
    }

    #[test]
    fn jitter_matches_torchvision_definitions() {
        // Brightness 1.5 on 0.5 → 0.75; contrast 0 → the mean grey everywhere;
        // saturation 0 → per-pixel grey; hue +1/3 turns red into green.
        let px = [0.8f32, 0.2, 0.1, 0.2, 0.4, 0.6];
        let none = JitterDraw { order: [0, 1, 2, 3], brightness: None, contrast: None, saturation: None, hue: None };
        let mut b = px;
        JitterDraw { brightness: Some(1.5), ..none }.apply(&mut b);
        assert!((b[0] - 1.0).abs() < 1e-6 && (b[1] - 0.3).abs() < 1e-6, "{b:?}");
        let mut c = px;
        JitterDraw { contrast: Some(0.0), ..none }.apply(&mut c);
        let mean = (grey(&px[..3]) + grey(&px[3..])) / 2.0;
        assert!(c.iter().all(|v| (v - mean).abs() < 1e-6), "{c:?}");
        let mut s = px;
        JitterDraw { saturation: Some(0.0), ..none }.apply(&mut s);
        assert!((s[0] - grey(&px[..3])).abs() < 1e-6 && (s[5] - grey(&px[3..])).abs() < 1e-6, "{s:?}");
        let mut h = [1.0f32, 0.0, 0.0];
        shift_hue(&mut h, 1.0 / 3.0);
        assert!(h[0].abs() < 1e-5 && (h[1] - 1.0).abs() < 1e-5 && h[2].abs() < 1e-5, "{h:?}");
        let mut grey_px = [0.3f32, 0.3, 0.3];
        shift_hue(&mut grey_px, 0.2);
        assert_eq!(grey_px, [0.3, 0.3, 0.3]);
    }

    #[test]
    fn same_seed_epoch_index_gives_the_same_output() {
        let img = gradient(50, 40);
        let t = Transform::train(Some(Resize::Shorter(32)), 24).with_jitter(ColorJitter::CARS);
        let run = |s, e, i| {
            let mut out = vec![0.0; t.output_len()];
            t.apply(&img, &mut image_rng(s, e, i), &mut out);
            out
        };
        assert_eq!(run(1, 2, 3), run(1, 2, 3));
        assert_ne!(run(1, 2, 3), run(1, 3, 3));
        assert_ne!(run(1, 2, 3), run(1, 2, 4));
    }

    #[test]
    fn recipes_follow_the_reference_code() {
        let cub = recipe(Format::Cub, RecipeSizes::default(), true);
        assert_eq!(cub.eval, Transform::eval(Some(Resize::Shorter(256)), 224));
        assert!(matches!(
            cub.train.augment,
            Augment::RandomResizedCrop { size: 224, scale: (0.16, 1.0), jitter: Some(ColorJitter::CUB), .. }
        ));
        let cars = recipe(Format::Cars196, RecipeSizes { resize: 64, crop: 56 }, false);
        assert_eq!(cars.train.resize, Some(Resize::Exact { width: 64, height: 64 }));
        assert!(matches!(cars.train.augment, Augment::RandomResizedCrop { ratio: (1.0, 1.0), jitter: None, .. }));
    }
}
