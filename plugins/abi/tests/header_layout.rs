//! `include/dmlbench.h` declares, for C and C++ plugins, the same types and constants as
//! `src/lib.rs`. The header is written by hand, so nothing but this test keeps the two from
//! drifting apart; and a drift is silent: both sides still compile, and a plugin built against
//! the header reads and writes the wrong bytes of the host's structs.
//!
//! What is guaranteed, on the target the tests run on:
//!
//! - Every `#[repr(C)]` struct has, in C, the same size and alignment, and every field the same
//!   offset and size. The values come from the compiled Rust types (`size_of`, `align_of`,
//!   `offset_of!`) and are checked by the system C compiler as `_Static_assert`s against the
//!   header itself, so neither side's numbers are ever written down by hand.
//! - The `#[repr(transparent)]` integer newtypes (`Status`, `Kind`, `TupleKind`) have the size,
//!   alignment and signedness of their C typedefs.
//! - Every constant the header defines has the value of its Rust counterpart, and the header
//!   names the entry symbol and ABI version of the crate.
//! - No field, struct or constant is left out on either side. The field list of each struct is
//!   written once below. On the Rust side an exhaustive destructuring pattern makes a missing
//!   field a compile error, and the listed fields must tile the struct exactly (no gap larger
//!   than alignment padding, tail padding included). On the C side the header's struct bodies
//!   are read and their field names must be the listed ones, in order. Layout checks alone
//!   would miss a new field put into existing padding (the four bytes after
//!   `Descriptor::kind`, for example), which changes no size and no offset.
//!
//! Not covered: the parameter and return types of function pointers, and whether a field of
//! the same size is an integer, a float or a pointer on both sides (`uint64_t` against
//! `double`). Those still need a reader's eye when the header changes.

use std::fs;
use std::io::ErrorKind;
use std::mem::{align_of, offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dmlbench_abi::{
    ABI_MAJOR, ABI_MINOR, Batch, CreateParams, Descriptor, ENTRY_SYMBOL, Entry, Kind, LossOutput, MineOutput,
    References, Sink, StatSink, Status, TupleKind, TupleSink, Tuples, VTable, capability,
};

/// One field of a `#[repr(C)]` struct, as the Rust compiler laid it out.
struct Field {
    name: &'static str,
    offset: usize,
    size: usize,
    align: usize,
}

/// One `#[repr(C)]` struct and the name of its C typedef.
struct Struct {
    rust: &'static str,
    c: &'static str,
    size: usize,
    align: usize,
    fields: Vec<Field>,
}

/// One `#[repr(transparent)]` integer newtype and the name of its C typedef.
struct Newtype {
    rust: &'static str,
    c: &'static str,
    size: usize,
    align: usize,
    signed: bool,
}

/// Size and alignment of a field's type, reached through an accessor so that the list below
/// names each field once and never repeats its type.
fn field_type<S, F>(_: fn(&S) -> &F) -> (usize, usize) {
    (size_of::<F>(), align_of::<F>())
}

/// The layout of struct `$rust` (C typedef `$c`) with its fields in declaration order.
macro_rules! layout {
    ($rust:ident as $c:literal { $($field:ident),+ $(,)? }) => {{
        // No `..`: this stops compiling as soon as the Rust struct has a field the list lacks.
        // Inside a macro rustc words that error "pattern requires `..` due to inaccessible
        // fields", although the field is public.
        let _exhaustive = |value: $rust| {
            let $rust { $($field: _),+ } = value;
        };
        Struct {
            rust: stringify!($rust),
            c: $c,
            size: size_of::<$rust>(),
            align: align_of::<$rust>(),
            fields: vec![$({
                let (size, align) = field_type(|s: &$rust| &s.$field);
                Field { name: stringify!($field), offset: offset_of!($rust, $field), size, align }
            }),+],
        }
    }};
}

/// The layout of newtype `$rust` (C typedef `$c`).
macro_rules! newtype {
    ($rust:ident as $c:literal) => {
        Newtype {
            rust: stringify!($rust),
            c: $c,
            size: size_of::<$rust>(),
            align: align_of::<$rust>(),
            // Only a signed integer can go below zero; this holds whatever the inner type is.
            signed: $rust(0).0.checked_sub(1).is_some(),
        }
    };
}

fn structs() -> Vec<Struct> {
    vec![
        layout!(Sink as "dmlbench_sink" { ctx, write }),
        layout!(StatSink as "dmlbench_stat_sink" { ctx, record }),
        layout!(Entry as "dmlbench_entry" {
            struct_size, abi_major, abi_minor, sdk_version, plugin_count, plugin_descriptor,
        }),
        layout!(Descriptor as "dmlbench_descriptor" {
            struct_size, kind, capabilities, id, name, version, summary, default_config, create, vtable,
            get_extension,
        }),
        layout!(CreateParams as "dmlbench_create_params" {
            struct_size, config, config_len, embedding_dim, num_classes, seed, base_lr,
        }),
        layout!(VTable as "dmlbench_vtable" {
            struct_size, destroy, forward_backward, step, mine, save_state, load_state,
        }),
        layout!(Tuples as "dmlbench_tuples" { kind, a1, p, pos_len, a2, n, neg_len }),
        layout!(Batch as "dmlbench_batch" {
            struct_size, n, d, embeddings, embeddings_len, labels, labels_len, tuples, references,
        }),
        layout!(References as "dmlbench_references" {
            struct_size, n, embeddings, embeddings_len, labels, labels_len, self_rows, self_rows_len,
        }),
        layout!(LossOutput as "dmlbench_loss_output" { struct_size, loss, grad, grad_len, stats }),
        layout!(TupleSink as "dmlbench_tuple_sink" { ctx, emit }),
        layout!(MineOutput as "dmlbench_mine_output" { struct_size, tuples, stats }),
    ]
}

fn newtypes() -> Vec<Newtype> {
    vec![
        newtype!(Status as "dmlbench_status"),
        newtype!(Kind as "dmlbench_kind"),
        newtype!(TupleKind as "dmlbench_tuple_kind"),
    ]
}

/// Every `DMLBENCH_*` macro of the header with the value of its Rust counterpart.
fn constants() -> Vec<(&'static str, i128)> {
    vec![
        ("DMLBENCH_ABI_MAJOR", ABI_MAJOR.into()),
        ("DMLBENCH_ABI_MINOR", ABI_MINOR.into()),
        ("DMLBENCH_OK", Status::OK.0.into()),
        ("DMLBENCH_BAD_CONFIG", Status::BAD_CONFIG.0.into()),
        ("DMLBENCH_BAD_INPUT", Status::BAD_INPUT.0.into()),
        ("DMLBENCH_FAILED", Status::FAILED.0.into()),
        ("DMLBENCH_PANICKED", Status::PANICKED.0.into()),
        ("DMLBENCH_UNSUPPORTED", Status::UNSUPPORTED.0.into()),
        ("DMLBENCH_KIND_LOSS", Kind::LOSS.0.into()),
        ("DMLBENCH_KIND_MINER", Kind::MINER.0.into()),
        ("DMLBENCH_CAP_ACCEPTS_PAIRS", capability::ACCEPTS_PAIRS.into()),
        ("DMLBENCH_CAP_ACCEPTS_TRIPLETS", capability::ACCEPTS_TRIPLETS.into()),
        ("DMLBENCH_CAP_NEEDS_TUPLES", capability::NEEDS_TUPLES.into()),
        ("DMLBENCH_CAP_OWNS_PARAMETERS", capability::OWNS_PARAMETERS.into()),
        ("DMLBENCH_CAP_SUPPORTS_STATE", capability::SUPPORTS_STATE.into()),
        ("DMLBENCH_CAP_PRODUCES_PAIRS", capability::PRODUCES_PAIRS.into()),
        ("DMLBENCH_CAP_PRODUCES_TRIPLETS", capability::PRODUCES_TRIPLETS.into()),
        ("DMLBENCH_CAP_ACCEPTS_REFERENCES", capability::ACCEPTS_REFERENCES.into()),
        ("DMLBENCH_CAP_PIECEWISE_SMOOTH", capability::PIECEWISE_SMOOTH.into()),
        ("DMLBENCH_TUPLES_NONE", TupleKind::NONE.0.into()),
        ("DMLBENCH_TUPLES_TRIPLETS", TupleKind::TRIPLETS.0.into()),
        ("DMLBENCH_TUPLES_PAIRS", TupleKind::PAIRS.0.into()),
    ]
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn header() -> String {
    fs::read_to_string(crate_dir().join("include/dmlbench.h")).unwrap()
}

fn round_up(n: usize, align: usize) -> usize {
    n.next_multiple_of(align)
}

#[test]
fn listed_fields_tile_each_rust_struct() {
    for s in structs() {
        let mut fields: Vec<&Field> = s.fields.iter().collect();
        fields.sort_by_key(|f| f.offset);
        let mut end = 0;
        for f in fields {
            // repr(C) pads only up to the next field's alignment; a larger gap is a field
            // that is missing from the list.
            let expected = round_up(end, f.align);
            assert_eq!(
                f.offset, expected,
                "{}::{} starts at {}, but the listed fields before it end at {end}",
                s.rust, f.name, f.offset
            );
            end = f.offset + f.size;
        }
        assert_eq!(
            round_up(end, s.align),
            s.size,
            "the listed fields of {} end at {end}, short of size_of = {}",
            s.rust,
            s.size
        );
    }
}

#[test]
fn capability_list_is_complete() {
    // capability::ALL grows with every new flag, so a flag missing from `constants` shows here.
    let listed =
        constants().iter().filter(|(name, _)| name.starts_with("DMLBENCH_CAP_")).fold(0, |all, (_, value)| all | value);
    assert_eq!(listed, i128::from(capability::ALL), "a capability flag is missing from the header or from this test");
}

#[test]
fn every_rust_type_is_listed() {
    let lib = fs::read_to_string(crate_dir().join("src/lib.rs")).unwrap();
    let mut in_lib: Vec<&str> =
        lib.lines().filter_map(|l| l.trim().strip_prefix("pub struct ")).map(leading_identifier).collect();
    let mut listed: Vec<&str> = structs().iter().map(|s| s.rust).chain(newtypes().iter().map(|n| n.rust)).collect();
    in_lib.sort();
    listed.sort();
    assert_eq!(in_lib, listed, "src/lib.rs declares a type this test does not check");
}

#[test]
fn header_declares_the_listed_structs_fields_and_constants() {
    let header = header();
    let code = strip_comments(&header);

    let declared = header_structs(&code);
    let mut declared_names: Vec<&str> = declared.iter().map(|(name, _)| name.as_str()).collect();
    let mut listed_names: Vec<&str> = structs().iter().map(|s| s.c).collect();
    declared_names.sort();
    listed_names.sort();
    assert_eq!(declared_names, listed_names, "the header's structs and this test's list differ");
    for s in structs() {
        let (_, fields) = declared.iter().find(|(name, _)| name == s.c).unwrap();
        let listed: Vec<&str> = s.fields.iter().map(|f| f.name).collect();
        assert_eq!(fields, &listed, "fields of {} in the header against fields of {} in Rust", s.c, s.rust);
    }

    let mut typedefs: Vec<&str> = code
        .lines()
        .filter(|l| l.starts_with("typedef ") && !l.starts_with("typedef struct "))
        .map(|l| declared_name(l.trim().trim_end_matches(';')))
        .collect();
    let mut listed: Vec<&str> = newtypes().iter().map(|n| n.c).collect();
    typedefs.sort();
    listed.sort();
    assert_eq!(typedefs, listed, "the header's typedefs of non-structs and this test's newtypes differ");

    let mut macros: Vec<&str> = code
        .lines()
        .filter_map(|l| l.trim().strip_prefix("#define "))
        .map(leading_identifier)
        .filter(|name| *name != "DMLBENCH_H")
        .collect();
    let mut listed: Vec<&str> = constants().iter().map(|(name, _)| *name).collect();
    macros.sort();
    listed.sort();
    assert_eq!(macros, listed, "the header's constants and this test's list differ");

    // The entry symbol and version appear only in the header's comment, so they are checked as
    // text.
    assert_eq!(ENTRY_SYMBOL, format!("dmlbench_plugin_entry_v{ABI_MAJOR}"));
    assert!(
        header.contains(&format!(" *{ENTRY_SYMBOL}(void);")),
        "the header does not name the entry symbol {ENTRY_SYMBOL}"
    );
    assert!(
        header.contains(&format!("ABI, version {ABI_MAJOR}.{ABI_MINOR},")),
        "the header does not say it describes ABI version {ABI_MAJOR}.{ABI_MINOR}"
    );
}

#[test]
fn c_compiler_agrees_with_rust_layout() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("header_layout.c");
    fs::write(&source, c_assertions()).unwrap();
    let (compiler, output) = compile(&source);
    assert!(
        output.status.success(),
        "include/dmlbench.h disagrees with src/lib.rs; {compiler} says:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// C source that compiles only if the header matches every Rust size, alignment, offset and
/// constant value.
fn c_assertions() -> String {
    let mut c = String::from("#include <stddef.h>\n#include \"dmlbench.h\"\n\n");
    for s in structs() {
        let (rust, t) = (s.rust, s.c);
        assert_size_and_align(&mut c, rust, t, s.size, s.align);
        for f in &s.fields {
            let (name, offset, size) = (f.name, f.offset, f.size);
            assert_c(
                &mut c,
                format!("offsetof({t}, {name}) == {offset}"),
                format!("offsetof({t}, {name}) must equal offset_of!({rust}, {name}) = {offset}"),
            );
            assert_c(
                &mut c,
                format!("sizeof((({t} *)0)->{name}) == {size}"),
                format!("sizeof({t}.{name}) must equal the size of {rust}::{name} = {size}"),
            );
        }
    }
    for n in newtypes() {
        let (rust, t) = (n.rust, n.c);
        assert_size_and_align(&mut c, rust, t, n.size, n.align);
        // Compared with 1 rather than 0 so that compilers do not warn about an unsigned `< 0`.
        let signed = if n.signed { 1 } else { 0 };
        let sign = if n.signed { "signed" } else { "unsigned" };
        assert_c(&mut c, format!("(({t})-1 < ({t})1) == {signed}"), format!("{t} must be {sign}, as {rust}"));
    }
    for (name, value) in constants() {
        let literal = if value < 0 { format!("({value}ll)") } else { format!("{value}ull") };
        assert_c(&mut c, format!("{name} == {literal}"), format!("{name} must equal {value}, as in src/lib.rs"));
    }
    c
}

fn assert_size_and_align(c: &mut String, rust: &str, t: &str, size: usize, align: usize) {
    assert_c(c, format!("sizeof({t}) == {size}"), format!("sizeof({t}) must equal size_of::<{rust}>() = {size}"));
    assert_c(
        c,
        format!("_Alignof({t}) == {align}"),
        format!("_Alignof({t}) must equal align_of::<{rust}>() = {align}"),
    );
}

fn assert_c(c: &mut String, condition: String, message: String) {
    c.push_str(&format!("_Static_assert({condition}, \"{message}\");\n"));
}

/// Compiles `source` against the header with `$CC`, or else the first of cc, gcc and clang
/// found. Without any compiler the test fails: passing would claim a check that never ran.
fn compile(source: &Path) -> (String, Output) {
    let candidates: Vec<String> = match std::env::var("CC") {
        Ok(cc) => vec![cc],
        Err(_) => vec!["cc".into(), "gcc".into(), "clang".into()],
    };
    for compiler in &candidates {
        let result = Command::new(compiler)
            .args(["-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-fsyntax-only", "-I"])
            .arg(crate_dir().join("include"))
            .arg(source)
            .output();
        match result {
            Ok(output) => return (compiler.clone(), output),
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => panic!("cannot run the C compiler '{compiler}': {e}"),
        }
    }
    panic!(
        "no C compiler found (tried {}); one is needed to check include/dmlbench.h against src/lib.rs (set CC)",
        candidates.join(", ")
    );
}

/// `text` without `/* */` and `//` comments, which may mention names that are not declarations.
fn strip_comments(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("/*").into_iter().chain(rest.find("//")).min() {
        out.push_str(&rest[..start]);
        let comment = &rest[start..];
        let len = if comment.starts_with("/*") {
            comment.find("*/").expect("unterminated comment in the header") + 2
        } else {
            comment.find('\n').unwrap_or(comment.len())
        };
        rest = &comment[len..];
    }
    out.push_str(rest);
    out
}

/// Each `typedef struct NAME { ... }` of the header with its field names in order. The header
/// puts one field in each declaration and nests no braces inside a struct, which is all this
/// reader handles.
fn header_structs(code: &str) -> Vec<(String, Vec<String>)> {
    let mut structs = Vec::new();
    for piece in code.split("typedef struct ").skip(1) {
        let name = leading_identifier(piece).to_string();
        let open = piece.find('{').expect("struct without a body");
        let close = piece.find('}').expect("struct without a closing brace");
        let fields = piece[open + 1..close]
            .split(';')
            .map(str::trim)
            .filter(|declaration| !declaration.is_empty())
            .map(|declaration| declared_name(declaration).to_string())
            .collect();
        structs.push((name, fields));
    }
    structs
}

/// The name a field declaration declares: `p` in `const uint32_t *p`, `write` in
/// `void (*write)(void *ctx, ...)`.
fn declared_name(declaration: &str) -> &str {
    match declaration.find("(*") {
        Some(start) => leading_identifier(&declaration[start + 2..]),
        None => trailing_identifier(declaration),
    }
}

fn is_identifier_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn leading_identifier(text: &str) -> &str {
    let text = text.trim_start();
    &text[..text.find(|c| !is_identifier_char(c)).unwrap_or(text.len())]
}

fn trailing_identifier(text: &str) -> &str {
    let text = text.trim_end();
    &text[text.rfind(|c| !is_identifier_char(c)).map_or(0, |i| i + 1)..]
}
