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
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use npyz::{DType, NpyFile, Order, TypeChar, WriterBuilder};

/// An `.npy` file that could not be read or written, or does not hold what was expected.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
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

fn open(path: &Path) -> Result<NpyFile<BufReader<File>>, NpyError> {
    check_element_count(path)?;
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    NpyFile::new(BufReader::new(file)).map_err(|e| io_error(path, e))
}

/// The npy reader multiplies the header's dimensions as it opens a file, and an overflowing
/// product would wrap or panic there; so the shape is read from the header text first and its
/// element count checked. Headers this cannot read are left to the npy reader's errors.
fn check_element_count(path: &Path) -> Result<(), NpyError> {
    let Ok((header, _)) = read_header(path) else {
        return Ok(());
    };
    let Some(dims) = header
        .split_once("'shape'")
        .and_then(|(_, rest)| rest.split_once('(')?.1.split_once(')'))
        .map(|(tuple, _)| tuple.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::parse::<u64>).collect::<Result<Vec<_>, _>>())
    else {
        return Ok(());
    };
    let Ok(dims) = dims else {
        return Ok(());
    };
    // Eight bytes per element at most (float64, int64).
    payload_bytes(path, &dims, 8).map(drop)
}

/// Bytes of `shape` elements of `item_size` bytes, an error when that cannot be addressed.
fn payload_bytes(path: &Path, shape: &[u64], item_size: u64) -> Result<u64, NpyError> {
    shape
        .iter()
        .try_fold(item_size, |acc, &dim| acc.checked_mul(dim))
        .filter(|&b| usize::try_from(b).is_ok())
        .ok_or_else(|| unsupported(path, format!("shape {shape:?} is too large to address")))
}

/// The header text and the number of bytes after it. The preamble is the magic string, the
/// version, and the header's length: a u16 in format 1.0, a u32 in 2.0 and 3.0.
fn read_header(path: &Path) -> std::io::Result<(String, u64)> {
    use std::io::Read;
    let mut file = File::open(path)?;
    let mut preamble = [0u8; 10];
    file.read_exact(&mut preamble)?;
    let (length, start) = match preamble[6] {
        1 => (u64::from(u16::from_le_bytes([preamble[8], preamble[9]])), 10),
        _ => {
            let mut high = [0u8; 2];
            file.read_exact(&mut high)?;
            (u64::from(u32::from_le_bytes([preamble[8], preamble[9], high[0], high[1]])), 12)
        }
    };
    let mut header = Vec::new();
    file.by_ref().take(length.min(1 << 20)).read_to_end(&mut header)?;
    let data = file.metadata()?.len().saturating_sub(start + length);
    Ok((String::from_utf8_lossy(&header).into_owned(), data))
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
        Order::Fortran => Err(unsupported(
            path,
            "array is in Fortran order; save it in C order (numpy.ascontiguousarray) first",
        )),
    }
}

/// Checks that the header's shape fits in memory arithmetic and that the file holds that much
/// data, before anything is allocated: a header is only a claim (`(32, 2**59)` overflows n · d;
/// `(1, 2**40)` would ask for terabytes; a truncated file holds less than it says).
fn check_payload(path: &Path, shape: &[u64], item_size: u64) -> Result<(), NpyError> {
    let bytes = payload_bytes(path, shape, item_size)?;
    let (_, available) = read_header(path).map_err(|e| io_error(path, e))?;
    if bytes > available {
        return Err(unsupported(
            path,
            format!("shape {shape:?} needs {bytes} bytes of data, the file has {available}; it is truncated or its header is wrong"),
        ));
    }
    Ok(())
}

/// Reads a 2-D float32 or float64 C-order array of finite values.
pub fn read_embeddings(path: &Path) -> Result<Embeddings, NpyError> {
    let file = open(path)?;
    let shape = file.shape().to_vec();
    if shape.len() != 2 {
        return Err(unsupported(
            path,
            format!("embeddings must be a 2-D array (n × d), found shape {shape:?}"),
        ));
    }
    check_c_order(path, file.order())?;
    let (n, d) = (shape[0] as usize, shape[1] as usize);
    let (kind, size, descr) = plain_type(path, &file.dtype())?;
    check_payload(path, &shape, size)?;
    let data: Vec<f32> = match (kind, size) {
        (TypeChar::Float, 4) => file.into_vec::<f32>().map_err(|e| io_error(path, e))?,
        (TypeChar::Float, 8) => file
            .into_vec::<f64>()
            .map_err(|e| io_error(path, e))?
            .into_iter()
            .map(|x| x as f32)
            .collect(),
        _ => {
            return Err(unsupported(
                path,
                format!("embeddings must be float32 or float64, found dtype '{descr}'"),
            ));
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
    let file = open(path)?;
    let shape = file.shape().to_vec();
    if shape.len() != 1 {
        return Err(unsupported(path, format!("labels must be a 1-D array, found shape {shape:?}")));
    }
    check_c_order(path, file.order())?;
    let (kind, size, descr) = plain_type(path, &file.dtype())?;
    check_payload(path, &shape, size)?;
    match (kind, size) {
        (TypeChar::Int, 8) => file.into_vec::<i64>().map_err(|e| io_error(path, e)),
        (TypeChar::Int, 4) => Ok(file
            .into_vec::<i32>()
            .map_err(|e| io_error(path, e))?
            .into_iter()
            .map(i64::from)
            .collect()),
        _ => Err(unsupported(path, format!("labels must be int32 or int64, found dtype '{descr}'"))),
    }
}

/// Reads an embeddings file and a labels file and checks that they have the same length.
pub fn read_embeddings_and_labels(
    embeddings: &Path,
    labels: &Path,
) -> Result<(Embeddings, Vec<i64>), NpyError> {
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
    assert_eq!(data.len(), n * d, "write_embeddings: data length is not n·d");
    write_array(path, &[n as u64, d as u64], data)
}

/// Writes a 1-D int64 array.
pub fn write_labels(path: &Path, labels: &[i64]) -> Result<(), NpyError> {
    write_array(path, &[labels.len() as u64], labels)
}

fn write_array<T: npyz::AutoSerialize + Copy>(
    path: &Path,
    shape: &[u64],
    data: &[T],
) -> Result<(), NpyError> {
    let file = File::create(path).map_err(|e| io_error(path, e))?;
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(BufWriter::new(file))
        .begin_nd()
        .map_err(|e| io_error(path, e))?;
    writer.extend(data.iter().copied()).map_err(|e| io_error(path, e))?;
    writer.finish().map_err(|e| io_error(path, e))
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
}
