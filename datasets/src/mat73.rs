//! A reader for MATLAB v7.3 MAT-files, which are HDF5 files laid out by MATLAB's conventions,
//! into the same [`MatValue`] tree the level-5 reader in [`crate::mat`] produces.
//!
//! MathWorks' "MAT-File Versions" page (`help/matlab/import_export/mat-file-versions.html`)
//! says what a v7.3 file is: HDF5-based, written by `save -v7.3`, the only version for
//! variables of 2 GB or more. HDF5 itself is read by the `hdf5-pure` crate; this module only
//! maps MATLAB's layout onto values. The conventions it relies on, as MATLAB writes them and
//! as matio and h5py-based readers read them:
//!
//! - The file starts with a 512-byte user block whose text starts "MATLAB 7.3 MAT-file"
//!   (with the level-5 header's version 0x0200 at byte 124); the HDF5 superblock follows at
//!   byte 512. A file without the user block is read too.
//! - Each variable is a dataset or a group at the root, named as the variable. Names starting
//!   with `#` are MATLAB's own (`#refs#`, the targets of references; `#subsystem#`, object
//!   data) and are not variables.
//! - Every variable, and every object a reference points to, has a `MATLAB_class` attribute,
//!   a fixed-length ASCII string: `double`, `single`, `int8` … `uint64`, `logical`, `char`,
//!   `cell`, `struct`, or another class (`function_handle`, `string`, a user class), which
//!   this reader refuses.
//! - Dimensions are stored reversed: MATLAB's column-major `m×n` array is an HDF5 dataset of
//!   shape `(n, m)`, whose row-major data is then MATLAB's column-major data unchanged. A
//!   scalar dataspace is `1×1`; a one-dimensional HDF5 shape `(n,)` is read as `n×1`.
//! - Numeric arrays hold their class's HDF5 type; complex ones are compound `{real, imag}`
//!   (refused). `logical` is `uint8` and becomes a `uint8` array, as the level-5 reader
//!   returns it. Sparse arrays are groups with a `MATLAB_sparse` attribute (refused).
//! - `char` arrays are `uint16` UTF-16 code units (`MATLAB_int_decode` = 2). A one-row char
//!   array is decoded as UTF-16, so a character outside the Basic Multilingual Plane (a
//!   surrogate pair) is one `char` and the row's length counts characters; in a char array of
//!   several rows the code units are decoded one by one. An unpaired surrogate becomes
//!   U+FFFD.
//! - A `cell` array is a dataset of object references, one per element in column-major
//!   order, each pointing to a dataset or group (usually in `#refs#`) that is the element.
//! - A scalar `struct` is a group with one child per field, each a variable of its own kind. A
//!   struct array is a group holding, per field, a dataset of object references, one per
//!   element, that has no `MATLAB_class` of its own; every field's dataset has the array's
//!   shape. The `MATLAB_fields` attribute (variable-length arrays of characters) gives the
//!   field order; without it the fields are taken in the group's link order.
//! - An empty array is a `uint64` dataset holding MATLAB's dimensions (in MATLAB's order),
//!   with the attribute `MATLAB_empty` = 1 and the array's `MATLAB_class`. The class
//!   `canonical empty` is MATLAB's `[]`, which MATLAB shares among empty struct fields.
//!
//! Variables come back sorted by name (HDF5 keeps no save order).
//!
//! A file from the internet must not crash or stall the reader. Nesting is bounded as in the
//! level-5 reader, a reference to an array that encloses it (a cycle) is an error, and what a
//! file may produce is bounded by its length: deflate, the only filter MATLAB applies, packs
//! at most 1032 bytes into one, so datasets that declare more than 1032 bytes of data per
//! byte of file are damage; and the walk follows no more references than the file has room
//! for (8 bytes each), which every file without arrays shared between arrays satisfies
//! (MATLAB shares only its canonical empty array, which holds no references). Each fault is
//! an error naming the file and the MATLAB expression of the value at fault, such as
//! `annotations(2).bbox_x1`.

use std::collections::HashMap;
use std::path::Path;

use hdf5_pure::{AttrValue, DType, Dataset, File, Group, Object};

use crate::error::DatasetError;
use crate::mat::{MAX_DEPTH, MatValue, NumericClass};

/// The 8-byte signature that starts an HDF5 superblock.
const HDF5_SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";

/// Deflate's largest compression ratio (a zlib stream of 1,032 output bytes per input byte,
/// in the limit). No well-formed file decodes to more bytes than this times its length.
const MAX_EXPANSION: u64 = 1032;

/// Headroom on top of the expansion bound, so that a file of a few bytes may still hold a
/// few small arrays.
const MIN_BUDGET: u64 = 1 << 16;

/// The most dimensions an array may have (HDF5's own limit).
const MAX_RANK: usize = 32;

/// The size of an object reference: one file address.
const REFERENCE_SIZE: u64 = 8;

/// Whether `bytes` is an HDF5 file: the signature at byte 0 or, after a user block, at 512,
/// 1024, 2048 … (where the HDF5 format allows the superblock to be).
pub(crate) fn is_hdf5(bytes: &[u8]) -> bool {
    let at = |offset: usize| bytes.get(offset..offset + 8) == Some(HDF5_SIGNATURE.as_slice());
    at(0) || std::iter::successors(Some(512usize), |o| o.checked_mul(2)).take_while(|&o| o < bytes.len()).any(at)
}

/// Reads every variable of a v7.3 MAT-file from its bytes; `path` is for messages.
pub(crate) fn read_bytes(bytes: &[u8], path: &Path) -> Result<Vec<(String, MatValue)>, DatasetError> {
    let file = File::from_bytes(bytes.to_vec())
        .map_err(|e| DatasetError::format(path, None, format!("MATLAB v7.3 (HDF5) file cannot be opened: {e}")))?;
    let budget = MAX_EXPANSION.saturating_mul(bytes.len() as u64).saturating_add(MIN_BUDGET);
    let references = bytes.len() as u64 / REFERENCE_SIZE;
    let mut reader = Reader { path, budget, limit: budget, references, open: Vec::new() };
    let root = file.root();
    let datasets = root.datasets().map_err(|e| reader.hdf5("the root group", "cannot list datasets", e))?;
    let groups = root.groups().map_err(|e| reader.hdf5("the root group", "cannot list groups", e))?;

    let mut names: Vec<(String, bool)> =
        datasets.into_iter().map(|n| (n, true)).chain(groups.into_iter().map(|n| (n, false))).collect();
    names.retain(|(name, _)| !name.starts_with('#'));
    names.sort();
    let mut vars = Vec::with_capacity(names.len());
    for (name, is_dataset) in names {
        let value = if is_dataset {
            let ds = root.dataset(&name).map_err(|e| reader.hdf5(&name, "cannot open the dataset", e))?;
            reader.dataset(&ds, &name, 0)?
        } else {
            let group = root.group(&name).map_err(|e| reader.hdf5(&name, "cannot open the group", e))?;
            reader.group(&group, &name, 0)?
        };
        vars.push((name, value));
    }
    Ok(vars)
}

/// The walk over one file's variables.
struct Reader<'a> {
    path: &'a Path,
    /// Bytes of data the file may still produce (see the module documentation).
    budget: u64,
    /// The budget at the start, for messages.
    limit: u64,
    /// References the walk may still follow: no more than the file has room for, so that
    /// arrays referenced from several places (a lattice of cells) cannot multiply the work.
    references: u64,
    /// File addresses of the references being followed, outermost first: a reference to one
    /// of them is a cycle.
    open: Vec<u64>,
}

/// The MATLAB attributes of a dataset or group that decide how it is read.
struct Attributes {
    class: Option<String>,
    empty: bool,
    sparse: bool,
    object: bool,
    fields: Option<Vec<String>>,
}

impl Reader<'_> {
    /// An error at the value `at` (a MATLAB expression such as `annotations(2).class`).
    fn fail(&self, at: &str, message: impl std::fmt::Display) -> DatasetError {
        DatasetError::format(self.path, None, format!("{at}: {message}"))
    }

    /// An error from the HDF5 layer while reading the value `at`.
    fn hdf5(&self, at: &str, what: &str, e: hdf5_pure::Error) -> DatasetError {
        self.fail(at, format!("{what}: {e}"))
    }

    /// Takes `bytes` from the budget, or fails: the file claims more data than it can hold.
    fn spend(&mut self, at: &str, bytes: u64) -> Result<(), DatasetError> {
        if bytes > self.budget {
            return Err(self.fail(
                at,
                format!(
                    "needs {bytes} more bytes of data, beyond the {} that a file of this length can hold \
                     (damaged sizes, or references that share or repeat arrays)",
                    self.limit
                ),
            ));
        }
        self.budget -= bytes;
        Ok(())
    }

    /// The MATLAB attributes of an object `depth` arrays deep, read by `read`; an error past
    /// the nesting bound, before anything is read.
    fn enter(
        &self,
        at: &str,
        depth: usize,
        read: impl FnOnce() -> Result<HashMap<String, AttrValue>, hdf5_pure::Error>,
    ) -> Result<Attributes, DatasetError> {
        if depth >= MAX_DEPTH {
            return Err(self.fail(at, format!("arrays nest more than {MAX_DEPTH} levels deep")));
        }
        let attrs = read().map_err(|e| self.hdf5(at, "cannot read the attributes", e))?;
        self.attributes(at, attrs)
    }

    fn attributes(&self, at: &str, attrs: HashMap<String, AttrValue>) -> Result<Attributes, DatasetError> {
        let class = match attrs.get("MATLAB_class") {
            None => None,
            Some(value) => Some(
                value
                    .as_str()
                    .map(|s| s.trim_end_matches('\0').to_string())
                    .ok_or_else(|| self.fail(at, format!("MATLAB_class is not a string: {value:?}")))?,
            ),
        };
        let flag = |name: &str| attrs.get(name).is_some_and(|v| v.as_i64().is_none_or(|n| n != 0));
        let fields = match attrs.get("MATLAB_fields") {
            None => None,
            Some(value) => Some(
                value
                    .as_strings()
                    .map(<[String]>::to_vec)
                    .ok_or_else(|| self.fail(at, "MATLAB_fields is not a list of field names"))?,
            ),
        };
        Ok(Attributes {
            class,
            empty: flag("MATLAB_empty"),
            sparse: attrs.contains_key("MATLAB_sparse"),
            object: attrs.contains_key("MATLAB_object_decode"),
            fields,
        })
    }

    /// The class, or an error for an object without one or of a class this reader refuses.
    fn class<'c>(&self, at: &str, attrs: &'c Attributes) -> Result<&'c str, DatasetError> {
        let class = attrs.class.as_deref().ok_or_else(|| {
            self.fail(
                at,
                "has no MATLAB_class attribute, so it is not a MATLAB variable (was the file saved by MATLAB?)",
            )
        })?;
        if attrs.sparse {
            return Err(self.fail(at, format!("{class} array is sparse, which is not supported")));
        }
        if attrs.object {
            return Err(self.fail(at, format!("is a MATLAB object of class '{class}', which is not supported")));
        }
        Ok(class)
    }

    /// Reads a dataset: a numeric, logical, char or cell array, or an empty array.
    fn dataset(&mut self, ds: &Dataset, at: &str, depth: usize) -> Result<MatValue, DatasetError> {
        let attrs = self.enter(at, depth, || ds.attrs())?;
        let class = self.class(at, &attrs)?.to_string();
        if attrs.empty {
            return self.empty(ds, at, &class, attrs.fields.unwrap_or_default());
        }
        let dtype = ds.dtype().map_err(|e| self.hdf5(at, "cannot read the datatype", e))?;
        let shape = ds.shape().map_err(|e| self.hdf5(at, "cannot read the dataspace", e))?;
        let (dims, count) = self.dims(at, &shape)?;
        match class.as_str() {
            "char" => self.chars(ds, at, &dtype, dims, count),
            "cell" => {
                let elements = self.references(ds, at, &dtype, count, depth, |i| format!("{at}{{{}}}", i + 1))?;
                Ok(MatValue::Cell { dims, elements })
            }
            "canonical empty" => {
                Ok(MatValue::Numeric { class: NumericClass::Double, dims: vec![0, 0], data: Vec::new() })
            }
            "struct" => Err(self.fail(at, "a struct stored as a dataset must be empty (MATLAB_empty), and is not")),
            other => self.numbers(ds, at, &dtype, other, dims, count),
        }
    }

    fn unsupported(&self, at: &str, class: &str) -> DatasetError {
        self.fail(
            at,
            format!(
                "MATLAB class '{class}' is not supported (only numeric, logical, char, cell and struct arrays are)"
            ),
        )
    }

    /// The MATLAB dimensions of an HDF5 shape and their element count.
    fn dims(&self, at: &str, shape: &[u64]) -> Result<(Vec<usize>, usize), DatasetError> {
        if shape.len() > MAX_RANK {
            return Err(self.fail(at, format!("has {} dimensions (HDF5 allows {MAX_RANK})", shape.len())));
        }
        let mut dims = Vec::with_capacity(shape.len().max(2));
        for &d in shape.iter().rev() {
            dims.push(usize::try_from(d).map_err(|_| self.fail(at, format!("dimension {d} does not fit in memory")))?);
        }
        dims.resize(dims.len().max(2), 1);
        let count = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        let count = count.ok_or_else(|| self.fail(at, format!("dimensions {dims:?} overflow")))?;
        Ok((dims, count))
    }

    /// Checks a dataset's declared size (and chunk size) against the budget before anything
    /// is read, so that no buffer is sized from an unchecked number.
    fn claim(&mut self, ds: &Dataset, at: &str, count: usize) -> Result<(), DatasetError> {
        let size = ds.element_size().map_err(|e| self.hdf5(at, "cannot read the element size", e))?;
        if let Some(chunk) = ds.chunk_shape().map_err(|e| self.hdf5(at, "cannot read the chunk shape", e))? {
            let chunk_bytes = chunk.iter().try_fold(size, |acc, &d| acc.checked_mul(d));
            if chunk_bytes.is_none_or(|b| b > self.limit) {
                return Err(self.fail(at, format!("chunks of {chunk:?} elements are larger than the file can hold")));
            }
        }
        self.spend(at, (count as u64).saturating_mul(size))
    }

    /// Reads a numeric or logical array of MATLAB class `name`, converting every storage type
    /// to `f64`.
    fn numbers(
        &mut self,
        ds: &Dataset,
        at: &str,
        dtype: &DType,
        name: &str,
        dims: Vec<usize>,
        count: usize,
    ) -> Result<MatValue, DatasetError> {
        let class = numeric_class(name).ok_or_else(|| self.unsupported(at, name))?;
        use DType::*;
        match dtype {
            F32 | F64 | I8 | I16 | I32 | I64 | U8 | U16 | U32 | U64 => {}
            Compound(_) => return Err(self.fail(at, format!("{name} array is complex, which is not supported"))),
            other => return Err(self.fail(at, format!("{name} array is stored as {other}, not as numbers"))),
        }
        self.claim(ds, at, count)?;
        let data = ds.read_f64().map_err(|e| self.hdf5(at, "cannot read the data", e))?;
        if data.len() != count {
            return Err(self.fail(at, format!("{name} array {dims:?} holds {} values", data.len())));
        }
        Ok(MatValue::Numeric { class, dims, data })
    }

    /// Reads a char array of UTF-16 code units.
    fn chars(
        &mut self,
        ds: &Dataset,
        at: &str,
        dtype: &DType,
        mut dims: Vec<usize>,
        count: usize,
    ) -> Result<MatValue, DatasetError> {
        if *dtype != DType::U16 {
            return Err(self.fail(at, format!("char array is stored as {dtype}, expected uint16 UTF-16 code units")));
        }
        self.claim(ds, at, count)?;
        let units = ds.read_u16().map_err(|e| self.hdf5(at, "cannot read the characters", e))?;
        if units.len() != count {
            return Err(self.fail(at, format!("char array {dims:?} holds {} code units", units.len())));
        }
        let replace = |c: Result<char, _>| c.unwrap_or(char::REPLACEMENT_CHARACTER);
        let chars: Vec<char> = if dims.len() == 2 && dims[0] == 1 {
            // One row of text: surrogate pairs are one character each.
            let chars: Vec<char> = char::decode_utf16(units).map(replace).collect();
            dims[1] = chars.len();
            chars
        } else {
            // Several rows interleave column-major: a pair's halves are not adjacent.
            units.into_iter().map(|u| replace(char::decode_utf16([u]).next().expect("one unit"))).collect()
        };
        Ok(MatValue::Char { dims, chars })
    }

    /// Reads an empty array: a dataset of its dimensions, marked `MATLAB_empty`.
    fn empty(&mut self, ds: &Dataset, at: &str, class: &str, fields: Vec<String>) -> Result<MatValue, DatasetError> {
        let dtype = ds.dtype().map_err(|e| self.hdf5(at, "cannot read the datatype", e))?;
        let shape = ds.shape().map_err(|e| self.hdf5(at, "cannot read the dataspace", e))?;
        let (_, count) = self.dims(at, &shape)?;
        if !matches!(dtype, DType::U8 | DType::U16 | DType::U32 | DType::U64) || count > MAX_RANK {
            return Err(self.fail(
                at,
                format!("empty {class} array should store its dimensions as unsigned integers, not {count} {dtype}"),
            ));
        }
        self.claim(ds, at, count)?;
        let stored = ds.read_u64().map_err(|e| self.hdf5(at, "cannot read the dimensions", e))?;
        let mut dims = Vec::with_capacity(stored.len().max(2));
        for d in stored {
            dims.push(usize::try_from(d).map_err(|_| self.fail(at, format!("dimension {d} does not fit in memory")))?);
        }
        dims.resize(dims.len().max(2), 1);
        if !dims.contains(&0) {
            return Err(self.fail(at, format!("is marked empty but its dimensions {dims:?} hold elements")));
        }
        Ok(match class {
            "char" => MatValue::Char { dims, chars: Vec::new() },
            "cell" => MatValue::Cell { dims, elements: Vec::new() },
            "struct" => MatValue::Struct { dims, fields, elements: Vec::new() },
            "canonical empty" => MatValue::Numeric { class: NumericClass::Double, dims, data: Vec::new() },
            other => {
                let class = numeric_class(other).ok_or_else(|| self.unsupported(at, other))?;
                MatValue::Numeric { class, dims, data: Vec::new() }
            }
        })
    }

    /// Follows a dataset of `count` object references and reads each target; `name(i)` is
    /// the MATLAB expression of element `i`, for messages.
    fn references(
        &mut self,
        ds: &Dataset,
        at: &str,
        dtype: &DType,
        count: usize,
        depth: usize,
        name: impl Fn(usize) -> String,
    ) -> Result<Vec<MatValue>, DatasetError> {
        if *dtype != DType::ObjectReference {
            return Err(self.fail(at, format!("should hold object references, but is stored as {dtype}")));
        }
        self.claim(ds, at, count)?;
        if count as u64 > self.references {
            return Err(self.fail(
                at,
                "leads to more arrays than the file holds references (arrays shared between cells \
                 or structs, or damaged sizes)",
            ));
        }
        self.references -= count as u64;
        let raw = ds.read_raw().map_err(|e| self.hdf5(at, "cannot read the references", e))?;
        if raw.len() as u64 != count as u64 * REFERENCE_SIZE {
            return Err(self.fail(at, format!("{} bytes of references for {count} elements", raw.len())));
        }
        let targets = ds.dereference().map_err(|e| self.hdf5(at, "a reference does not lead to an array", e))?;
        if targets.len() != count {
            return Err(self.fail(at, format!("{} references for {count} elements", targets.len())));
        }
        let mut values = Vec::with_capacity(count);
        for (i, (target, address)) in targets.iter().zip(raw.chunks_exact(8)).enumerate() {
            let address = u64::from_le_bytes(address.try_into().expect("8 bytes"));
            let at = name(i);
            if self.open.contains(&address) {
                return Err(self.fail(&at, "refers to an array that contains it (a reference cycle)"));
            }
            self.open.push(address);
            let value = match target {
                Object::Dataset(d) => self.dataset(d, &at, depth + 1),
                Object::Group(g) => self.group(g, &at, depth + 1),
                _ => Err(self.fail(&at, "refers to an object that is neither a dataset nor a group")),
            };
            self.open.pop();
            values.push(value?);
        }
        Ok(values)
    }

    /// Reads a group: a scalar struct or a struct array.
    fn group(&mut self, group: &Group, at: &str, depth: usize) -> Result<MatValue, DatasetError> {
        let attrs = self.enter(at, depth, || group.attrs())?;
        let class = self.class(at, &attrs)?;
        if class != "struct" {
            return Err(self.unsupported(at, class));
        }
        let (fields, kinds) = self.fields(group, at, attrs.fields)?;
        let per_element = kinds.iter().filter(|k| matches!(k, Field::Dataset(_, true))).count();
        if per_element == 0 {
            self.scalar_struct(at, fields, kinds, depth)
        } else if per_element == kinds.len() {
            self.struct_array(at, fields, kinds, depth)
        } else {
            Err(self.fail(
                at,
                "mixes fields stored per element (references without MATLAB_class) with fields stored \
                 as values; a struct is one or the other",
            ))
        }
    }

    /// A struct group's field names, in `MATLAB_fields` order when it is given, and their
    /// objects.
    fn fields(
        &self,
        group: &Group,
        at: &str,
        listed: Option<Vec<String>>,
    ) -> Result<(Vec<String>, Vec<Field>), DatasetError> {
        let datasets = group.datasets().map_err(|e| self.hdf5(at, "cannot list the fields", e))?;
        let groups = group.groups().map_err(|e| self.hdf5(at, "cannot list the fields", e))?;
        let fields = listed.unwrap_or_else(|| datasets.iter().chain(&groups).cloned().collect());
        let mut kinds = Vec::with_capacity(fields.len());
        for field in &fields {
            let field_at = format!("{at}.{field}");
            let kind = if datasets.contains(field) {
                let ds = group.dataset(field).map_err(|e| self.hdf5(&field_at, "cannot open", e))?;
                let per_element = self.is_per_element(&ds, &field_at)?;
                Field::Dataset(ds, per_element)
            } else if groups.contains(field) {
                Field::Group(group.group(field).map_err(|e| self.hdf5(&field_at, "cannot open", e))?)
            } else {
                return Err(self.fail(at, format!("field '{field}' is listed in MATLAB_fields but missing")));
            };
            kinds.push(kind);
        }
        Ok((fields, kinds))
    }

    /// Reads a scalar struct: each field is a value of its own.
    fn scalar_struct(
        &mut self,
        at: &str,
        fields: Vec<String>,
        kinds: Vec<Field>,
        depth: usize,
    ) -> Result<MatValue, DatasetError> {
        self.spend(at, REFERENCE_SIZE.saturating_mul(fields.len() as u64))?;
        let mut values = Vec::with_capacity(fields.len());
        for (field, kind) in fields.iter().zip(&kinds) {
            let at = format!("{at}.{field}");
            values.push(match kind {
                Field::Dataset(ds, _) => self.dataset(ds, &at, depth + 1)?,
                Field::Group(g) => self.group(g, &at, depth + 1)?,
            });
        }
        Ok(MatValue::Struct { dims: vec![1, 1], fields, elements: vec![values] })
    }

    /// Whether a struct's field dataset is a struct array's per-element references: object
    /// references with no `MATLAB_class` (a cell field of a scalar struct has one).
    fn is_per_element(&self, ds: &Dataset, at: &str) -> Result<bool, DatasetError> {
        let dtype = ds.dtype().map_err(|e| self.hdf5(at, "cannot read the datatype", e))?;
        if dtype != DType::ObjectReference {
            return Ok(false);
        }
        let attrs = ds.attrs().map_err(|e| self.hdf5(at, "cannot read the attributes", e))?;
        Ok(!attrs.contains_key("MATLAB_class"))
    }

    /// Reads a struct array from its fields' per-element reference datasets.
    fn struct_array(
        &mut self,
        at: &str,
        fields: Vec<String>,
        kinds: Vec<Field>,
        depth: usize,
    ) -> Result<MatValue, DatasetError> {
        let mut shape: Option<(Vec<u64>, &str)> = None;
        let mut columns = Vec::with_capacity(fields.len());
        for (field, kind) in fields.iter().zip(&kinds) {
            let Field::Dataset(ds, _) = kind else { unreachable!("struct arrays are checked to hold datasets") };
            let field_at = format!("{at}.{field}");
            let this = ds.shape().map_err(|e| self.hdf5(&field_at, "cannot read the dataspace", e))?;
            match &shape {
                None => shape = Some((this.clone(), field)),
                Some((first, name)) if *first != this => {
                    let count = |s: &[u64]| s.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
                    let (a, b) = (count(first).unwrap_or(u64::MAX), count(&this).unwrap_or(u64::MAX));
                    return Err(self.fail(
                        at,
                        format!(
                            "struct array fields differ in size: '{name}' holds {a} elements {first:?}, \
                             '{field}' holds {b} {this:?}"
                        ),
                    ));
                }
                Some(_) => {}
            }
            let (_, count) = self.dims(&field_at, &this)?;
            let dtype = DType::ObjectReference;
            let column =
                self.references(ds, &field_at, &dtype, count, depth, |i| format!("{at}({}).{field}", i + 1))?;
            columns.push(column);
        }
        let (shape, _) = shape.expect("a struct array has at least one field");
        let (dims, count) = self.dims(at, &shape)?;
        let mut elements: Vec<Vec<MatValue>> = (0..count).map(|_| Vec::with_capacity(fields.len())).collect();
        for column in columns {
            for (element, value) in elements.iter_mut().zip(column) {
                element.push(value);
            }
        }
        Ok(MatValue::Struct { dims, fields, elements })
    }
}

/// A struct field's HDF5 object; for a dataset, whether it is a struct array's per-element
/// references.
enum Field {
    Dataset(Dataset, bool),
    Group(Group),
}

/// The numeric class of a `MATLAB_class` name; `logical` is read as `uint8`, as the level-5
/// reader reads it.
fn numeric_class(name: &str) -> Option<NumericClass> {
    use NumericClass::*;
    Some(match name {
        "double" => Double,
        "single" => Single,
        "int8" => Int8,
        "uint8" | "logical" => UInt8,
        "int16" => Int16,
        "uint16" => UInt16,
        "int32" => Int32,
        "uint32" => UInt32,
        "int64" => Int64,
        "uint64" => UInt64,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_found_at_the_offsets_hdf5_allows() {
        let mut bytes = vec![0u8; 4096];
        assert!(!is_hdf5(&bytes));
        bytes[1024..1032].copy_from_slice(HDF5_SIGNATURE);
        assert!(is_hdf5(&bytes));
        let mut odd = vec![0u8; 4096];
        odd[700..708].copy_from_slice(HDF5_SIGNATURE);
        assert!(!is_hdf5(&odd));
        assert!(is_hdf5(HDF5_SIGNATURE));
        assert!(!is_hdf5(&HDF5_SIGNATURE[..7]));
    }

    #[test]
    fn every_class_name_maps_to_a_numeric_class() {
        for name in ["double", "single", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"] {
            let class = numeric_class(name).unwrap();
            assert_eq!(format!("{class:?}").to_lowercase(), name);
        }
        assert_eq!(numeric_class("logical"), Some(NumericClass::UInt8));
        assert_eq!(numeric_class("function_handle"), None);
    }
}
