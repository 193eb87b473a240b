//! Stanford Online Products: `Ebay_train.txt` and `Ebay_test.txt`.
//!
//! Each file starts with the header `image_id class_id super_class_id path`; each line
//! after it lists one image, its path relative to the root (`bicycle_final/…_0.JPG`). The
//! two files already form the class-disjoint DML split (classes 1–11,318 train,
//! 11,319–22,634 test); a class in both is an error.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::error::DatasetError;
use crate::format::Split;
use crate::paths::RootGuard;
use crate::split::{RawItem, SplitIndex, build_split, used_classes};
use crate::text::TextFile;

const HEADER: [&str; 4] = ["image_id", "class_id", "super_class_id", "path"];

/// Reads the two splits of an SOP-format dataset at `root`.
pub(crate) fn load(root: &Path) -> Result<Vec<SplitIndex>, DatasetError> {
    let mut guard = RootGuard::new(root)?;
    let mut splits = Vec::new();
    let mut seen_classes: HashMap<i64, (std::path::PathBuf, usize)> = HashMap::new();
    for (split, name) in [(Split::Train, "Ebay_train.txt"), (Split::Test, "Ebay_test.txt")] {
        let file = TextFile::read(root, name)?;
        let mut lines = file.lines();
        let header = lines.next().ok_or_else(|| DatasetError::format(&file.path, None, "file is empty"))?;
        if header.text.split_whitespace().ne(HEADER) {
            return Err(header.error(format!(
                "expected the header '{}', found '{}'",
                HEADER.join(" "),
                header.text.trim()
            )));
        }
        let mut raw = Vec::new();
        let mut ids: HashMap<i64, usize> = HashMap::new();
        // A class's name is its super-class folder and id, e.g. `bicycle_final/3`.
        let mut names: HashMap<i64, String> = HashMap::new();
        let mut classes_here = HashSet::new();
        for line in lines {
            let f = line.fields(4, "image_id class_id super_class_id path")?;
            let id = line.id(f[0], "image id")?;
            let class = line.id(f[1], "class id")?;
            line.id(f[2], "super class id")?;
            if let Some(first) = ids.insert(id, line.number) {
                return Err(line.error(format!("duplicate image id {id} (first on line {first})")));
            }
            if classes_here.insert(class)
                && let Some((other, at)) = seen_classes.get(&class)
            {
                return Err(line.error(format!(
                    "class {class} is also in {}:{at}; the train and test classes must be disjoint",
                    other.display()
                )));
            }
            let path = guard.check(f[3], &file.path, Some(line.number))?;
            let folder = path.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned());
            names.entry(class).or_insert_with(|| format!("{}/{class}", folder.unwrap_or_default()));
            raw.push(RawItem { path, class_id: class, bbox: None, line: Some(line.number) });
        }
        for r in &raw {
            seen_classes.entry(r.class_id).or_insert((file.path.clone(), r.line.unwrap_or(0)));
        }
        let classes = used_classes(&raw, |id| names[&id].clone());
        splits.push(build_split(split, root, &file.path, raw, classes));
    }
    Ok(splits)
}
