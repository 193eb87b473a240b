//! Shared parts of the parser property tests: strategies that damage a valid file the way
//! real files get damaged (a download cut short, a flipped bit, an editor's byte-order mark,
//! a hand edit that puts a 20-digit number where a count was), a guard that turns a hang
//! into a failure, and an allocator that refuses absurd requests.
//!
//! The harness's experiment-file property includes this file by path, so that both crates
//! damage files the same way.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::Index;

/// The largest single allocation a parser may make while reading these small inputs. A
/// parser that sizes a buffer from a header field it has not checked asks for far more, and
/// [`CappedAllocator`] refuses it, so the test aborts even on a machine whose overcommit
/// would have handed out the memory lazily.
pub const ALLOCATION_LIMIT: usize = 256 << 20;

/// The system allocator, refusing any single request above [`ALLOCATION_LIMIT`]. A refused
/// request ends the test process with "memory allocation of N bytes failed".
pub struct CappedAllocator;

// SAFETY: every call is forwarded unchanged to the system allocator, or answered with null,
// which `GlobalAlloc` allows for any request.
unsafe impl GlobalAlloc for CappedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_LIMIT {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_LIMIT {
            return std::ptr::null_mut();
        }
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > ALLOCATION_LIMIT {
            return std::ptr::null_mut();
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// How long one parse may take. Every input here is a few kilobytes and parses in well
/// under a millisecond; a parse still running after this long is looping.
pub const TIME_LIMIT: Duration = Duration::from_secs(10);

/// Runs `f` on a thread of its own and returns its result; a panic in `f` is re-raised here
/// (so proptest records the input and shrinks it), and a call that has not returned within
/// [`TIME_LIMIT`] is a failure.
pub fn finishes<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(TIME_LIMIT) {
        Ok(value) => value,
        Err(RecvTimeoutError::Timeout) => panic!("the parser did not return within {TIME_LIMIT:?}"),
        Err(RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the worker returned without sending its result"),
        },
    }
}

/// Numbers that break careless arithmetic or parsing where a count, id, size or dimension
/// is expected: zero, negatives, the edges of every integer width, floats out of range,
/// notations that look like numbers.
pub const EXTREME_NUMBERS: &[&str] = &[
    "0",
    "-1",
    "-0",
    "255",
    "65536",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "340282366920938463463374607431768211456",
    "1e308",
    "1e999",
    "NaN",
    "inf",
    "0x10",
    "1_000",
];

/// Words that break careless arithmetic where a binary header holds a size or a count.
pub const EXTREME_WORDS: &[u32] = &[0, 1, 3, 0x7F, 0x80, 0xFF, 0xFFFF, 0x1_0000, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF];

/// Byte-order marks an editor may put first: UTF-8, UTF-16 LE and BE.
pub const BOMS: &[&[u8]] = &[b"\xEF\xBB\xBF", b"\xFF\xFE", b"\xFE\xFF"];

/// Short byte sequences that matter to text parsers: line ends, NUL, bytes that are not
/// UTF-8, separators, path tricks.
pub const SPECIAL_BYTES: &[&[u8]] = &[
    b"\n",
    b"\r",
    b"\r\n",
    b"\0",
    b"\xFF",
    b"\xC3",
    b"\x80",
    b" ",
    b"\t",
    b"\xE2\x80\xA8",
    b"..",
    b"/",
    b"#",
    b",",
    b"(",
    b")",
    b"[",
    b"]",
    b"{",
    b"}",
    b"\"",
    b"'",
    b":",
    b"-",
];

/// One change to a file.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Keep only the bytes before a point (a download cut short).
    Truncate(Index),
    /// XOR one byte with a non-zero mask.
    Flip(Index, u8),
    /// Insert bytes at a point.
    Insert(Index, Vec<u8>),
    /// Remove up to this many bytes from a point.
    Remove(Index, usize),
    /// Copy up to this many bytes from one point to another (a repeated line or element).
    Duplicate(Index, usize, Index),
    /// Replace one run of ASCII digits with another number.
    Number(Index, String),
    /// Overwrite four bytes with a 32-bit word, little-endian when true.
    Word(Index, u32, bool),
    /// Put a byte-order mark first.
    Bom(&'static [u8]),
    /// Insert this many copies of an opening bracket (deep nesting).
    Nest(Index, u8, usize),
}

/// Any one [`Mutation`].
pub fn mutation() -> impl Strategy<Value = Mutation> {
    let number = prop_oneof![
        prop::sample::select(EXTREME_NUMBERS).prop_map(str::to_string),
        any::<i64>().prop_map(|n| n.to_string()),
    ];
    let word = prop_oneof![prop::sample::select(EXTREME_WORDS), any::<u32>()];
    let inserted = prop_oneof![
        prop::collection::vec(any::<u8>(), 1..16),
        prop::sample::select(SPECIAL_BYTES).prop_map(<[u8]>::to_vec),
        prop::sample::select(EXTREME_NUMBERS).prop_map(|s| s.as_bytes().to_vec()),
    ];
    prop_oneof![
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), 1..=255u8).prop_map(|(at, mask)| Mutation::Flip(at, mask)),
        1 => (any::<Index>(), inserted).prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        1 => (any::<Index>(), 1..64usize).prop_map(|(at, n)| Mutation::Remove(at, n)),
        1 => (any::<Index>(), 1..64usize, any::<Index>()).prop_map(|(from, n, to)| Mutation::Duplicate(from, n, to)),
        3 => (any::<Index>(), number).prop_map(|(at, n)| Mutation::Number(at, n)),
        2 => (any::<Index>(), word, any::<bool>()).prop_map(|(at, w, little)| Mutation::Word(at, w, little)),
        1 => prop::sample::select(BOMS).prop_map(Mutation::Bom),
        1 => (any::<Index>(), prop::sample::select(&b"([{"[..]), 1..400usize)
            .prop_map(|(at, b, n)| Mutation::Nest(at, b, n)),
    ]
}

/// A position in `0..=len` (a point between bytes).
fn point(at: &Index, len: usize) -> usize {
    at.index(len + 1)
}

/// Applies one mutation to `bytes`.
pub fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    match m {
        Mutation::Truncate(at) => bytes.truncate(point(at, len)),
        Mutation::Flip(at, mask) => {
            if len > 0 {
                bytes[at.index(len)] ^= mask;
            }
        }
        Mutation::Insert(at, inserted) => {
            let p = point(at, len);
            bytes.splice(p..p, inserted.iter().copied());
        }
        Mutation::Remove(at, n) => {
            let p = point(at, len);
            bytes.drain(p..(p + n).min(len));
        }
        Mutation::Duplicate(from, n, to) => {
            let p = point(from, len);
            let copy = bytes[p..(p + n).min(len)].to_vec();
            let q = point(to, len);
            bytes.splice(q..q, copy);
        }
        Mutation::Number(at, number) => {
            let runs = digit_runs(bytes);
            if !runs.is_empty() {
                let (start, end) = runs[at.index(runs.len())];
                bytes.splice(start..end, number.bytes());
            }
        }
        Mutation::Word(at, word, little) => {
            if len >= 4 {
                // Aligned, as the size and count fields of binary formats are.
                let p = at.index(len / 4) * 4;
                let b = if *little { word.to_le_bytes() } else { word.to_be_bytes() };
                bytes[p..p + 4].copy_from_slice(&b);
            }
        }
        Mutation::Bom(bom) => {
            bytes.splice(0..0, bom.iter().copied());
        }
        Mutation::Nest(at, open, n) => {
            let p = point(at, len);
            bytes.splice(p..p, std::iter::repeat_n(*open, *n));
        }
    }
}

/// The (start, end) of every run of ASCII digits.
fn digit_runs(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            runs.push((start, i));
        } else {
            i += 1;
        }
    }
    runs
}

/// `seed` with one run of digits replaced by one of [`EXTREME_NUMBERS`], for every run and
/// every number: a sweep of every numeric field of a text file, which random mutations reach
/// only now and then (most of them break the syntax around the field as well).
pub fn every_number_replaced(seed: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (start, end) in digit_runs(seed) {
        for number in EXTREME_NUMBERS {
            let mut bytes = seed.to_vec();
            bytes.splice(start..end, number.bytes());
            out.push(bytes);
        }
    }
    out
}

/// `seed` with one aligned 32-bit word replaced by one of [`EXTREME_WORDS`], little-endian,
/// for every word and every value: the binary counterpart of [`every_number_replaced`].
pub fn every_word_replaced(seed: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for at in (0..seed.len() / 4).map(|k| k * 4) {
        for word in EXTREME_WORDS {
            let mut bytes = seed.to_vec();
            bytes[at..at + 4].copy_from_slice(&word.to_le_bytes());
            out.push(bytes);
        }
    }
    out
}

/// One of `seeds`, changed by one to five mutations.
pub fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (prop::sample::select(seeds), prop::collection::vec(mutation(), 1..=5)).prop_map(|(mut bytes, mutations)| {
        for m in &mutations {
            apply(&mut bytes, m);
        }
        bytes
    })
}

/// Up to `max` random bytes.
pub fn random_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

/// Random bytes, or a mutated seed, in equal measure.
pub fn damaged(seeds: Vec<Vec<u8>>, max_random: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![random_bytes(max_random), mutated(seeds)]
}

/// The configuration of a property: `cases` inputs unless `PROPTEST_CASES` asks for another
/// number (for a longer run by hand), and nothing written to the source tree (a failure is
/// reported with its shrunk input; the fix comes with a plain regression test next to the
/// parser).
pub fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(cases);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}
