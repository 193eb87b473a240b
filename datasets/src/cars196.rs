//! Cars196 (Stanford Cars): `cars_annos.mat` and `car_ims/`.
//!
//! `cars_annos.mat` is a MATLAB file, level 5 as published or v7.3 (HDF5) if it was re-saved
//! with `save -v7.3`; both read into the same values. It holds a 1×16,185 struct array
//! `annotations` (fields `relative_im_path`, `bbox_x1`, `bbox_y1`, `bbox_x2`, `bbox_y2`,
//! `class`, `test`) and a cell array `class_names`. The DML split is class-disjoint: classes
//! 1–98 (the first half) are train, 99–196 test; the `test` field is the classification
//! split and is ignored.

use std::path::Path;

use crate::error::DatasetError;
use crate::format::Split;
use crate::mat::{self, MatValue};
use crate::paths::RootGuard;
use crate::split::{BBox, RawItem, SplitIndex, build_split, used_classes};

/// The annotation file name.
pub const ANNOTATIONS: &str = "cars_annos.mat";

const REQUIRED: [&str; 6] = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class"];

/// Reads the two splits of a Cars196-format dataset at `root`.
pub(crate) fn load(root: &Path) -> Result<Vec<SplitIndex>, DatasetError> {
    let path = root.join(ANNOTATIONS);
    let vars = mat::read(&path)?;
    let err = |message: String| DatasetError::format(&path, None, message);
    let names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    let annotations = vars
        .iter()
        .find(|(n, _)| n == "annotations")
        .map(|(_, v)| v)
        .ok_or_else(|| err(format!("no variable 'annotations' (variables found: {})", names.join(", "))))?;
    let fields = annotations
        .field_names()
        .ok_or_else(|| err(format!("'annotations' is a {}, expected a struct array", annotations.describe())))?;
    for required in REQUIRED {
        if !fields.iter().any(|f| f == required) {
            return Err(err(format!(
                "'annotations' has no field '{required}' (fields: {}); expected {}",
                fields.join(", "),
                REQUIRED.join(", ")
            )));
        }
    }

    // class_names (a cell array of strings) is optional: it only provides names.
    let class_names: Option<Vec<String>> = vars.iter().find(|(n, _)| n == "class_names").and_then(|(_, v)| match v {
        MatValue::Cell { elements, .. } => elements.iter().map(MatValue::as_string).collect(),
        _ => None,
    });

    let mut guard = RootGuard::new(root)?;
    let mut raw = Vec::with_capacity(annotations.len());
    for i in 0..annotations.len() {
        let at = |f: &str, why: String| err(format!("annotations({}).{f}: {why}", i + 1));
        let number = |f: &str| -> Result<f64, DatasetError> {
            let v = annotations.field(i, f).expect("field checked above");
            v.as_scalar().ok_or_else(|| at(f, format!("expected a number, found {}", v.describe())))
        };
        let text = annotations.field(i, "relative_im_path").expect("field checked above");
        let rel = text
            .as_string()
            .ok_or_else(|| at("relative_im_path", format!("expected a string, found {}", text.describe())))?;
        let class = number("class")?;
        if class.fract() != 0.0 || class < 1.0 {
            return Err(at("class", format!("class {class} is not a positive integer")));
        }
        if let Some(names) = &class_names
            && class as usize > names.len()
        {
            return Err(at("class", format!("class {class} is out of range: class_names has {} classes", names.len())));
        }
        let [x1, y1, x2, y2] = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"].map(number);
        let bbox = BBox { x1: x1? as f32, y1: y1? as f32, x2: x2? as f32, y2: y2? as f32 };
        let path = guard.check(&rel, &path, None).map_err(|e| at("relative_im_path", e.message()))?;
        raw.push(RawItem { path, class_id: class as i64, bbox: Some(bbox), line: None });
    }
    if raw.is_empty() {
        return Err(err("'annotations' is empty".into()));
    }

    let num_classes = match &class_names {
        Some(names) => names.len() as i64,
        None => raw.iter().map(|r| r.class_id).max().unwrap_or(0),
    };
    let train_last = num_classes / 2;
    let name = |id: i64| match &class_names {
        Some(names) => names[id as usize - 1].clone(),
        None => format!("class {id}"),
    };
    let (train, test): (Vec<RawItem>, Vec<RawItem>) = raw.into_iter().partition(|r| r.class_id <= train_last);
    let (train_classes, test_classes) = (used_classes(&train, name), used_classes(&test, name));
    Ok(vec![
        build_split(Split::Train, root, &path, train, train_classes),
        build_split(Split::Test, root, &path, test, test_classes),
    ])
}
