//! The host's side of the ABI callbacks: buffers that plugins write messages, statistics,
//! state bytes and tuples into. Each copies what it is given before returning, as the ABI
//! promises plugins.

use std::ffi::c_void;

use dmlbench_abi::{Sink, StatSink, TupleKind, TupleSink, Tuples as RawTuples};
use dmlbench_tuples::{Pairs, Triplets, Tuples};

/// Bytes written by a plugin: an error message or its state.
#[derive(Default)]
pub(crate) struct ByteBuffer(pub Vec<u8>);

unsafe extern "C" fn append_bytes(ctx: *mut c_void, bytes: *const u8, len: usize) {
    if ctx.is_null() || len == 0 || bytes.is_null() {
        return;
    }
    // SAFETY: ctx is the ByteBuffer this sink was made from; the plugin passes len bytes.
    unsafe { (*(ctx as *mut ByteBuffer)).0.extend_from_slice(std::slice::from_raw_parts(bytes, len)) };
}

impl ByteBuffer {
    /// A sink appending to this buffer; valid while the buffer is neither moved nor dropped.
    pub fn sink(&mut self) -> Sink {
        Sink { ctx: self as *mut ByteBuffer as *mut c_void, write: Some(append_bytes) }
    }

    /// The bytes as text (invalid UTF-8 replaced), trimmed, capped at
    /// [`crate::errors::MESSAGE_LIMIT`] bytes: a plugin's message ends up in records.
    pub fn text(&self) -> String {
        crate::errors::cap_message(String::from_utf8_lossy(&self.0).trim())
    }
}

/// Statistics recorded by a plugin during one call.
#[derive(Default)]
pub(crate) struct StatBuffer(pub Vec<(String, f64)>);

unsafe extern "C" fn record_stat(ctx: *mut c_void, name: *const u8, name_len: usize, value: f64) {
    if ctx.is_null() || (name.is_null() && name_len > 0) {
        return;
    }
    let name = if name_len == 0 { &[][..] } else { unsafe { std::slice::from_raw_parts(name, name_len) } };
    let name = String::from_utf8_lossy(name).into_owned();
    let stats = unsafe { &mut (*(ctx as *mut StatBuffer)).0 };
    match stats.iter_mut().find(|(n, _)| *n == name) {
        Some(entry) => entry.1 = value,
        None => stats.push((name, value)),
    }
}

impl StatBuffer {
    /// A sink recording into this buffer; valid while the buffer is neither moved nor dropped.
    pub fn sink(&mut self) -> StatSink {
        StatSink { ctx: self as *mut StatBuffer as *mut c_void, record: Some(record_stat) }
    }
}

/// The tuples a miner emitted, or what was wrong with them.
#[derive(Default)]
pub(crate) struct TupleBuffer {
    pub received: Vec<Result<Tuples, String>>,
}

unsafe fn copy_indices(what: &str, ptr: *const u32, len: usize) -> Result<Vec<u32>, String> {
    if len == 0 {
        return Ok(Vec::new());
    }
    if ptr.is_null() {
        return Err(format!("{what} is null but its length is {len}"));
    }
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec())
}

unsafe fn copy_tuples(t: &RawTuples) -> Result<Tuples, String> {
    unsafe {
        match t.kind {
            TupleKind::TRIPLETS if t.neg_len != t.pos_len => {
                Err(format!("triplets with pos_len {} but neg_len {}", t.pos_len, t.neg_len))
            }
            TupleKind::TRIPLETS => Ok(Tuples::Triplets(Triplets {
                a: copy_indices("a", t.a1, t.pos_len)?,
                p: copy_indices("p", t.p, t.pos_len)?,
                n: copy_indices("n", t.n, t.pos_len)?,
            })),
            TupleKind::PAIRS => Ok(Tuples::Pairs(Pairs {
                a1: copy_indices("a1", t.a1, t.pos_len)?,
                p: copy_indices("p", t.p, t.pos_len)?,
                a2: copy_indices("a2", t.a2, t.neg_len)?,
                n: copy_indices("n", t.n, t.neg_len)?,
            })),
            other => Err(format!("unknown tuple kind {}", other.0)),
        }
    }
}

unsafe extern "C" fn receive_tuples(ctx: *mut c_void, tuples: *const RawTuples) {
    if ctx.is_null() {
        return;
    }
    let buffer = unsafe { &mut *(ctx as *mut TupleBuffer) };
    let copied = match unsafe { tuples.as_ref() } {
        Some(t) => unsafe { copy_tuples(t) },
        None => Err("null tuples".to_string()),
    };
    buffer.received.push(copied);
}

impl TupleBuffer {
    /// A sink receiving into this buffer; valid while the buffer is neither moved nor dropped.
    pub fn sink(&mut self) -> TupleSink {
        TupleSink { ctx: self as *mut TupleBuffer as *mut c_void, emit: Some(receive_tuples) }
    }
}

/// Borrowed ABI tuples pointing into `t` (valid while `t` lives). Panics when the arrays
/// of `t` have inconsistent lengths: a plugin would read past the shorter one.
pub(crate) fn raw_tuples(t: Option<&Tuples>) -> RawTuples {
    match t {
        Some(Tuples::Triplets(t)) => {
            assert!(t.p.len() == t.a.len() && t.n.len() == t.a.len(), "triplet arrays differ in length")
        }
        Some(Tuples::Pairs(p)) => {
            assert!(p.p.len() == p.a1.len() && p.n.len() == p.a2.len(), "pair arrays differ in length")
        }
        None => {}
    }
    match t {
        None => RawTuples::NONE,
        Some(Tuples::Triplets(t)) => RawTuples {
            kind: TupleKind::TRIPLETS,
            a1: t.a.as_ptr(),
            p: t.p.as_ptr(),
            pos_len: t.a.len(),
            a2: std::ptr::null(),
            n: t.n.as_ptr(),
            neg_len: t.a.len(),
        },
        Some(Tuples::Pairs(p)) => RawTuples {
            kind: TupleKind::PAIRS,
            a1: p.a1.as_ptr(),
            p: p.p.as_ptr(),
            pos_len: p.a1.len(),
            a2: p.a2.as_ptr(),
            n: p.n.as_ptr(),
            neg_len: p.a2.len(),
        },
    }
}
