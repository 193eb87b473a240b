//! Image folders: `root/<class>/<image>`, one directory per class.
//!
//! Classes are the sub-directories of the root in byte order of their names (hidden ones,
//! starting with `.`, are skipped); images are the `.jpg`, `.jpeg` and `.png` files in
//! them (any case), in name order; other files are ignored. A class's id is its 1-based
//! position.
//!
//! Without a split file, the split is class-disjoint like the benchmarks': the first half
//! of the classes (rounded down) is train, the rest test. A split file `split.txt` in the
//! root assigns classes or single images instead, one per line:
//!
//! ```text
//! # split  class or class/image
//! train    cat
//! train    dog
//! test     fox
//! test     owl/0003.jpg
//! ```
//!
//! Images that the split file does not mention are left out; naming an image twice, or a
//! class or image that does not exist, is an error on that line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::DatasetError;
use crate::format::Split;
use crate::paths::RootGuard;
use crate::split::{ClassInfo, RawItem, SplitIndex, build_split};
use crate::text::TextFile;

/// The optional split file name.
pub const SPLIT_FILE: &str = "split.txt";

/// Whether a file name has an image extension the pipeline decodes.
pub fn is_image_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".jpg") || lower.ends_with(".jpeg") || lower.ends_with(".png")
}

fn sorted_entries(dir: &Path) -> Result<Vec<(String, std::fs::FileType)>, DatasetError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DatasetError::io(dir, e))? {
        let entry = entry.map_err(|e| DatasetError::io(dir, e))?;
        let name = entry
            .file_name()
            .to_str()
            .map(str::to_string)
            .ok_or_else(|| DatasetError::format(&entry.path(), None, "file name is not valid UTF-8"))?;
        if name.starts_with('.') {
            continue;
        }
        // Follow symlinks for the type; RootGuard then checks where they lead.
        let ty = std::fs::metadata(entry.path()).map_err(|e| DatasetError::io(&entry.path(), e))?.file_type();
        out.push((name, ty));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Reads the two splits of an image folder at `root`.
pub(crate) fn load(root: &Path) -> Result<Vec<SplitIndex>, DatasetError> {
    let mut guard = RootGuard::new(root)?;
    // Class name → (id, images).
    let mut classes: BTreeMap<String, (i64, Vec<PathBuf>)> = BTreeMap::new();
    let mut next_id = 1;
    for (name, ty) in sorted_entries(root)? {
        if !ty.is_dir() {
            continue;
        }
        guard.check(&name, root, None)?;
        let mut images = Vec::new();
        for (file, ty) in sorted_entries(&root.join(&name))? {
            if ty.is_file() && is_image_name(&file) {
                images.push(guard.check(&format!("{name}/{file}"), &root.join(&name), None)?);
            }
        }
        classes.insert(name, (next_id, images));
        next_id += 1;
    }
    if classes.is_empty() {
        return Err(DatasetError::format(root, None, "no class directories (expected root/<class>/<image>)"));
    }
    let info = |name: &str| ClassInfo { id: classes[name].0, name: name.to_string() };

    let split_path = root.join(SPLIT_FILE);
    let (assignments, annotation) = if split_path.is_file() {
        (read_split_file(&split_path, &classes, &mut guard)?, split_path)
    } else {
        let half = classes.len() / 2;
        let mut assigned = Vec::new();
        for (k, (_, (id, images))) in classes.iter().enumerate() {
            let split = if k < half { Split::Train } else { Split::Test };
            for path in images {
                assigned.push((split, RawItem { path: path.clone(), class_id: *id, bbox: None, line: None }));
            }
        }
        (assigned, root.to_path_buf())
    };

    let names_by_id: BTreeMap<i64, &str> = classes.iter().map(|(n, (id, _))| (*id, n.as_str())).collect();
    let mut out = Vec::new();
    for split in [Split::Train, Split::Test] {
        let raw: Vec<RawItem> = assignments.iter().filter(|(s, _)| *s == split).map(|(_, r)| r.clone()).collect();
        let mut ids: Vec<i64> = raw.iter().map(|r| r.class_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let class_list = ids.into_iter().map(|id| info(names_by_id[&id])).collect();
        out.push(build_split(split, root, &annotation, raw, class_list));
    }
    Ok(out)
}

/// Reads `split.txt`: `<train|test> <class>` or `<train|test> <class>/<image>`.
fn read_split_file(
    path: &Path,
    classes: &BTreeMap<String, (i64, Vec<PathBuf>)>,
    guard: &mut RootGuard,
) -> Result<Vec<(Split, RawItem)>, DatasetError> {
    let file = TextFile::read_path(path)?;
    let mut assigned: Vec<(Split, RawItem)> = Vec::new();
    let mut seen: BTreeMap<PathBuf, usize> = BTreeMap::new();
    for line in file.lines() {
        if line.text.trim_start().starts_with('#') {
            continue;
        }
        let (split, target) = line
            .text
            .trim()
            .split_once(char::is_whitespace)
            .ok_or_else(|| line.error("expected '<train|test> <class or class/image>'"))?;
        let split = match split {
            "train" => Split::Train,
            "test" => Split::Test,
            other => return Err(line.error(format!("split '{other}' is not train or test"))),
        };
        let target = guard.check(target.trim(), &file.path, Some(line.number))?;
        let mut parts = target.components().map(|c| c.as_os_str().to_string_lossy().into_owned());
        let class = parts.next().unwrap_or_default();
        let (id, images) = classes
            .get(&class)
            .ok_or_else(|| line.error(format!("class '{class}' is not a directory of the dataset root")))?;
        let chosen: Vec<PathBuf> = if parts.next().is_none() {
            images.clone()
        } else {
            if !images.contains(&target) {
                return Err(line.error(format!("image '{}' is not in the dataset", target.display())));
            }
            vec![target]
        };
        for image in chosen {
            if let Some(first) = seen.insert(image.clone(), line.number) {
                return Err(line.error(format!("image '{}' is already assigned on line {first}", image.display())));
            }
            assigned.push((split, RawItem { path: image, class_id: *id, bbox: None, line: Some(line.number) }));
        }
    }
    Ok(assigned)
}
