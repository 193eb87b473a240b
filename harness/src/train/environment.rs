//! Where a cell runs, and how much memory it used: the facts a record needs so that a number
//! can be traced to its machine and code.

use std::path::Path;
use std::process::Command;

use dmlbench_record::Environment;

/// The fingerprint of the sources this program was built from (see
/// `build-support/build_fingerprint.rs`), computed by the build script.
pub const BUILD: &str = env!("DMLBENCH_BUILD");

/// The CPU model, from `/proc/cpuinfo` ("unknown" elsewhere).
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// `git rev-parse HEAD` in `root`, with `-dirty` when tracked files changed; "unknown" outside
/// a git checkout.
pub fn git_revision(root: &Path) -> String {
    let run = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "HEAD"]) {
        Some(rev) => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty { format!("{rev}-dirty") } else { rev }
        }
        None => "unknown".into(),
    }
}

pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// The environment of this process.
pub fn capture(root: &Path, backend: &str, device: &str, threads: usize) -> Environment {
    Environment {
        cpu: cpu_model(),
        threads,
        backend: backend.to_string(),
        device: device.to_string(),
        gpu: None,
        git_revision: git_revision(root),
        dmlbench_version: env!("CARGO_PKG_VERSION").to_string(),
        dmlbench_build: BUILD.to_string(),
        os: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
        host: host_name(),
    }
}

/// Peak resident memory of this process in bytes (`VmHWM` in `/proc/self/status`); 0 where
/// the operating system does not report it that way.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_rss_grows_with_a_large_allocation() {
        if !Path::new("/proc/self/status").exists() {
            return; // not Linux: the figure is documented as 0
        }
        let before = peak_rss_bytes();
        assert!(before > 0);
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        assert!(peak_rss_bytes() >= before.max(64 << 20), "touching 64 MiB must raise the peak");
    }

    mod build_support {
        include!("../../../build-support/build_fingerprint.rs");

        pub fn fingerprint(root: &std::path::Path) -> String {
            build_fingerprint(root)
        }
    }

    #[test]
    fn the_build_fingerprint_is_this_checkouts_sources() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        assert_eq!(BUILD, build_support::fingerprint(root));
    }

    #[test]
    fn the_build_fingerprint_follows_relative_paths_and_bytes_only() {
        let write = |root: &Path, file: &str, text: &str| {
            let path = root.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        let tree = |root: &Path| {
            write(root, "Cargo.toml", "[workspace]");
            write(root, "harness/src/main.rs", "fn main() {}");
            write(root, "eval/src/lib.rs", "pub fn recall() {}");
            write(root, "eval/tests/recall.rs", "#[test] fn t() {}");
            write(root, "plugins/losses/spce/src/lib.rs", "// a plugin");
        };
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        tree(a.path());
        tree(b.path());
        let fingerprint = build_support::fingerprint(a.path());
        // Another checkout of the same sources.
        assert_eq!(build_support::fingerprint(b.path()), fingerprint);
        // By hand: FNV-1a 64 over "name\0bytes\0" of each file, sorted by name.
        let mut content = Vec::new();
        for (name, text) in [
            ("Cargo.toml", "[workspace]"),
            ("eval/src/lib.rs", "pub fn recall() {}"),
            ("harness/src/main.rs", "fn main() {}"),
        ] {
            content.extend_from_slice(format!("{name}\0{text}\0").as_bytes());
        }
        assert_eq!(fingerprint, dmlbench_record::fingerprint(&content));
        // Tests and plugins are not part of the build; a source byte is.
        write(b.path(), "eval/tests/recall.rs", "#[test] fn u() {}");
        write(b.path(), "plugins/losses/spce/src/lib.rs", "// changed");
        assert_eq!(build_support::fingerprint(b.path()), fingerprint);
        write(b.path(), "eval/src/lib.rs", "pub fn recall() { }");
        assert_ne!(build_support::fingerprint(b.path()), fingerprint);
    }

    #[test]
    fn git_revision_of_this_checkout_or_unknown() {
        let rev = git_revision(Path::new(env!("CARGO_MANIFEST_DIR")));
        assert!(rev == "unknown" || rev.trim_end_matches("-dirty").len() == 40, "{rev}");
    }
}
