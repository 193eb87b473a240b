//! Procedural images: each class is a composition of parts (shapes with their own colour
//! and surface pattern) and strokes; each instance draws that composition in a new pose,
//! scale and colour cast, over a varying background, with a distractor shape and noise.
//!
//! The class identity is in the structure (which shapes, where, with which patterns and
//! relative colours), not in any single pixel statistic: backgrounds, global colour and
//! position vary per image, so matching raw pixels retrieves poorly, while a network can
//! learn features that transfer to unseen compositions built from the same vocabulary.

use std::f32::consts::{PI, TAU};

use image::{Rgb, RgbImage};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::split::BBox;

/// A random generator from a tag and three numbers (distinct tags, distinct streams).
pub(crate) fn rng(tag: &[u8; 8], a: u64, b: u64, c: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(tag);
    key[8..16].copy_from_slice(&a.to_le_bytes());
    key[16..24].copy_from_slice(&b.to_le_bytes());
    key[24..].copy_from_slice(&c.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

fn unit(r: &mut ChaCha8Rng) -> f32 {
    r.random::<f32>()
}

fn range(r: &mut ChaCha8Rng, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * unit(r)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    Disc,
    Square,
    Triangle,
    Ring,
    Cross,
    Star,
    Crescent,
}

const SHAPES: [Shape; 7] =
    [Shape::Disc, Shape::Square, Shape::Triangle, Shape::Ring, Shape::Cross, Shape::Star, Shape::Crescent];

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Disc => "Disc",
            Shape::Square => "Block",
            Shape::Triangle => "Wedge",
            Shape::Ring => "Ring",
            Shape::Cross => "Cross",
            Shape::Star => "Star",
            Shape::Crescent => "Crescent",
        }
    }

    /// Signed distance (negative inside) in the part's unit frame, where the shape fits
    /// in the unit disc.
    fn distance(self, x: f32, y: f32, points: f32) -> f32 {
        match self {
            Shape::Disc => (x * x + y * y).sqrt() - 0.9,
            Shape::Square => {
                let (dx, dy) = (x.abs() - 0.7, y.abs() - 0.7);
                let outside = (dx.max(0.0).powi(2) + dy.max(0.0).powi(2)).sqrt();
                outside + dx.max(dy).min(0.0)
            }
            Shape::Triangle => {
                // Equilateral triangle, circumradius 1, pointing up: intersection of three
                // half-planes at distance 0.5 from the centre.
                let d0 = -y - 0.5;
                let d1 = (0.866 * x + 0.5 * y) - 0.5;
                let d2 = (-0.866 * x + 0.5 * y) - 0.5;
                d0.max(d1).max(d2)
            }
            Shape::Ring => ((x * x + y * y).sqrt() - 0.7).abs() - 0.22,
            Shape::Cross => {
                let bar = |u: f32, v: f32| (u.abs() - 0.9).max(v.abs() - 0.28);
                bar(x, y).min(bar(y, x))
            }
            Shape::Star => {
                let r = (x * x + y * y).sqrt();
                let a = y.atan2(x);
                let edge = 0.55 + 0.4 * (points * a).cos();
                (r - edge) * 0.7
            }
            Shape::Crescent => {
                let outer = (x * x + y * y).sqrt() - 0.9;
                let inner = ((x - 0.45).powi(2) + y * y).sqrt() - 0.7;
                outer.max(-inner)
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Pattern {
    Solid,
    Stripes { freq: f32, angle: f32 },
    Checker { freq: f32 },
    Dots { freq: f32 },
}

#[derive(Debug, Clone)]
struct Part {
    shape: Shape,
    points: f32,
    center: (f32, f32),
    size: f32,
    aspect: f32,
    angle: f32,
    hue: f32,
    saturation: f32,
    value: f32,
    pattern: Pattern,
    second_value: f32,
}

#[derive(Debug, Clone)]
struct Stroke {
    points: [(f32, f32); 3],
    width: f32,
    hue: f32,
    value: f32,
}

/// The identity of a class: what every one of its images shows.
#[derive(Debug, Clone)]
pub(crate) struct ClassRecipe {
    parts: Vec<Part>,
    strokes: Vec<Stroke>,
    background_hue: f32,
}

impl ClassRecipe {
    /// The class's composition, determined by (`seed`, `class`).
    pub fn new(seed: u64, class: u64) -> Self {
        let mut r = rng(b"dmlbclas", seed, class, 0);
        let base_hue = unit(&mut r);
        let n_parts = r.random_range(2..=4);
        let parts = (0..n_parts)
            .map(|k| {
                // The first part is the body near the centre; the others are attached
                // around it at class-specific angles.
                let (dist, size) = if k == 0 {
                    (range(&mut r, 0.0, 0.15), range(&mut r, 0.55, 0.8))
                } else {
                    (range(&mut r, 0.45, 0.8), range(&mut r, 0.25, 0.45))
                };
                let at = unit(&mut r) * TAU;
                let pattern = match r.random_range(0..4) {
                    0 => Pattern::Solid,
                    1 => Pattern::Stripes { freq: range(&mut r, 3.0, 7.0), angle: unit(&mut r) * PI },
                    2 => Pattern::Checker { freq: range(&mut r, 2.5, 5.0) },
                    _ => Pattern::Dots { freq: range(&mut r, 3.0, 6.0) },
                };
                Part {
                    shape: SHAPES[r.random_range(0..SHAPES.len())],
                    points: r.random_range(4..=7) as f32,
                    center: (dist * at.cos(), dist * at.sin()),
                    size,
                    aspect: range(&mut r, 0.6, 1.0),
                    angle: unit(&mut r) * TAU,
                    hue: (base_hue + range(&mut r, -0.25, 0.25) + if k % 2 == 1 { 0.5 } else { 0.0 }).rem_euclid(1.0),
                    saturation: range(&mut r, 0.5, 1.0),
                    value: range(&mut r, 0.45, 1.0),
                    pattern,
                    second_value: range(&mut r, 0.1, 0.5),
                }
            })
            .collect();
        let n_strokes = r.random_range(0..=2);
        let strokes = (0..n_strokes)
            .map(|_| Stroke {
                points: [0, 1, 2].map(|_| (range(&mut r, -1.0, 1.0), range(&mut r, -1.0, 1.0))),
                width: range(&mut r, 0.05, 0.12),
                hue: unit(&mut r),
                value: range(&mut r, 0.1, 0.9),
            })
            .collect();
        ClassRecipe { parts, strokes, background_hue: (base_hue + 0.5).rem_euclid(1.0) }
    }

    /// A short readable name, e.g. `Red_Star`.
    pub fn name(&self) -> String {
        let hue_names =
            ["Red", "Orange", "Yellow", "Lime", "Green", "Teal", "Cyan", "Azure", "Blue", "Violet", "Magenta", "Rose"];
        let body = &self.parts[0];
        let hue = hue_names[((body.hue * 12.0).round() as usize) % 12];
        format!("{hue}_{}", body.shape.name())
    }
}

/// HSV (all in [0, 1]) to RGB in [0, 1].
fn hsv(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h6 = h.rem_euclid(1.0) * 6.0;
    let i = h6.floor();
    let f = h6 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match i as i32 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}

/// Distance from `p` to the segment `a`–`b`.
fn segment_distance(p: (f32, f32), a: (f32, f32), b: (f32, f32)) -> f32 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = (dx * dx + dy * dy).max(1e-12);
    let t = (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0);
    let (cx, cy) = (a.0 + t * dx - p.0, a.1 + t * dy - p.1);
    (cx * cx + cy * cy).sqrt()
}

/// One image of a class, drawn with the instance generator `r`. Returns the image and
/// the bounding box of the object (parts and strokes).
pub(crate) fn render(recipe: &ClassRecipe, r: &mut ChaCha8Rng, width: u32, height: u32) -> (RgbImage, BBox) {
    let (w, h) = (width as f32, height as f32);
    let short = w.min(h);

    // Pose and colour cast of this instance.
    let radius = short * 0.36 * range(r, 0.75, 1.1);
    let center = (w * (0.5 + range(r, -0.12, 0.12)), h * (0.5 + range(r, -0.12, 0.12)));
    let rotation = range(r, -0.5, 0.5);
    let (cos_r, sin_r) = (rotation.cos(), rotation.sin());
    let hue_shift = range(r, -0.04, 0.04);
    let value_scale = range(r, 0.8, 1.15);
    let parts: Vec<(Part, f32, f32, f32)> = recipe
        .parts
        .iter()
        .map(|p| {
            // Parts move a little relative to each other (a deformable object).
            let mut p = p.clone();
            p.center.0 += range(r, -0.06, 0.06);
            p.center.1 += range(r, -0.06, 0.06);
            p.angle += range(r, -0.15, 0.15);
            let (c, s) = (p.angle.cos(), p.angle.sin());
            let scale = p.size;
            (p, c, s, scale)
        })
        .collect();

    // Background: a gradient between two colours, half class-tinted, half random.
    let bg_a = hsv(recipe.background_hue + range(r, -0.15, 0.15), range(r, 0.05, 0.4), range(r, 0.3, 0.95));
    let bg_b = hsv(unit(r), range(r, 0.05, 0.5), range(r, 0.2, 0.9));
    let bg_angle = unit(r) * TAU;
    let (gx, gy) = (bg_angle.cos() / short, bg_angle.sin() / short);

    // A distractor shape that belongs to no class.
    let distractor = (unit(r) < 0.6).then(|| {
        let shape = SHAPES[r.random_range(0..SHAPES.len())];
        let size = short * range(r, 0.08, 0.18);
        let at = (range(r, 0.0, w), range(r, 0.0, h));
        (shape, size, at, hsv(unit(r), range(r, 0.3, 1.0), range(r, 0.3, 1.0)))
    });
    let noise = range(r, 0.01, 0.04);

    let px = 1.0 / radius; // one pixel in object units
    let mut image = RgbImage::new(width, height);
    let (mut x_lo, mut y_lo, mut x_hi, mut y_hi) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for yi in 0..height {
        for xi in 0..width {
            let (x, y) = (xi as f32 + 0.5, yi as f32 + 0.5);
            let t = ((x - w / 2.0) * gx + (y - h / 2.0) * gy).clamp(-1.0, 1.0) * 0.5 + 0.5;
            let mut color = mix(bg_a, bg_b, t);

            if let Some((shape, size, at, c)) = distractor {
                let d = shape.distance((x - at.0) / size, (y - at.1) / size, 5.0) * size;
                color = mix(color, c, (0.5 - d).clamp(0.0, 1.0));
            }

            // Object frame: centred, rotated, unit radius.
            let (ox, oy) = ((x - center.0) * px, (y - center.1) * px);
            let (qx, qy) = (cos_r * ox + sin_r * oy, -sin_r * ox + cos_r * oy);
            let mut coverage_max = 0.0f32;
            for (p, c, s, scale) in &parts {
                let (dx, dy) = ((qx - p.center.0) / scale, (qy - p.center.1) / scale);
                let (lx, ly) = ((c * dx + s * dy) / p.aspect, -s * dx + c * dy);
                let d = p.shape.distance(lx, ly, p.points) * scale * p.aspect.min(1.0);
                let coverage = (0.5 - d / px).clamp(0.0, 1.0);
                if coverage <= 0.0 {
                    continue;
                }
                let on = match p.pattern {
                    Pattern::Solid => true,
                    Pattern::Stripes { freq, angle } => (freq * PI * (lx * angle.cos() + ly * angle.sin())).sin() > 0.0,
                    Pattern::Checker { freq } => ((freq * PI * lx).sin() * (freq * PI * ly).sin()) > 0.0,
                    Pattern::Dots { freq } => {
                        let (fx, fy) = ((lx * freq).rem_euclid(1.0) - 0.5, (ly * freq).rem_euclid(1.0) - 0.5);
                        fx * fx + fy * fy > 0.09
                    }
                };
                let v = if on { p.value } else { p.value * p.second_value };
                let part_color = hsv(p.hue + hue_shift, p.saturation, (v * value_scale).min(1.0));
                color = mix(color, part_color, coverage);
                coverage_max = coverage_max.max(coverage);
            }
            for stroke in &recipe.strokes {
                // The quadratic Bézier curve as 8 segments.
                let [a, b, c] = stroke.points;
                let at = |t: f32| {
                    let u = 1.0 - t;
                    (u * u * a.0 + 2.0 * u * t * b.0 + t * t * c.0, u * u * a.1 + 2.0 * u * t * b.1 + t * t * c.1)
                };
                let d = (0..8)
                    .map(|k| segment_distance((qx, qy), at(k as f32 / 8.0), at((k + 1) as f32 / 8.0)))
                    .fold(f32::MAX, f32::min);
                let coverage = (0.5 - (d - stroke.width / 2.0) / px).clamp(0.0, 1.0);
                if coverage > 0.0 {
                    let sc = hsv(stroke.hue + hue_shift, 0.7, stroke.value * value_scale.min(1.0));
                    color = mix(color, sc, coverage);
                    coverage_max = coverage_max.max(coverage);
                }
            }
            if coverage_max > 0.5 {
                x_lo = x_lo.min(xi as f32);
                y_lo = y_lo.min(yi as f32);
                x_hi = x_hi.max(xi as f32 + 1.0);
                y_hi = y_hi.max(yi as f32 + 1.0);
            }

            // Noise: a cheap symmetric distribution (sum of two uniforms) per channel.
            let mut out = [0u8; 3];
            for (k, o) in out.iter_mut().enumerate() {
                let n = (unit(r) + unit(r) - 1.0) * noise * 2.0;
                *o = ((color[k] + n).clamp(0.0, 1.0) * 255.0).round() as u8;
            }
            image.put_pixel(xi, yi, Rgb(out));
        }
    }
    let bbox = if x_hi > x_lo {
        BBox { x1: x_lo, y1: y_lo, x2: x_hi, y2: y_hi }
    } else {
        BBox { x1: 0.0, y1: 0.0, x2: w, y2: h }
    };
    (image, bbox)
}
