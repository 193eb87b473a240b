//! `.npy` embedding and label files: the interchange format with NumPy and PyTorch.
//!
//! Embeddings are 2-D float32 or float64 arrays (n×d), labels 1-D int32 or int64 arrays, both
//! in C order. Anything else is an [`NpyError`] that names the file and says what was found,
//! so that a user who saved a transposed, Fortran-ordered or float16 array learns how to fix
//! it rather than getting silently wrong numbers.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use dmlbench_datasets::npy;
//! let path = dir.path().join("e.npy");
//! npy::write_embeddings(&path, 2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
//! let e = npy::read_embeddings(&path).unwrap();
//! assert_eq!((e.n, e.d), (2, 3));
//! assert_eq!(e.data[5], 6.0);
//! ```

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use npyz::{DType, NpyFile, Order, TypeChar, WriterBuilder};

/// An `.npy` file that could not be read or written, or does not hold what was expected.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// The file could not be opened, read or written.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a well-formed `.npy` file: no magic string, an unknown version, a
    /// header that is truncated, too long or not the dictionary NumPy writes.
    #[error("{path}: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        message: String,
    },
    /// The file is a valid `.npy` file but not of the expected dtype, rank or order.
    #[error("{path}: {message}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is wrong and what was expected.
        message: String,
    },
    /// The file holds NaN or infinite values.
    #[error("{path}: element {index} (row {row}, column {column}) is {value}; embeddings must be finite")]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// Flat index of the first bad element.
        index: usize,
        /// Its row.
        row: usize,
        /// Its column.
        column: usize,
        /// The value found.
        value: f32,
    },
}

/// An n×d matrix of embeddings, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// Number of rows.
    pub n: usize,
    /// Number of columns (embedding size).
    pub d: usize,
    /// n·d values, row-major.
    pub data: Vec<f32>,
}

impl Embeddings {
    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.d..(i + 1) * self.d]
    }
}

fn io_error(path: &Path, source: std::io::Error) -> NpyError {
    NpyError::Io { path: path.to_path_buf(), source }
}

fn unsupported(path: &Path, message: impl Into<String>) -> NpyError {
    NpyError::Unsupported { path: path.to_path_buf(), message: message.into() }
}

fn malformed(path: &Path, message: impl Into<String>) -> NpyError {
    NpyError::Malformed { path: path.to_path_buf(), message: message.into() }
}

/// Opens a file whose header [`read_header`] has accepted. The npy library then reads the
/// header again and the data after it.
fn open(path: &Path) -> Result<(NpyFile<BufReader<File>>, Header), NpyError> {
    let header = read_header(path)?;
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    let npy = NpyFile::new(BufReader::new(file)).map_err(|e| io_error(path, e))?;
    Ok((npy, header))
}

/// What an `.npy` header says, as read by this module.
///
/// The npy library trusts the header: it allocates a buffer of the length the preamble
/// claims, and multiplies the shape's dimensions without checking for overflow. So a header
/// is read here first, strictly, and only one that is the flat dictionary of the three keys
/// NumPy writes, with a shape whose products fit in memory arithmetic, is handed on.
#[derive(Debug)]
struct Header {
    /// The dimensions.
    shape: Vec<u64>,
    /// Bytes after the header: the data the file actually holds.
    data_len: u64,
}

/// The longest header accepted. Version 1.0 headers cannot be longer (their length is a
/// u16); later versions exist for structured dtypes with many fields, which are not read
/// here, so a longer header is damage, not data.
const MAX_HEADER_LEN: u64 = u16::MAX as u64;

/// NumPy's own limit on the number of dimensions (`NPY_MAXDIMS` in NumPy 2).
const MAX_DIMS: usize = 64;

/// Reads and checks the preamble and header of `path`; see [`Header`]. The preamble is the
/// magic string, the version, and the header's length: a u16 in format 1.0, a u32 in 2.0
/// and 3.0.
fn read_header(path: &Path) -> Result<Header, NpyError> {
    use std::io::Read;
    let mut file = File::open(path).map_err(|e| io_error(path, e))?;
    let file_len = file.metadata().map_err(|e| io_error(path, e))?.len();
    let mut preamble = [0u8; 12];
    let short = |what: &str| malformed(path, format!("the file is {file_len} bytes, too short for {what}"));
    if file_len < 10 {
        return Err(short("an .npy preamble"));
    }
    file.read_exact(&mut preamble[..10]).map_err(|e| io_error(path, e))?;
    if &preamble[..6] != b"\x93NUMPY" {
        return Err(malformed(path, "not an .npy file (it does not start with the magic string \\x93NUMPY)"));
    }
    let (major, minor) = (preamble[6], preamble[7]);
    let (length, start) = match major {
        1 => (u64::from(u16::from_le_bytes([preamble[8], preamble[9]])), 10),
        2 | 3 => {
            if file_len < 12 {
                return Err(short(&format!("an .npy {major}.{minor} preamble")));
            }
            file.read_exact(&mut preamble[10..]).map_err(|e| io_error(path, e))?;
            (u64::from(u32::from_le_bytes([preamble[8], preamble[9], preamble[10], preamble[11]])), 12)
        }
        _ => {
            let message = format!("unknown .npy format version {major}.{minor} (1.0, 2.0 and 3.0 exist)");
            return Err(malformed(path, message));
        }
    };
    if length > MAX_HEADER_LEN {
        let message = format!("the header claims {length} bytes, more than the {MAX_HEADER_LEN} an array header needs");
        return Err(malformed(path, message));
    }
    let available = file_len - start;
    if length > available {
        return Err(malformed(
            path,
            format!("the header claims {length} bytes but only {available} follow the preamble; the file is truncated"),
        ));
    }
    let mut text = vec![0u8; length as usize];
    file.read_exact(&mut text).map_err(|e| io_error(path, e))?;
    let shape = parse_header(&text).map_err(|message| malformed(path, format!("header: {message}")))?;
    // The npy library multiplies the dimensions in several orders (the element count, the
    // strides), and a zero dimension does not stop the partial products of the others from
    // overflowing: every nonzero dimension together must fit, with room for 8-byte elements.
    if addressable_bytes(shape.iter().filter(|&&d| d > 0), 8).is_none() {
        return Err(unsupported(path, format!("shape {shape:?} is too large to address")));
    }
    Ok(Header { shape, data_len: available - length })
}

/// Bytes of an array of these dimensions and `item_size`-byte elements, `None` when that
/// overflows or exceeds this machine's address space.
fn addressable_bytes<'a>(dims: impl IntoIterator<Item = &'a u64>, item_size: u64) -> Option<u64> {
    dims.into_iter().try_fold(item_size, |acc, &dim| acc.checked_mul(dim)).filter(|&b| usize::try_from(b).is_ok())
}

/// Bytes of `shape` elements of `item_size` bytes, an error when that cannot be addressed.
fn payload_bytes(path: &Path, shape: &[u64], item_size: u64) -> Result<u64, NpyError> {
    addressable_bytes(shape, item_size)
        .ok_or_else(|| unsupported(path, format!("shape {shape:?} is too large to address")))
}

/// Parses the header dictionary, `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }`
/// padded with spaces and a newline, and returns the shape; the dtype and the order are checked
/// to be a type string and a boolean and left to the npy library. Anything else is an error
/// that says what was found where.
fn parse_header(bytes: &[u8]) -> Result<Vec<u64>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("byte {} is not UTF-8 text", e.valid_up_to()))?;
    let mut p = HeaderParser { text, pos: 0 };
    let (mut descr, mut fortran_order, mut shape) = (None, None, None);
    p.expect('{')?;
    loop {
        if p.eat('}') {
            break;
        }
        p.skip_space();
        let key_at = p.pos;
        let key = p.string()?;
        p.expect(':')?;
        let duplicate = match key.as_str() {
            "descr" => {
                if p.peek() == Some('[') {
                    return Err("the dtype is structured (a list of fields); only plain dtypes are read".into());
                }
                descr.replace(p.string()?).is_some()
            }
            "fortran_order" => fortran_order.replace(p.boolean()?).is_some(),
            "shape" => shape.replace(p.shape()?).is_some(),
            other => return Err(format!("unexpected key '{other}' at character {key_at}")),
        };
        if duplicate {
            return Err(format!("key '{key}' appears twice"));
        }
        if !p.eat(',') {
            p.expect('}')?;
            break;
        }
    }
    p.skip_space();
    if p.pos != text.len() {
        return Err(format!("unexpected text after the dictionary at character {}", p.pos));
    }
    let missing = |key: &str| format!("the key '{key}' is missing");
    let descr = descr.ok_or_else(|| missing("descr"))?;
    let well_formed = descr.len() <= 32 && descr.starts_with(['<', '>', '|', '=']) && descr.is_ascii();
    if !well_formed {
        let shown: String = descr.chars().take(32).collect();
        return Err(format!("the dtype '{}' is not a NumPy type string such as '<f4'", shown.escape_debug()));
    }
    fortran_order.ok_or_else(|| missing("fortran_order"))?;
    shape.ok_or_else(|| missing("shape"))
}

/// A cursor over header text; every method skips leading whitespace.
struct HeaderParser<'a> {
    text: &'a str,
    pos: usize,
}

impl HeaderParser<'_> {
    fn skip_space(&mut self) {
        let rest = &self.text[self.pos..];
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_space();
        self.text[self.pos..].chars().next()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) { Ok(()) } else { Err(self.unexpected(&format!("'{c}'"))) }
    }

    fn unexpected(&mut self, wanted: &str) -> String {
        match self.peek() {
            Some(found) => format!("expected {wanted} at character {}, found '{}'", self.pos, found.escape_debug()),
            None => format!("expected {wanted} at character {}, found the end of the header", self.pos),
        }
    }

    /// A quoted string without escapes (NumPy writes none in these keys and values).
    fn string(&mut self) -> Result<String, String> {
        let quote = match self.peek() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err(self.unexpected("a quoted string")),
        };
        let start = self.pos + 1;
        let len = self.text[start..]
            .find(quote)
            .ok_or_else(|| format!("the string at character {} is not closed", self.pos))?;
        let value = &self.text[start..start + len];
        if value.contains('\\') {
            return Err(format!("the string at character {} has an escape sequence", self.pos));
        }
        self.pos = start + len + 1;
        Ok(value.to_string())
    }

    fn boolean(&mut self) -> Result<bool, String> {
        self.skip_space();
        for (word, value) in [("True", true), ("False", false)] {
            if self.text[self.pos..].starts_with(word) {
                self.pos += word.len();
                return Ok(value);
            }
        }
        Err(self.unexpected("True or False"))
    }

    /// A tuple of non-negative integers: `()`, `(3,)`, `(3, 2)`.
    fn shape(&mut self) -> Result<Vec<u64>, String> {
        self.expect('(')?;
        let mut dims = Vec::new();
        loop {
            if self.eat(')') {
                return Ok(dims);
            }
            if dims.len() == MAX_DIMS {
                return Err(format!("the shape has more than {MAX_DIMS} dimensions, NumPy's limit"));
            }
            self.skip_space();
            let digits = self.text[self.pos..].bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(self.unexpected("a dimension (a non-negative integer)"));
            }
            let number = &self.text[self.pos..self.pos + digits];
            let dim = number.parse::<u64>().map_err(|_| {
                format!("the dimension at character {} ({digits} digits) does not fit in 64 bits", self.pos)
            })?;
            dims.push(dim);
            self.pos += digits;
            if !self.eat(',') {
                self.expect(')')?;
                return Ok(dims);
            }
        }
    }
}

/// The element type of a plain dtype as (type character, size in bytes), or an error for
/// structured and sub-array dtypes.
fn plain_type(path: &Path, dtype: &DType) -> Result<(TypeChar, u64, String), NpyError> {
    match dtype {
        DType::Plain(ts) => Ok((ts.type_char(), ts.size_field(), ts.to_string())),
        other => Err(unsupported(path, format!("structured dtype {} is not supported", other.descr()))),
    }
}

fn check_c_order(path: &Path, order: Order) -> Result<(), NpyError> {
    match order {
        Order::C => Ok(()),
        Order::Fortran => {
            Err(unsupported(path, "array is in Fortran order; save it in C order (numpy.ascontiguousarray) first"))
        }
    }
}

/// Checks that the header's shape fits in memory arithmetic and that the file holds that much
/// data, before anything is allocated: a header is only a claim (`(32, 2**59)` overflows n · d;
/// `(1, 2**40)` would ask for terabytes; a truncated file holds less than it says).
fn check_payload(path: &Path, header: &Header, item_size: u64) -> Result<(), NpyError> {
    let (shape, available) = (&header.shape, header.data_len);
    let bytes = payload_bytes(path, shape, item_size)?;
    if bytes > available {
        return Err(unsupported(
            path,
            format!(
                "shape {shape:?} needs {bytes} bytes of data, the file has {available}; it is truncated or its header is wrong"
            ),
        ));
    }
    Ok(())
}

/// Reads a 2-D float32 or float64 C-order array of finite values.
pub fn read_embeddings(path: &Path) -> Result<Embeddings, NpyError> {
    let (file, header) = open(path)?;
    let shape = header.shape.clone();
    if shape.len() != 2 {
        return Err(unsupported(path, format!("embeddings must be a 2-D array (n × d), found shape {shape:?}")));
    }
    check_c_order(path, file.order())?;
    let (n, d) = (shape[0] as usize, shape[1] as usize);
    let (kind, size, descr) = plain_type(path, &file.dtype())?;
    check_payload(path, &header, size)?;
    let data: Vec<f32> = match (kind, size) {
        (TypeChar::Float, 4) => file.into_vec::<f32>().map_err(|e| io_error(path, e))?,
        (TypeChar::Float, 8) => {
            file.into_vec::<f64>().map_err(|e| io_error(path, e))?.into_iter().map(|x| x as f32).collect()
        }
        _ => {
            return Err(unsupported(path, format!("embeddings must be float32 or float64, found dtype '{descr}'")));
        }
    };
    if let Some(index) = data.iter().position(|x| !x.is_finite()) {
        return Err(NpyError::NonFinite {
            path: path.to_path_buf(),
            index,
            row: index / d.max(1),
            column: index % d.max(1),
            value: data[index],
        });
    }
    Ok(Embeddings { n, d, data })
}

/// Reads a 1-D int32 or int64 C-order array of labels.
pub fn read_labels(path: &Path) -> Result<Vec<i64>, NpyError> {
    let (file, header) = open(path)?;
    let shape = header.shape.clone();
    if shape.len() != 1 {
        return Err(unsupported(path, format!("labels must be a 1-D array, found shape {shape:?}")));
    }
    check_c_order(path, file.order())?;
    let (kind, size, descr) = plain_type(path, &file.dtype())?;
    check_payload(path, &header, size)?;
    match (kind, size) {
        (TypeChar::Int, 8) => file.into_vec::<i64>().map_err(|e| io_error(path, e)),
        (TypeChar::Int, 4) => {
            Ok(file.into_vec::<i32>().map_err(|e| io_error(path, e))?.into_iter().map(i64::from).collect())
        }
        _ => Err(unsupported(path, format!("labels must be int32 or int64, found dtype '{descr}'"))),
    }
}

/// Reads an embeddings file and a labels file and checks that they have the same length.
pub fn read_embeddings_and_labels(embeddings: &Path, labels: &Path) -> Result<(Embeddings, Vec<i64>), NpyError> {
    let e = read_embeddings(embeddings)?;
    let l = read_labels(labels)?;
    if l.len() != e.n {
        return Err(unsupported(
            labels,
            format!(
                "{} labels for {} embeddings in {}; each embedding row needs exactly one label",
                l.len(),
                e.n,
                embeddings.display()
            ),
        ));
    }
    Ok((e, l))
}

/// Writes an n×d float32 array in C order.
pub fn write_embeddings(path: &Path, n: usize, d: usize, data: &[f32]) -> Result<(), NpyError> {
    std::fs::write(path, embeddings_bytes(n, d, data)).map_err(|e| io_error(path, e))
}

/// Writes a 1-D int64 array.
pub fn write_labels(path: &Path, labels: &[i64]) -> Result<(), NpyError> {
    std::fs::write(path, labels_bytes(labels)).map_err(|e| io_error(path, e))
}

/// The `.npy` file of an n×d float32 array in C order, for a caller that writes it its own
/// way (through a temporary file, say).
pub fn embeddings_bytes(n: usize, d: usize, data: &[f32]) -> Vec<u8> {
    assert_eq!(data.len(), n * d, "embeddings_bytes: data length is not n·d");
    array_bytes(&[n as u64, d as u64], data)
}

/// The `.npy` file of a 1-D int64 array.
pub fn labels_bytes(labels: &[i64]) -> Vec<u8> {
    array_bytes(&[labels.len() as u64], labels)
}

fn array_bytes<T: npyz::AutoSerialize + Copy>(shape: &[u64], data: &[T]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(std::io::Cursor::new(&mut bytes))
        .begin_nd()
        .expect("writing to memory cannot fail");
    writer.extend(data.iter().copied()).expect("writing to memory cannot fail");
    writer.finish().expect("writing to memory cannot fail");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a raw `.npy` file with the given header dictionary and payload, the way NumPy
    /// lays it out (version 1.0, header padded to 64 bytes).
    fn raw_npy(path: &Path, dict: &str, payload: &[u8]) {
        let mut header = dict.to_string();
        let unpadded = 10 + header.len() + 1;
        header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
        header.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(payload);
        std::fs::write(path, bytes).unwrap();
    }

    fn f64_bytes(values: &[f64]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn round_trip_f32_and_i64() {
        let dir = tempfile::tempdir().unwrap();
        let (e, l) = (dir.path().join("e.npy"), dir.path().join("l.npy"));
        write_embeddings(&e, 2, 2, &[0.5, -1.0, 2.0, 3.0]).unwrap();
        write_labels(&l, &[7, -3]).unwrap();
        let (emb, labels) = read_embeddings_and_labels(&e, &l).unwrap();
        assert_eq!(emb, Embeddings { n: 2, d: 2, data: vec![0.5, -1.0, 2.0, 3.0] });
        assert_eq!(emb.row(1), &[2.0, 3.0]);
        assert_eq!(labels, vec![7, -3]);
    }

    #[test]
    fn reads_float64_and_int32() {
        let dir = tempfile::tempdir().unwrap();
        let e = dir.path().join("e.npy");
        raw_npy(&e, "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }", &f64_bytes(&[1.5, -2.25]));
        assert_eq!(read_embeddings(&e).unwrap().data, vec![1.5, -2.25]);
        let l = dir.path().join("l.npy");
        let payload: Vec<u8> = [4i32, -1].iter().flat_map(|v| v.to_le_bytes()).collect();
        raw_npy(&l, "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", &payload);
        assert_eq!(read_labels(&l).unwrap(), vec![4, -1]);
    }

    #[test]
    fn rejects_wrong_rank_dtype_order_and_nan() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        let message = |r: Result<Embeddings, NpyError>| r.unwrap_err().to_string();

        raw_npy(&p, "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", &f64_bytes(&[1.0, 2.0]));
        let m = message(read_embeddings(&p));
        assert!(m.contains("2-D") && m.contains("x.npy"), "{m}");

        raw_npy(&p, "{'descr': '<f8', 'fortran_order': True, 'shape': (1, 2), }", &f64_bytes(&[1.0, 2.0]));
        assert!(message(read_embeddings(&p)).contains("Fortran order"));

        raw_npy(&p, "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 1), }", &7i64.to_le_bytes());
        assert!(message(read_embeddings(&p)).contains("float32 or float64, found dtype '<i8'"));

        raw_npy(&p, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 1), }", &f64_bytes(&[1.0, f64::NAN]));
        let m = message(read_embeddings(&p));
        assert!(m.contains("row 1, column 0") && m.contains("NaN"), "{m}");

        raw_npy(&p, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", &1f32.to_le_bytes());
        let m = read_labels(&p).unwrap_err().to_string();
        assert!(m.contains("int32 or int64, found dtype '<f4'"), "{m}");
    }

    /// Headers whose shape overflows n · d, or promises more data than the file holds, are
    /// errors before any allocation (not a crash, not all-zero metrics).
    #[test]
    fn rejects_shapes_that_overflow_or_exceed_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.npy");
        raw_npy(&p, "{'descr': '<f4', 'fortran_order': False, 'shape': (32, 576460752303423488), }", &[0u8; 16]);
        let m = read_embeddings(&p).unwrap_err().to_string();
        assert!(m.contains("too large to address") && m.contains("e.npy"), "{m}");
        raw_npy(&p, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1099511627776), }", &[0u8; 16]);
        let m = read_embeddings(&p).unwrap_err().to_string();
        assert!(m.contains("needs 4398046511104 bytes of data"), "{m}");
        let l = dir.path().join("l.npy");
        raw_npy(&l, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", &7i64.to_le_bytes());
        let m = read_labels(&l).unwrap_err().to_string();
        assert!(m.contains("needs 24 bytes of data") && m.contains("truncated"), "{m}");
    }

    #[test]
    fn rejects_label_count_mismatch_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let (e, l) = (dir.path().join("e.npy"), dir.path().join("l.npy"));
        write_embeddings(&e, 3, 1, &[1.0, 2.0, 3.0]).unwrap();
        write_labels(&l, &[1, 2]).unwrap();
        let m = read_embeddings_and_labels(&e, &l).unwrap_err().to_string();
        assert!(m.contains("2 labels for 3 embeddings"), "{m}");
        let m = read_labels(&dir.path().join("absent.npy")).unwrap_err().to_string();
        assert!(m.contains("absent.npy"), "{m}");
    }

    /// A damaged preamble is an error naming the file, before the npy library sees it: it
    /// would allocate the claimed header length (gigabytes, for a version byte of 2 on a 1.0
    /// file) before finding the file too short.
    #[test]
    fn rejects_damaged_preambles_and_headers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.npy");
        let message = |bytes: &[u8]| {
            std::fs::write(&p, bytes).unwrap();
            let m = read_embeddings(&p).unwrap_err().to_string();
            assert!(m.starts_with(&p.display().to_string()), "{m}");
            m
        };
        write_embeddings(&p, 1, 2, &[1.0, 2.0]).unwrap();
        let valid = std::fs::read(&p).unwrap();

        // Version 2.0 reads a u32 length: here the first bytes of the header text.
        let mut v2 = valid.clone();
        v2[6] = 2;
        assert!(message(&v2).contains("more than the 65535"), "{}", message(&v2));
        let mut long = b"\x93NUMPY\x02\x00".to_vec();
        long.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(message(&long).contains("claims 4294967295 bytes"));
        assert!(message(&valid[..40]).contains("truncated"));
        assert!(message(&valid[..9]).contains("too short"));
        let mut v9 = valid.clone();
        v9[6] = 9;
        assert!(message(&v9).contains("unknown .npy format version 9.0"));
        assert!(message(b"PK\x03\x04 not an npy file").contains("magic string"));
    }

    /// Headers that are not the flat dictionary NumPy writes are errors naming the file; the
    /// shapes here made the npy library's products overflow.
    #[test]
    fn rejects_headers_numpy_would_not_write() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.npy");
        let message = |dict: &str| {
            raw_npy(&p, dict, &[0u8; 64]);
            read_embeddings(&p).unwrap_err().to_string()
        };
        // Deep nesting stops at the first bracket where a dimension belongs.
        let nested = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {}", "(".repeat(20_000));
        assert!(message(&nested).contains("expected a dimension"), "{}", message(&nested));
        // A zero dimension does not keep the others' product from overflowing.
        let m = message("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 9223372036854775808, 4), }");
        assert!(m.contains("too large to address"), "{m}");
        // Keys in double quotes are valid Python; the shape is still checked.
        let m = message(r#"{"descr": "<f4", "fortran_order": False, "shape": (4294967296, 4294967296), }"#);
        assert!(m.contains("too large to address"), "{m}");
        let m = message("{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551616, 1), }");
        assert!(m.contains("does not fit in 64 bits"), "{m}");
        let m = message("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }");
        assert!(m.contains("structured"), "{m}");
        let m = message("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), 'extra': 1}");
        assert!(m.contains("unexpected key 'extra'"), "{m}");
        let m = message("{'descr': '<f4', 'shape': (1, 1), }");
        assert!(m.contains("'fortran_order' is missing"), "{m}");
        let m = message("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1, 1)}");
        assert!(m.contains("appears twice"), "{m}");
        let m = message("{'descr': 'é', 'fortran_order': False, 'shape': (1, 1)}");
        assert!(m.contains("not a NumPy type string"), "{m}");
        let m = message(&format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}", "1, ".repeat(65)));
        assert!(m.contains("more than 64 dimensions"), "{m}");
        // What NumPy writes still reads: spaces, no trailing comma, an empty shape.
        raw_npy(&p, "{ 'descr' : '<f4' , 'fortran_order' : False , 'shape' : ( 1 , 1 ) }", &1f32.to_le_bytes());
        assert_eq!(read_embeddings(&p).unwrap().data, vec![1.0]);
    }
}
