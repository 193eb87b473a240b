// The fingerprint of the dmlbench build (`include!`d by the harness's build script, which
// passes it to the compiler as `DMLBENCH_BUILD`, and by the harness's tests, which compute it
// again).
//
// It hashes what is compiled into the `dmlbench` binary: the workspace manifest, the shared
// build-script code, and each crate's manifest, build script and `src/`; every file's path
// relative to the workspace root, then its bytes, with FNV-1a 64 (`dmlbench_record::fingerprint`).
// Relative paths and file contents only, so a fresh clone on another machine gets the same
// value, like a plugin's code fingerprint. Tests, benchmarks and `Cargo.lock` are left out: a
// test file changes nothing in the binary, and the lock file changes whenever a plugin crate
// is added, which would make every record of a pull request that adds a loss look as if it
// ran another harness. No `use` items: the file is included next to others that have theirs.

/// The workspace crates compiled into `dmlbench`, relative to the workspace root.
const BUILD_CRATES: [&str; 10] = [
    "harness",
    "host",
    "eval",
    "record",
    "leaderboard",
    "models",
    "datasets",
    "plugins/abi",
    "plugins/tuples",
    "plugins/testkit",
];

/// The files and directories the fingerprint reads, under the workspace `root`.
fn build_inputs(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut inputs = vec![root.join("Cargo.toml"), root.join("build-support")];
    for krate in BUILD_CRATES {
        let dir = root.join(krate);
        inputs.extend([dir.join("Cargo.toml"), dir.join("build.rs"), dir.join("src")]);
    }
    inputs
}

/// `path` if it is a file, else every file under it; nothing when it does not exist.
fn build_files(path: &std::path::Path, files: &mut Vec<std::path::PathBuf>) {
    if path.is_file() {
        files.push(path.to_path_buf());
        return;
    }
    let Ok(entries) = std::fs::read_dir(path) else { return };
    for entry in entries.flatten() {
        build_files(&entry.path(), files);
    }
}

/// The fingerprint of the sources under the workspace `root`: 16 hex digits.
fn build_fingerprint(root: &std::path::Path) -> String {
    let mut files = Vec::new();
    for input in build_inputs(root) {
        build_files(&input, &mut files);
    }
    let mut names: Vec<(String, std::path::PathBuf)> = files
        .into_iter()
        .map(|file| {
            // '/' on every platform, so that Windows and Linux checkouts agree.
            let relative = file.strip_prefix(root).unwrap_or(&file);
            let name: Vec<String> = relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            (name.join("/"), file)
        })
        .collect();
    names.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for (name, file) in &names {
        feed(name.as_bytes());
        feed(&[0]);
        feed(&std::fs::read(file).unwrap_or_default());
        feed(&[0]);
    }
    format!("{hash:016x}")
}
