//! A cache of decoded, resized images, so that each JPEG is decoded once rather than once
//! per epoch.
//!
//! The cache stores what [`Transform::prepare`] returns: the image after the recipe's
//! deterministic resize (for CUB, shorter side 256: about 260 KB per image), from which the
//! random crop of every epoch is then sampled. Images are kept in memory up to a byte
//! budget (once it is spent, further images are simply not kept) and, optionally, in a
//! directory on disk, where they survive between runs. A disk entry records the source
//! file's size and modification time and is recomputed when either changes.
//!
//! Keys are image paths, so one cache can serve several splits of a dataset; it must be
//! used with transforms whose resize equals its own.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use dmlbench_datasets::{cache::ResizeCache, index, synth, transform::Resize, Format, LoadOptions, Split};
//! synth::generate(Format::Folder, dir.path(), &synth::SynthOptions { classes: 2, per_class: 2, size: 40, ..Default::default() }).unwrap();
//! let train = index::load(Format::Folder, dir.path(), &LoadOptions::default()).unwrap().into_split(Split::Train).unwrap();
//! let cache = ResizeCache::in_memory(Some(Resize::Shorter(32)), 1 << 20);
//! let first = cache.get(&train, 0).unwrap();
//! assert_eq!(first.width().min(first.height()), 32);
//! cache.get(&train, 0).unwrap();
//! assert_eq!((cache.stats().hits, cache.stats().misses), (1, 1));
//! ```

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use image::RgbImage;

use crate::decode;
use crate::error::DatasetError;
use crate::split::SplitIndex;
use crate::transform::{Resize, Transform};

const MAGIC: &[u8; 8] = b"DMLRSZ01";

/// Hits, misses and memory use of a [`ResizeCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Images served from memory or disk.
    pub hits: u64,
    /// Images decoded and resized.
    pub misses: u64,
    /// Bytes of pixels held in memory.
    pub memory_bytes: u64,
}

/// Decoded and resized images, in memory and optionally on disk.
pub struct ResizeCache {
    resize: Option<Resize>,
    budget: u64,
    memory: Mutex<HashMap<PathBuf, Arc<RgbImage>>>,
    used: AtomicU64,
    disk: Option<PathBuf>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ResizeCache {
    /// A memory-only cache holding at most `max_bytes` of pixels.
    pub fn in_memory(resize: Option<Resize>, max_bytes: u64) -> Self {
        ResizeCache {
            resize,
            budget: max_bytes,
            memory: Mutex::new(HashMap::new()),
            used: AtomicU64::new(0),
            disk: None,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// A cache that also keeps every image in `dir` (created if needed), with up to
    /// `max_memory_bytes` of them in memory as well.
    pub fn on_disk(resize: Option<Resize>, dir: &Path, max_memory_bytes: u64) -> Result<Self, DatasetError> {
        std::fs::create_dir_all(dir).map_err(|e| DatasetError::io(dir, e))?;
        Ok(ResizeCache { disk: Some(dir.to_path_buf()), ..Self::in_memory(resize, max_memory_bytes) })
    }

    /// The resize this cache applies.
    pub fn resize(&self) -> Option<Resize> {
        self.resize
    }

    /// Counters so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            memory_bytes: self.used.load(Ordering::Relaxed),
        }
    }

    /// Image `i` of `split`, decoded and resized.
    pub fn get(&self, split: &SplitIndex, i: usize) -> Result<Arc<RgbImage>, DatasetError> {
        let path = split.path(i);
        if let Some(image) = self.memory.lock().expect("cache lock").get(&path) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(image.clone());
        }
        let stamp = source_stamp(&path)?;
        if let Some(image) = self.disk_path(&path).and_then(|p| read_entry(&p, stamp)) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(self.keep(path, image));
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let decoded = decode::read(&path)?;
        let transform = Transform { resize: self.resize, ..Transform::eval(None, 1) };
        let image = transform.prepare(&decoded.image);
        if let Some(entry) = self.disk_path(&path) {
            // A cache that cannot be written is slower, not wrong: ignore the error.
            let _ = write_entry(&entry, stamp, &image);
        }
        Ok(self.keep(path, image))
    }

    fn keep(&self, path: PathBuf, image: RgbImage) -> Arc<RgbImage> {
        let image = Arc::new(image);
        let bytes = image.as_raw().len() as u64;
        let mut memory = self.memory.lock().expect("cache lock");
        if self.used.load(Ordering::Relaxed) + bytes <= self.budget && !memory.contains_key(&path) {
            self.used.fetch_add(bytes, Ordering::Relaxed);
            memory.insert(path, image.clone());
        }
        image
    }

    /// The entry file for `source`: a hash of its path and of the resize.
    fn disk_path(&self, source: &Path) -> Option<PathBuf> {
        let dir = self.disk.as_ref()?;
        let key = format!("{}\0{:?}", source.display(), self.resize);
        Some(dir.join(format!("{:016x}.rgb", fnv1a(key.as_bytes()))))
    }
}

/// FNV-1a, 64-bit: stable across Rust versions, unlike `DefaultHasher`, so disk entries
/// stay valid.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Size and modification time (ns) of the source image.
fn source_stamp(path: &Path) -> Result<(u64, u64), DatasetError> {
    let meta = std::fs::metadata(path).map_err(|e| DatasetError::io(path, e))?;
    let modified =
        meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos() as u64);
    Ok((meta.len(), modified))
}

/// An entry: magic, source size, source mtime, width, height, then RGB bytes.
fn read_entry(path: &Path, stamp: (u64, u64)) -> Option<RgbImage> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() < 32 || &bytes[..8] != MAGIC {
        return None;
    }
    let u64_at = |k: usize| u64::from_le_bytes(bytes[k..k + 8].try_into().unwrap());
    let u32_at = |k: usize| u32::from_le_bytes(bytes[k..k + 4].try_into().unwrap());
    if (u64_at(8), u64_at(16)) != stamp {
        return None;
    }
    let (w, h) = (u32_at(24), u32_at(28));
    RgbImage::from_raw(w, h, bytes[32..].to_vec())
}

fn write_entry(path: &Path, stamp: (u64, u64), image: &RgbImage) -> std::io::Result<()> {
    // Write to a temporary name and rename, so a reader never sees half an entry.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(MAGIC)?;
    f.write_all(&stamp.0.to_le_bytes())?;
    f.write_all(&stamp.1.to_le_bytes())?;
    f.write_all(&image.width().to_le_bytes())?;
    f.write_all(&image.height().to_le_bytes())?;
    f.write_all(image.as_raw())?;
    drop(f);
    std::fs::rename(&tmp, path)
}
