//! A reader and writer for the subset of MATLAB MAT-files that dataset annotations use:
//! numeric arrays (any storage type), char arrays, cell arrays and struct arrays. Level-5
//! files (MATLAB's `-v6` and `-v7`, each variable possibly zlib-compressed, `miCOMPRESSED`)
//! are read here; v7.3 files, which are HDF5, are read into the same [`MatValue`] tree by the
//! `mat73` module, and [`read`] tells the two apart by their first bytes. The writer writes
//! level 5.
//!
//! Cars196's `cars_annos.mat` is a struct array of chars and numbers, and this module reads
//! level-5 files itself rather than with a crate. `matrw` 0.1.4, the pure-Rust reader of
//! level-5 structs and cells, was tried on the same files: it refuses the level-5 files SciPy
//! writes (their header text lacks the comma it expects), among them this crate's Cars196
//! test fixtures; it panics on truncated files, corrupt zlib streams and 16-bit char data,
//! accepts some truncated files silently (dropping variables), and takes time exponential in
//! the nesting depth of cell arrays. Here every length is checked against the bytes that
//! remain, nesting is bounded, and each fault is an error naming the file and byte offset.
//!
//! The layout is MathWorks' "MAT-File Format" document: a 128-byte header, then data
//! elements, each an 8-byte tag (type, byte count) or a 4-byte "small data element" tag
//! holding up to 4 bytes inline, padded to 8 bytes.
//!
//! MATLAB stores a `double` array whose values are small integers with a narrower storage
//! type (say `miUINT8`); the reader converts every storage type to `f64` whatever the
//! array's class.
//!
//! ```
//! use dmlbench_datasets::mat::{self, MatValue};
//! let value = MatValue::structure(
//!     vec!["name".into(), "class".into()],
//!     vec![vec![MatValue::string("car_ims/000001.jpg"), MatValue::scalar(3.0)]],
//! );
//! let bytes = mat::write_bytes(&[("annotations", value)], true);
//! let vars = mat::read_bytes(&bytes, std::path::Path::new("x.mat")).unwrap();
//! let a = &vars[0].1;
//! assert_eq!(a.field(0, "name").unwrap().as_string().unwrap(), "car_ims/000001.jpg");
//! assert_eq!(a.field(0, "class").unwrap().as_scalar(), Some(3.0));
//! ```

use std::io::{Read, Write};
use std::path::Path;

use flate2::Compression;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;

use crate::error::DatasetError;
use crate::mat73;

// Data types (MAT-File Format, table 1-1).
const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;
const MI_UTF16: u32 = 17;
const MI_UTF32: u32 = 18;

// Array classes (table 1-3).
const MX_CELL: u8 = 1;
const MX_STRUCT: u8 = 2;
const MX_OBJECT: u8 = 3;
const MX_CHAR: u8 = 4;
const MX_SPARSE: u8 = 5;

/// How deeply arrays may nest (cells in cells, structs in fields). Annotation files nest two
/// or three levels (a struct array of char arrays, a cell array of strings); the reader
/// recurses once per level, so a bound keeps a crafted file from exhausting the stack.
pub(crate) const MAX_DEPTH: usize = 64;

/// The most elements of a struct array without fields. Such an array stores nothing per
/// element, so its size is not bounded by the file's length; beyond this it is damage.
const MAX_FIELDLESS_STRUCT: usize = 1 << 20;

/// The class of a numeric array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumericClass {
    /// `double`.
    Double,
    /// `single`.
    Single,
    /// `int8`.
    Int8,
    /// `uint8`.
    UInt8,
    /// `int16`.
    Int16,
    /// `uint16`.
    UInt16,
    /// `int32`.
    Int32,
    /// `uint32`.
    UInt32,
    /// `int64`.
    Int64,
    /// `uint64`.
    UInt64,
}

impl NumericClass {
    fn from_code(code: u8) -> Option<Self> {
        use NumericClass::*;
        Some(match code {
            6 => Double,
            7 => Single,
            8 => Int8,
            9 => UInt8,
            10 => Int16,
            11 => UInt16,
            12 => Int32,
            13 => UInt32,
            14 => Int64,
            15 => UInt64,
            _ => return None,
        })
    }

    fn code(self) -> u8 {
        use NumericClass::*;
        match self {
            Double => 6,
            Single => 7,
            Int8 => 8,
            UInt8 => 9,
            Int16 => 10,
            UInt16 => 11,
            Int32 => 12,
            UInt32 => 13,
            Int64 => 14,
            UInt64 => 15,
        }
    }
}

/// A MATLAB value of the supported subset. Multi-element arrays are column-major, as in
/// MATLAB.
#[derive(Debug, Clone, PartialEq)]
pub enum MatValue {
    /// A numeric (or logical) array; values converted to `f64`.
    Numeric {
        /// Class of the array.
        class: NumericClass,
        /// Dimensions.
        dims: Vec<usize>,
        /// Values, column-major.
        data: Vec<f64>,
    },
    /// A char array.
    Char {
        /// Dimensions.
        dims: Vec<usize>,
        /// Characters, column-major.
        chars: Vec<char>,
    },
    /// A cell array.
    Cell {
        /// Dimensions.
        dims: Vec<usize>,
        /// Elements, column-major.
        elements: Vec<MatValue>,
    },
    /// A struct array.
    Struct {
        /// Dimensions.
        dims: Vec<usize>,
        /// Field names.
        fields: Vec<String>,
        /// `elements[i][f]` is field `fields[f]` of element `i` (column-major).
        elements: Vec<Vec<MatValue>>,
    },
}

impl MatValue {
    /// A 1×1 `double`.
    pub fn scalar(value: f64) -> Self {
        MatValue::Numeric { class: NumericClass::Double, dims: vec![1, 1], data: vec![value] }
    }

    /// A 1×1 numeric value of the given class.
    pub fn scalar_of(class: NumericClass, value: f64) -> Self {
        MatValue::Numeric { class, dims: vec![1, 1], data: vec![value] }
    }

    /// A 1×n char array.
    pub fn string(text: &str) -> Self {
        let chars: Vec<char> = text.chars().collect();
        MatValue::Char { dims: vec![1, chars.len()], chars }
    }

    /// A 1×n cell array.
    pub fn cell_row(elements: Vec<MatValue>) -> Self {
        MatValue::Cell { dims: vec![1, elements.len()], elements }
    }

    /// A 1×n struct array.
    pub fn structure(fields: Vec<String>, elements: Vec<Vec<MatValue>>) -> Self {
        MatValue::Struct { dims: vec![1, elements.len()], fields, elements }
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        match self {
            MatValue::Numeric { dims, .. }
            | MatValue::Char { dims, .. }
            | MatValue::Cell { dims, .. }
            | MatValue::Struct { dims, .. } => dims,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.dims().iter().product()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A short description for messages: `1x16185 struct`.
    pub fn describe(&self) -> String {
        let dims: Vec<String> = self.dims().iter().map(|d| d.to_string()).collect();
        let kind = match self {
            MatValue::Numeric { class, .. } => format!("{class:?}").to_lowercase(),
            MatValue::Char { .. } => "char".into(),
            MatValue::Cell { .. } => "cell".into(),
            MatValue::Struct { .. } => "struct".into(),
        };
        format!("{} {kind}", dims.join("x"))
    }

    /// The value of a one-element numeric array.
    pub fn as_scalar(&self) -> Option<f64> {
        match self {
            MatValue::Numeric { data, .. } if data.len() == 1 => Some(data[0]),
            _ => None,
        }
    }

    /// The text of a char array with one row (or an empty one).
    pub fn as_string(&self) -> Option<String> {
        match self {
            MatValue::Char { dims, chars } if dims.len() == 2 && (dims[0] <= 1 || chars.is_empty()) => {
                Some(chars.iter().collect())
            }
            _ => None,
        }
    }

    /// Field `name` of element `i` of a struct array.
    pub fn field(&self, i: usize, name: &str) -> Option<&MatValue> {
        match self {
            MatValue::Struct { fields, elements, .. } => {
                let f = fields.iter().position(|n| n == name)?;
                elements.get(i)?.get(f)
            }
            _ => None,
        }
    }

    /// The field names of a struct array.
    pub fn field_names(&self) -> Option<&[String]> {
        match self {
            MatValue::Struct { fields, .. } => Some(fields),
            _ => None,
        }
    }
}

/// Reads every supported variable of a MAT-file.
pub fn read(path: &Path) -> Result<Vec<(String, MatValue)>, DatasetError> {
    let bytes = std::fs::read(path).map_err(|e| DatasetError::io(path, e))?;
    read_bytes(&bytes, path)
}

/// Reads every supported variable from the bytes of a MAT-file, level 5 or v7.3 (HDF5, with
/// or without MATLAB's 512-byte user block); `path` is for messages.
pub fn read_bytes(bytes: &[u8], path: &Path) -> Result<Vec<(String, MatValue)>, DatasetError> {
    let fail =
        |offset: usize, message: String| DatasetError::format(path, None, format!("at byte {offset}: {message}"));
    // A level-5 header (version 0x0100) wins over an HDF5 signature further on, which could
    // only be part of a variable's data.
    let level5 = matches!(bytes.get(124..128), Some([0, 1, b'I', b'M'] | [1, 0, b'M', b'I']));
    if !level5 && mat73::is_hdf5(bytes) {
        return mat73::read_bytes(bytes, path);
    }
    if bytes.len() < 128 {
        return Err(fail(0, format!("file is {} bytes, shorter than a MAT-file header (128)", bytes.len())));
    }
    let text = String::from_utf8_lossy(&bytes[..116]);
    let little = match &bytes[126..128] {
        b"IM" => true,
        b"MI" => false,
        _ => {
            return Err(DatasetError::format(
                path,
                None,
                "not a MATLAB level-5 MAT-file (no 'MI' endian indicator in the header; \
                 MATLAB v4 files are not supported; save with -v7)",
            ));
        }
    };
    let version = if little {
        u16::from_le_bytes([bytes[124], bytes[125]])
    } else {
        u16::from_be_bytes([bytes[124], bytes[125]])
    };
    if version == 0x0200 || text.starts_with("MATLAB 7.3") {
        return Err(DatasetError::format(
            path,
            None,
            format!(
                "the header says MATLAB v7.3, but no HDF5 data follows it at byte 512 (the file is {} bytes; \
                 truncated or damaged?)",
                bytes.len()
            ),
        ));
    }
    if version != 0x0100 {
        return Err(fail(124, format!("unknown MAT-file version 0x{version:04x} (expected 0x0100)")));
    }

    let mut vars = Vec::new();
    let mut r = Reader { bytes, pos: 128, little, base: 0, path, depth: 0 };
    while r.pos < bytes.len() {
        // Some writers pad the end of the file; stop at a trailing run of zeros.
        if bytes[r.pos..].iter().all(|&b| b == 0) {
            break;
        }
        let start = r.pos;
        let (ty, data) = r.element()?;
        match ty {
            MI_COMPRESSED => {
                let mut inflated = Vec::new();
                ZlibDecoder::new(data)
                    .read_to_end(&mut inflated)
                    .map_err(|e| fail(start, format!("compressed variable cannot be inflated: {e}")))?;
                let mut inner = Reader { bytes: &inflated, pos: 0, little, base: start, path, depth: 0 };
                let (ty, data) = inner.element()?;
                if ty != MI_MATRIX {
                    return Err(fail(start, format!("compressed element holds type {ty}, expected miMATRIX (14)")));
                }
                vars.push(inner.matrix(data, 0)?);
            }
            MI_MATRIX => vars.push(r.matrix(data, start)?),
            other => return Err(fail(start, format!("unexpected top-level element type {other}"))),
        }
    }
    Ok(vars)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    little: bool,
    /// Offset of the enclosing compressed element in the file, for messages.
    base: usize,
    path: &'a Path,
    /// How many arrays enclose the ones this reader reads.
    depth: usize,
}

impl<'a> Reader<'a> {
    fn fail(&self, offset: usize, message: impl Into<String>) -> DatasetError {
        let at = if self.base > 0 {
            format!("in the compressed variable at byte {}, offset {offset}", self.base)
        } else {
            format!("at byte {offset}")
        };
        DatasetError::format(self.path, None, format!("{at}: {}", message.into()))
    }

    fn u32_at(&self, at: usize) -> u32 {
        let b = [self.bytes[at], self.bytes[at + 1], self.bytes[at + 2], self.bytes[at + 3]];
        if self.little { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) }
    }

    /// Reads one data element; returns its type and data, and moves past its padding.
    fn element(&mut self) -> Result<(u32, &'a [u8]), DatasetError> {
        let start = self.pos;
        if start + 8 > self.bytes.len() {
            return Err(self.fail(start, "truncated element tag"));
        }
        let first = self.u32_at(start);
        if first >> 16 != 0 {
            // Small data element: byte count in the upper half, type in the lower half,
            // up to 4 bytes of data in the rest of the 8 bytes.
            let (ty, n) = (first & 0xFFFF, (first >> 16) as usize);
            if n > 4 {
                return Err(self.fail(start, format!("small data element claims {n} bytes (at most 4)")));
            }
            self.pos = start + 8;
            return Ok((ty, &self.bytes[start + 4..start + 4 + n]));
        }
        let n = self.u32_at(start + 4) as usize;
        let data_start = start + 8;
        if data_start + n > self.bytes.len() {
            return Err(self.fail(
                start,
                format!(
                    "element of type {first} claims {n} bytes but only {} remain (truncated file?)",
                    self.bytes.len() - data_start
                ),
            ));
        }
        // Compressed elements are not padded; all others are padded to 8 bytes.
        let padded = if first == MI_COMPRESSED { n } else { n.div_ceil(8) * 8 };
        self.pos = (data_start + padded).min(self.bytes.len());
        Ok((first, &self.bytes[data_start..data_start + n]))
    }

    /// Parses the contents of a miMATRIX element: a named value.
    fn matrix(&self, data: &'a [u8], at: usize) -> Result<(String, MatValue), DatasetError> {
        if data.is_empty() {
            // An empty miMATRIX is MATLAB's empty array `[]`.
            let empty = MatValue::Numeric { class: NumericClass::Double, dims: vec![0, 0], data: vec![] };
            return Ok((String::new(), empty));
        }
        if self.depth >= MAX_DEPTH {
            return Err(self.fail(at, format!("arrays nest more than {MAX_DEPTH} levels deep")));
        }
        let depth = self.depth + 1;
        let mut sub = Reader { bytes: data, pos: 0, little: self.little, base: self.base, path: self.path, depth };
        let offset = |r: &Reader| at + 8 + r.pos;
        // Every element of a cell or struct array is a nested element with an 8-byte tag at
        // least, so the bytes left bound how many the dimensions can truthfully claim.
        let room = |r: &Reader, what: &str, dims: &[usize], nested: usize| {
            let left = data.len() - r.pos;
            if nested > left / 8 {
                return Err(self.fail(
                    offset(r),
                    format!("{what} {dims:?} needs {nested} nested elements but only {left} bytes are left"),
                ));
            }
            Ok(())
        };

        let flags_at = offset(&sub);
        let (ty, flags) = sub.element()?;
        if ty != MI_UINT32 || flags.len() != 8 {
            return Err(self.fail(
                flags_at,
                format!("array flags have type {ty} and {} bytes, expected miUINT32 and 8", flags.len()),
            ));
        }
        let flag_word = sub.word(flags, 0);
        let class = (flag_word & 0xFF) as u8;
        let complex = flag_word & 0x0800 != 0;

        let dims_at = offset(&sub);
        let (ty, dims_bytes) = sub.element()?;
        if ty != MI_INT32 || dims_bytes.len() % 4 != 0 || dims_bytes.len() < 8 {
            return Err(self.fail(dims_at, "dimensions are not an miINT32 array of at least 2 values"));
        }
        let mut dims = Vec::new();
        for k in 0..dims_bytes.len() / 4 {
            let d = sub.word(dims_bytes, k * 4) as i32;
            if d < 0 {
                return Err(self.fail(dims_at, format!("negative dimension {d}")));
            }
            dims.push(d as usize);
        }
        let count = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        let count = count.ok_or_else(|| self.fail(dims_at, "dimensions overflow"))?;

        let name_at = offset(&sub);
        let (ty, name) = sub.element()?;
        if ty != MI_INT8 && ty != MI_UINT8 {
            return Err(self.fail(name_at, format!("array name has type {ty}, expected miINT8")));
        }
        let name = String::from_utf8_lossy(name).into_owned();

        let value = match class {
            MX_CELL => {
                room(&sub, "cell array", &dims, count)?;
                let mut elements = Vec::with_capacity(count);
                for _ in 0..count {
                    let at = offset(&sub);
                    elements.push(sub.child(at)?);
                }
                MatValue::Cell { dims, elements }
            }
            MX_STRUCT => {
                let at = offset(&sub);
                let (ty, len_bytes) = sub.element()?;
                if ty != MI_INT32 || len_bytes.len() != 4 {
                    return Err(self.fail(at, "struct field name length is not one miINT32"));
                }
                let len = sub.word(len_bytes, 0) as usize;
                let at = offset(&sub);
                let (_, names) = sub.element()?;
                if len == 0 || names.len() % len != 0 {
                    return Err(
                        self.fail(at, format!("{} bytes of field names are not a multiple of {len}", names.len()))
                    );
                }
                let fields: Vec<String> = names
                    .chunks(len)
                    .map(|c| {
                        let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
                        String::from_utf8_lossy(&c[..end]).into_owned()
                    })
                    .collect();
                if fields.is_empty() && count > MAX_FIELDLESS_STRUCT {
                    return Err(self.fail(
                        dims_at,
                        format!("struct array {dims:?} has no fields and more than {MAX_FIELDLESS_STRUCT} elements"),
                    ));
                }
                room(&sub, "struct array", &dims, count.saturating_mul(fields.len()))?;
                let mut elements = Vec::with_capacity(count);
                for _ in 0..count {
                    let mut values = Vec::with_capacity(fields.len());
                    for _ in 0..fields.len() {
                        let at = offset(&sub);
                        values.push(sub.child(at)?);
                    }
                    elements.push(values);
                }
                MatValue::Struct { dims, fields, elements }
            }
            MX_CHAR => {
                let at = offset(&sub);
                let chars = if count == 0 && sub.pos >= data.len() {
                    Vec::new()
                } else {
                    let (ty, bytes) = sub.element()?;
                    sub.chars(ty, bytes, at)?
                };
                if chars.len() != count {
                    return Err(self.fail(at, format!("char array {:?} holds {} characters", dims, chars.len())));
                }
                MatValue::Char { dims, chars }
            }
            MX_OBJECT => {
                return Err(self.fail(at, format!("variable '{name}' is a MATLAB object, which is not supported")));
            }
            MX_SPARSE => {
                return Err(self.fail(at, format!("variable '{name}' is a sparse array, which is not supported")));
            }
            code => {
                let class = NumericClass::from_code(code)
                    .ok_or_else(|| self.fail(flags_at, format!("unknown array class {code}")))?;
                if complex {
                    return Err(self.fail(flags_at, format!("variable '{name}' is complex, which is not supported")));
                }
                let at = offset(&sub);
                let data = if count == 0 && sub.pos >= data.len() {
                    Vec::new()
                } else {
                    let (ty, bytes) = sub.element()?;
                    sub.numbers(ty, bytes, at)?
                };
                if data.len() != count {
                    return Err(self.fail(at, format!("numeric array {:?} holds {} values", dims, data.len())));
                }
                MatValue::Numeric { class, dims, data }
            }
        };
        Ok((name, value))
    }

    /// Reads a nested miMATRIX element (a cell or a struct field).
    fn child(&mut self, at: usize) -> Result<MatValue, DatasetError> {
        let (ty, data) = self.element()?;
        if ty != MI_MATRIX {
            return Err(self.fail(at, format!("expected a nested miMATRIX element, found type {ty}")));
        }
        Ok(self.matrix(data, at)?.1)
    }

    fn word(&self, bytes: &[u8], at: usize) -> u32 {
        let b = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        if self.little { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) }
    }

    /// Converts numeric data of any storage type to `f64`.
    fn numbers(&self, ty: u32, b: &[u8], at: usize) -> Result<Vec<f64>, DatasetError> {
        macro_rules! conv {
            ($t:ty) => {{
                const N: usize = std::mem::size_of::<$t>();
                #[allow(clippy::modulo_one)] // N is 1 for the byte types
                if b.len() % N != 0 {
                    return Err(self.fail(at, format!("{} bytes of data are not a multiple of {N}", b.len())));
                }
                b.chunks_exact(N)
                    .map(|c| {
                        let a: [u8; N] = c.try_into().unwrap();
                        (if self.little { <$t>::from_le_bytes(a) } else { <$t>::from_be_bytes(a) }) as f64
                    })
                    .collect()
            }};
        }
        Ok(match ty {
            MI_INT8 => conv!(i8),
            MI_UINT8 => conv!(u8),
            MI_INT16 => conv!(i16),
            MI_UINT16 => conv!(u16),
            MI_INT32 => conv!(i32),
            MI_UINT32 => conv!(u32),
            MI_SINGLE => conv!(f32),
            MI_DOUBLE => conv!(f64),
            MI_INT64 => conv!(i64),
            MI_UINT64 => conv!(u64),
            other => return Err(self.fail(at, format!("numeric data of type {other} is not a number type"))),
        })
    }

    /// Decodes char data: UTF-16 code units (MATLAB's usual), UTF-8 or single bytes.
    fn chars(&self, ty: u32, b: &[u8], at: usize) -> Result<Vec<char>, DatasetError> {
        match ty {
            MI_UINT16 | MI_UTF16 => {
                let units: Vec<u16> = self.numbers(MI_UINT16, b, at)?.into_iter().map(|v| v as u16).collect();
                Ok(char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)).collect())
            }
            MI_UTF8 => Ok(String::from_utf8_lossy(b).chars().collect()),
            MI_UINT8 | MI_INT8 => Ok(b.iter().map(|&c| c as char).collect()),
            MI_UTF32 | MI_UINT32 | MI_INT32 => Ok(self
                .numbers(MI_UINT32, b, at)?
                .into_iter()
                .map(|v| char::from_u32(v as u32).unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect()),
            other => Err(self.fail(at, format!("char data of type {other} is not a text type"))),
        }
    }
}

/// Writes variables to a level-5 MAT-file, each compressed when `compress` is true.
pub fn write(path: &Path, vars: &[(&str, MatValue)], compress: bool) -> Result<(), DatasetError> {
    std::fs::write(path, write_bytes(vars, compress)).map_err(|e| DatasetError::io(path, e))
}

/// The bytes of a little-endian level-5 MAT-file holding `vars`.
///
/// Like MATLAB, a `double` array of small non-negative integers is stored as `miUINT8` or
/// `miUINT16`, so files written here exercise the reader's storage-type conversion.
pub fn write_bytes(vars: &[(&str, MatValue)], compress: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut text = b"MATLAB 5.0 MAT-file, Platform: dmlbench, written by dmlbench-datasets".to_vec();
    text.resize(116, b' ');
    out.extend_from_slice(&text);
    out.extend_from_slice(&[0u8; 8]); // no subsystem data
    out.extend_from_slice(&0x0100u16.to_le_bytes());
    out.extend_from_slice(b"IM");
    for (name, value) in vars {
        let mut matrix = Vec::new();
        write_matrix(&mut matrix, name, value);
        if compress {
            let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
            z.write_all(&matrix).expect("writing to memory");
            let packed = z.finish().expect("writing to memory");
            out.extend_from_slice(&MI_COMPRESSED.to_le_bytes());
            out.extend_from_slice(&(packed.len() as u32).to_le_bytes());
            out.extend_from_slice(&packed);
        } else {
            out.extend_from_slice(&matrix);
        }
    }
    out
}

fn write_element(out: &mut Vec<u8>, ty: u32, data: &[u8]) {
    if !data.is_empty() && data.len() <= 4 {
        out.extend_from_slice(&(((data.len() as u32) << 16) | ty).to_le_bytes());
        out.extend_from_slice(data);
        out.resize(out.len() + 4 - data.len(), 0);
    } else {
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out.resize(out.len() + (8 - data.len() % 8) % 8, 0);
    }
}

fn write_matrix(out: &mut Vec<u8>, name: &str, value: &MatValue) {
    let mut body = Vec::new();
    let class = match value {
        MatValue::Numeric { class, .. } => class.code(),
        MatValue::Char { .. } => MX_CHAR,
        MatValue::Cell { .. } => MX_CELL,
        MatValue::Struct { .. } => MX_STRUCT,
    };
    let mut flags = Vec::new();
    flags.extend_from_slice(&(class as u32).to_le_bytes());
    flags.extend_from_slice(&0u32.to_le_bytes());
    write_element(&mut body, MI_UINT32, &flags);
    let dims: Vec<u8> = value.dims().iter().flat_map(|&d| (d as i32).to_le_bytes()).collect();
    write_element(&mut body, MI_INT32, &dims);
    write_element(&mut body, MI_INT8, name.as_bytes());
    match value {
        MatValue::Numeric { class, data, .. } => {
            let (ty, bytes) = numeric_storage(*class, data);
            write_element(&mut body, ty, &bytes);
        }
        MatValue::Char { chars, .. } => {
            let mut units = Vec::new();
            for c in chars {
                let mut buf = [0u16; 2];
                units.extend(c.encode_utf16(&mut buf).iter().flat_map(|u| u.to_le_bytes()));
            }
            write_element(&mut body, MI_UINT16, &units);
        }
        MatValue::Cell { elements, .. } => {
            for e in elements {
                write_matrix(&mut body, "", e);
            }
        }
        MatValue::Struct { fields, elements, .. } => {
            // MATLAB's fixed field name width: 31 characters plus a terminating NUL.
            let width = fields.iter().map(|f| f.len() + 1).max().unwrap_or(1).max(32);
            write_element(&mut body, MI_INT32, &(width as i32).to_le_bytes());
            let mut names = Vec::new();
            for f in fields {
                let mut padded = f.as_bytes().to_vec();
                padded.resize(width, 0);
                names.extend_from_slice(&padded);
            }
            write_element(&mut body, MI_INT8, &names);
            for element in elements {
                for v in element {
                    write_matrix(&mut body, "", v);
                }
            }
        }
    }
    out.extend_from_slice(&MI_MATRIX.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
}

/// Chooses the storage type: the class's own type, or for `double` the narrowest unsigned
/// integer type that holds every value exactly (as MATLAB does).
fn numeric_storage(class: NumericClass, data: &[f64]) -> (u32, Vec<u8>) {
    use NumericClass::*;
    let integral = data.iter().all(|v| v.fract() == 0.0 && *v >= 0.0);
    let max = data.iter().copied().fold(0.0f64, f64::max);
    match class {
        Double if integral && max <= u8::MAX as f64 => (MI_UINT8, data.iter().map(|&v| v as u8).collect()),
        Double if integral && max <= u16::MAX as f64 => {
            (MI_UINT16, data.iter().flat_map(|&v| (v as u16).to_le_bytes()).collect())
        }
        Double => (MI_DOUBLE, data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        Single => (MI_SINGLE, data.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect()),
        Int8 => (MI_INT8, data.iter().flat_map(|&v| (v as i8).to_le_bytes()).collect()),
        UInt8 => (MI_UINT8, data.iter().map(|&v| v as u8).collect()),
        Int16 => (MI_INT16, data.iter().flat_map(|&v| (v as i16).to_le_bytes()).collect()),
        UInt16 => (MI_UINT16, data.iter().flat_map(|&v| (v as u16).to_le_bytes()).collect()),
        Int32 => (MI_INT32, data.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect()),
        UInt32 => (MI_UINT32, data.iter().flat_map(|&v| (v as u32).to_le_bytes()).collect()),
        Int64 => (MI_INT64, data.iter().flat_map(|&v| (v as i64).to_le_bytes()).collect()),
        UInt64 => (MI_UINT64, data.iter().flat_map(|&v| (v as u64).to_le_bytes()).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offset of the first array's dimensions in an uncompressed file from [`write_bytes`]:
    /// the 128-byte header, the miMATRIX tag, the array flags (tag and 8 bytes), the
    /// dimensions' tag.
    const FIRST_DIMS: usize = 128 + 8 + 16 + 8;

    fn with_dims(value: MatValue, dims: [i32; 2]) -> Vec<u8> {
        let mut bytes = write_bytes(&[("v", value)], false);
        bytes[FIRST_DIMS..FIRST_DIMS + 4].copy_from_slice(&dims[0].to_le_bytes());
        bytes[FIRST_DIMS + 4..FIRST_DIMS + 8].copy_from_slice(&dims[1].to_le_bytes());
        bytes
    }

    fn message(bytes: &[u8]) -> String {
        read_bytes(bytes, Path::new("x.mat")).unwrap_err().to_string()
    }

    /// Element counts from the dimensions are checked against the bytes left before they
    /// size a vector: these dimensions asked for exabytes (a capacity overflow) or for
    /// hundreds of gigabytes (an aborted allocation).
    #[test]
    fn dimensions_beyond_the_data_are_errors() {
        let cell = MatValue::cell_row(vec![MatValue::scalar(1.0)]);
        let m = message(&with_dims(cell.clone(), [i32::MAX, i32::MAX]));
        assert!(m.starts_with("x.mat: at byte") && m.contains("cell array [2147483647, 2147483647] needs"), "{m}");
        let m = message(&with_dims(cell, [3, 0x7FFF_FFFF]));
        assert!(m.contains("needs 6442450941 nested elements"), "{m}");

        let structure = MatValue::structure(vec!["a".into()], vec![vec![MatValue::scalar(1.0)]]);
        let m = message(&with_dims(structure, [1, i32::MAX]));
        assert!(m.contains("struct array [1, 2147483647] needs 2147483647 nested elements"), "{m}");

        let fieldless = MatValue::structure(vec![], vec![vec![]]);
        let m = message(&with_dims(fieldless.clone(), [i32::MAX, i32::MAX]));
        assert!(m.contains("has no fields and more than 1048576 elements"), "{m}");
        let vars = read_bytes(&with_dims(fieldless, [2, 3]), Path::new("x.mat")).unwrap();
        assert_eq!(vars[0].1.len(), 6);
    }

    #[test]
    fn nesting_is_bounded() {
        let nest = |levels: usize| (0..levels).fold(MatValue::scalar(1.0), |v, _| MatValue::cell_row(vec![v]));
        let bytes = write_bytes(&[("deep", nest(MAX_DEPTH - 1))], true);
        assert!(read_bytes(&bytes, Path::new("x.mat")).is_ok());
        let m = message(&write_bytes(&[("deep", nest(MAX_DEPTH))], true));
        assert!(m.contains("arrays nest more than 64 levels deep"), "{m}");
    }
}
