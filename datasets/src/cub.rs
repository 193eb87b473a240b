//! CUB-200-2011: `images.txt`, `image_class_labels.txt`, `classes.txt`, `images/` and,
//! when present, `bounding_boxes.txt`.
//!
//! Every file is `<id> <value...>` with ids from 1. The DML split is class-disjoint: the
//! first half of the class ids (1–100 of 200) is train, the rest test.
//! `train_test_split.txt` is the classification split and is not read.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::error::DatasetError;
use crate::format::Split;
use crate::paths::RootGuard;
use crate::split::{BBox, RawItem, SplitIndex, build_split, used_classes};
use crate::text::TextFile;

/// Reads the two splits of a CUB-format dataset at `root`.
pub(crate) fn load(root: &Path) -> Result<Vec<SplitIndex>, DatasetError> {
    let mut guard = RootGuard::new(root)?;

    // classes.txt: `<class_id> <name>`; ids must be exactly 1..=C so that "first half"
    // means the same thing as in the literature.
    let classes_file = TextFile::read(root, "classes.txt")?;
    // Gathered by id rather than placed in a table indexed by id: an id is text from the
    // file, and a table sized by it could be as large as the id.
    let mut by_id: BTreeMap<i64, String> = BTreeMap::new();
    for line in classes_file.lines() {
        let (id, name) = line.id_and_rest("class_id name")?;
        if id < 1 {
            return Err(line.error(format!("class id {id} must be at least 1")));
        }
        if by_id.insert(id, name.to_string()).is_some() {
            return Err(line.error(format!("duplicate class id {id}")));
        }
    }
    let last = by_id.keys().next_back().copied().unwrap_or(0);
    if let Some(gap) = (1..).zip(by_id.keys()).find_map(|(want, &have)| (want != have).then_some(want)) {
        return Err(DatasetError::format(
            &classes_file.path,
            None,
            format!("class id {gap} is missing; class ids must run from 1 to {last}"),
        ));
    }
    let class_names: Vec<String> = by_id.into_values().collect();
    if class_names.is_empty() {
        return Err(DatasetError::format(&classes_file.path, None, "no classes"));
    }
    let num_classes = class_names.len() as i64;

    // images.txt: `<image_id> <path under images/>`.
    let images_file = TextFile::read(root, "images.txt")?;
    let mut images: Vec<(i64, std::path::PathBuf, usize)> = Vec::new();
    let mut position: HashMap<i64, usize> = HashMap::new();
    for line in images_file.lines() {
        let (id, rel) = line.id_and_rest("image_id path")?;
        if id < 1 {
            return Err(line.error(format!("image id {id} must be at least 1")));
        }
        if let Some(&first) = position.get(&id) {
            return Err(line.error(format!("duplicate image id {id} (first on line {})", images[first].2)));
        }
        let path = guard.check_in(Path::new("images"), rel, &images_file.path, Some(line.number))?;
        position.insert(id, images.len());
        images.push((id, path, line.number));
    }

    // image_class_labels.txt: `<image_id> <class_id>`.
    let labels_file = TextFile::read(root, "image_class_labels.txt")?;
    let mut labels: Vec<Option<i64>> = vec![None; images.len()];
    for line in labels_file.lines() {
        let f = line.fields(2, "image_id class_id")?;
        let id = line.id(f[0], "image id")?;
        let class = line.int(f[1], "class id")?;
        let &at = position.get(&id).ok_or_else(|| line.error(format!("image id {id} is not listed in images.txt")))?;
        if labels[at].is_some() {
            return Err(line.error(format!("duplicate label for image id {id}")));
        }
        if !(1..=num_classes).contains(&class) {
            return Err(line.error(format!("class id {class} is out of range: classes.txt defines 1 to {num_classes}")));
        }
        labels[at] = Some(class);
    }
    if let Some(at) = labels.iter().position(Option::is_none) {
        return Err(DatasetError::at_line(
            &images_file.path,
            images[at].2,
            format!("image id {} has no label in image_class_labels.txt", images[at].0),
        ));
    }

    // bounding_boxes.txt (optional): `<image_id> <x> <y> <width> <height>`.
    let mut boxes: Vec<Option<BBox>> = vec![None; images.len()];
    if root.join("bounding_boxes.txt").exists() {
        let boxes_file = TextFile::read(root, "bounding_boxes.txt")?;
        for line in boxes_file.lines() {
            let f = line.fields(5, "image_id x y width height")?;
            let id = line.id(f[0], "image id")?;
            let &at =
                position.get(&id).ok_or_else(|| line.error(format!("image id {id} is not listed in images.txt")))?;
            if boxes[at].is_some() {
                return Err(line.error(format!("duplicate bounding box for image id {id}")));
            }
            let [x, y, w, h] = [1, 2, 3, 4].map(|k| line.number(f[k], "box coordinate"));
            let (x, y, w, h) = (x?, y?, w?, h?);
            if w < 0.0 || h < 0.0 {
                return Err(line.error(format!("negative box size {w}×{h}")));
            }
            boxes[at] = Some(BBox { x1: x, y1: y, x2: x + w, y2: y + h });
        }
    }

    // Labels cover the classes that have images, so a split's label space never has
    // empty classes; on the official files every class has images.
    let train_last = num_classes / 2;
    let name = |id: i64| class_names[id as usize - 1].clone();
    let mut train = Vec::new();
    let mut test = Vec::new();
    for (((_, path, line), label), bbox) in images.into_iter().zip(labels).zip(boxes) {
        let class_id = label.expect("checked above");
        let raw = RawItem { path, class_id, bbox, line: Some(line) };
        if class_id <= train_last { train.push(raw) } else { test.push(raw) }
    }
    let (train_classes, test_classes) = (used_classes(&train, name), used_classes(&test, name));
    Ok(vec![
        build_split(Split::Train, root, &images_file.path, train, train_classes),
        build_split(Split::Test, root, &images_file.path, test, test_classes),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A huge class id is a missing-id error, not a table of billions of entries.
    #[test]
    fn a_huge_class_id_is_an_error_not_an_allocation() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("classes.txt"), "1 a\n4294967295 b\n").unwrap();
        let message = load(dir.path()).unwrap_err().to_string();
        let expected = "classes.txt: class id 2 is missing; class ids must run from 1 to 4294967295";
        assert!(message.contains(expected), "{message}");
    }
}
