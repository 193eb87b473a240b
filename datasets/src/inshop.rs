//! DeepFashion In-Shop Clothes Retrieval: `list_eval_partition.txt`.
//!
//! The file is a count line, the header `image_name item_id evaluation_status`, then one
//! line per image: `img/WOMEN/Dresses/id_00000002/02_1_front.jpg id_00000002 train`,
//! status `train`, `query` or `gallery`. Training items and evaluation items are disjoint;
//! query and gallery share one label space (the 3,985 evaluation items) so that a query's
//! label equals its gallery matches' labels.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::error::DatasetError;
use crate::format::Split;
use crate::paths::RootGuard;
use crate::split::{ClassInfo, RawItem, SplitIndex, build_split};
use crate::text::TextFile;

/// The annotation file name.
pub const PARTITION: &str = "list_eval_partition.txt";

const HEADER: [&str; 3] = ["image_name", "item_id", "evaluation_status"];

/// Reads the three splits of an In-Shop-format dataset at `root`.
pub(crate) fn load(root: &Path) -> Result<Vec<SplitIndex>, DatasetError> {
    let mut guard = RootGuard::new(root)?;
    let file = TextFile::read(root, PARTITION)?;
    let mut lines = file.lines();
    let count_line = lines.next().ok_or_else(|| DatasetError::format(&file.path, None, "file is empty"))?;
    let declared = count_line.fields(1, "number of images")?[0];
    let declared = count_line.int(declared, "image count")?;
    let header = lines.next().ok_or_else(|| count_line.error("no header line after the count"))?;
    if header.text.split_whitespace().ne(HEADER) {
        return Err(header.error(format!(
            "expected the header '{}', found '{}'",
            HEADER.join(" "),
            header.text.trim()
        )));
    }

    let mut by_split: BTreeMap<Split, Vec<RawItem>> = BTreeMap::new();
    let mut item_names: HashMap<i64, String> = HashMap::new();
    // Item → (split group, line) where first seen: train items must not be evaluated.
    let mut item_group: HashMap<i64, (bool, usize)> = HashMap::new();
    let mut images: HashMap<String, usize> = HashMap::new();
    let mut rows = 0i64;
    for line in lines {
        rows += 1;
        let f = line.fields(3, "image_name item_id evaluation_status")?;
        let split = match f[2] {
            "train" => Split::Train,
            "query" => Split::Query,
            "gallery" => Split::Gallery,
            other => return Err(line.error(format!("status '{other}' is not train, query or gallery"))),
        };
        let item = f[1]
            .strip_prefix("id_")
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<i64>().ok())
            .ok_or_else(|| line.error(format!("item id '{}' is not of the form id_<digits>", f[1])))?;
        if let Some(first) = images.insert(f[0].to_string(), line.number) {
            return Err(line.error(format!("duplicate image '{}' (first on line {first})", f[0])));
        }
        let train = split == Split::Train;
        match item_group.get(&item) {
            Some(&(was_train, first)) if was_train != train => {
                return Err(line.error(format!(
                    "item {} is used for both training and evaluation (see line {first}); the splits must be disjoint",
                    f[1]
                )));
            }
            Some(_) => {}
            None => {
                item_group.insert(item, (train, line.number));
            }
        }
        item_names.entry(item).or_insert_with(|| f[1].to_string());
        let path = guard.check(f[0], &file.path, Some(line.number))?;
        by_split.entry(split).or_default().push(RawItem { path, class_id: item, bbox: None, line: Some(line.number) });
    }
    if rows != declared {
        return Err(count_line.error(format!("the first line says {declared} images but {rows} are listed")));
    }

    let classes_of = |ids: &mut dyn Iterator<Item = i64>| -> Vec<ClassInfo> {
        let mut ids: Vec<i64> = ids.collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter().map(|id| ClassInfo { id, name: item_names[&id].clone() }).collect()
    };
    let mut take = |s| by_split.remove(&s).unwrap_or_default();
    let (train, query, gallery) = (take(Split::Train), take(Split::Query), take(Split::Gallery));
    let train_classes = classes_of(&mut train.iter().map(|r| r.class_id));
    let eval_classes = classes_of(&mut query.iter().chain(&gallery).map(|r| r.class_id));
    Ok(vec![
        build_split(Split::Train, root, &file.path, train, train_classes),
        build_split(Split::Query, root, &file.path, query, eval_classes.clone()),
        build_split(Split::Gallery, root, &file.path, gallery, eval_classes),
    ])
}
