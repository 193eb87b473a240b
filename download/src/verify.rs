//! SHA-256 verification: the whole hash, or the prefix torchvision puts in its file names
//! (`resnet50-0676ba61.pth`), or nothing when the user waived it explicitly.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::DownloadError;
use crate::progress::Progress;

/// What a file's SHA-256 must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// The whole hash, 64 lowercase hex digits.
    Sha256(String),
    /// The start of the hash, lowercase hex (torchvision's convention: the 8 digits after
    /// the last '-' of the file name, checked the same way by `torch.hub`).
    Sha256Prefix(String),
    /// Not verified: the user said so with `--no-verify`.
    Unverified,
}

impl Expected {
    /// A whole SHA-256 given as hex (either case, surrounding space ignored).
    pub fn sha256(hex: &str) -> Result<Expected, DownloadError> {
        let hex = hex.trim().to_ascii_lowercase();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DownloadError::Invalid(format!(
                "'{hex}' is not a SHA-256: expected 64 hexadecimal digits (as `sha256sum` prints)"
            )));
        }
        Ok(Expected::Sha256(hex))
    }

    /// Chooses the check of a file from what the user gave and what the catalogue knows:
    /// `--sha256` wins; `--no-verify` waives the check; otherwise the catalogue's checksum
    /// (a mirror or a local copy of the same file has the same hash); with none of these the
    /// file is refused, saying `why` the catalogue has no checksum.
    pub fn choose(
        sha256: Option<&str>,
        no_verify: bool,
        catalogue: Option<Expected>,
        what: &str,
        why: &str,
    ) -> Result<Expected, DownloadError> {
        match (sha256, no_verify) {
            (Some(_), true) => Err(DownloadError::Invalid("--sha256 and --no-verify contradict each other".into())),
            (Some(hex), false) => Expected::sha256(hex),
            (None, true) => Ok(Expected::Unverified),
            (None, false) => {
                catalogue.ok_or_else(|| DownloadError::NoChecksum { what: what.to_string(), why: why.to_string() })
            }
        }
    }

    /// Whether `actual` (lowercase hex) satisfies this expectation.
    pub fn matches(&self, actual: &str) -> bool {
        match self {
            Expected::Sha256(hex) => actual == hex,
            Expected::Sha256Prefix(prefix) => actual.starts_with(prefix.as_str()),
            Expected::Unverified => true,
        }
    }
}

/// The SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: &Path, progress: &dyn Progress) -> Result<String, DownloadError> {
    let mut file = File::open(path).map_err(|e| DownloadError::io(path, e))?;
    let len = file.metadata().map_err(|e| DownloadError::io(path, e))?.len();
    progress.start(&format!("verifying {}", path.display()), Some(len), 0);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| DownloadError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        progress.advance(n as u64);
    }
    progress.finish();
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a file the user gave (a local `--from`); a mismatch leaves it where it is.
pub fn verify_in_place(path: &Path, expected: &Expected, progress: &dyn Progress) -> Result<(), DownloadError> {
    check(path, expected, progress, false)
}

/// Checks a downloaded file; on a mismatch it is renamed to `<name>.bad` (replacing an older
/// one), so that it is kept for inspection but never used or resumed from.
pub fn verify_download(path: &Path, expected: &Expected, progress: &dyn Progress) -> Result<(), DownloadError> {
    check(path, expected, progress, true)
}

fn check(path: &Path, expected: &Expected, progress: &dyn Progress, move_aside: bool) -> Result<(), DownloadError> {
    if *expected == Expected::Unverified {
        return Ok(());
    }
    let actual = sha256_file(path, progress)?;
    if expected.matches(&actual) {
        return Ok(());
    }
    let moved_to = if move_aside {
        let bad = bad_path(path);
        std::fs::rename(path, &bad).map_err(|e| DownloadError::io(&bad, e))?;
        Some(bad)
    } else {
        None
    };
    let (expected, prefix) = match expected {
        Expected::Sha256(hex) => (hex.clone(), false),
        Expected::Sha256Prefix(hex) => (hex.clone(), true),
        Expected::Unverified => unreachable!("returned above"),
    };
    Err(DownloadError::Checksum { file: path.to_path_buf(), expected, prefix, actual, moved_to })
}

/// `NAME.part` → `NAME.bad`, anything else → `anything.bad`.
fn bad_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = name.strip_suffix(".part").unwrap_or(&name);
    path.with_file_name(format!("{stem}.bad"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // `printf abc | sha256sum`
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn hashes_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(sha256_file(&path, &()).unwrap(), ABC);
    }

    #[test]
    fn prefix_and_whole_hash() {
        assert!(Expected::sha256(&ABC.to_uppercase()).unwrap().matches(ABC));
        assert!(Expected::Sha256Prefix("ba7816bf".into()).matches(ABC));
        assert!(!Expected::Sha256Prefix("ba7816be".into()).matches(ABC));
        assert!(Expected::sha256("ba7816bf").is_err());
        assert!(Expected::sha256(&"g".repeat(64)).is_err());
    }

    #[test]
    fn choosing_the_check() {
        let known = Some(Expected::Sha256(ABC.into()));
        assert_eq!(Expected::choose(None, false, known.clone(), "x", "y").unwrap(), known.clone().unwrap());
        assert_eq!(Expected::choose(None, true, known.clone(), "x", "y").unwrap(), Expected::Unverified);
        let other = "0".repeat(64);
        assert_eq!(Expected::choose(Some(&other), false, known, "x", "y").unwrap(), Expected::Sha256(other.clone()));
        let refused = Expected::choose(None, false, None, "car_ims.tgz", "none is published").unwrap_err();
        let message = refused.to_string();
        assert!(message.contains("car_ims.tgz") && message.contains("none is published"), "{message}");
        assert!(message.contains("--sha256") && message.contains("--no-verify"), "{message}");
        assert!(matches!(Expected::choose(Some(&other), true, None, "x", "y"), Err(DownloadError::Invalid(_))));
    }

    #[test]
    fn a_bad_download_is_moved_aside_a_given_file_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("w.pth.part");
        std::fs::write(&part, b"abc").unwrap();
        let wrong = Expected::Sha256Prefix("00000000".into());
        let err = verify_in_place(&part, &wrong, &()).unwrap_err();
        assert!(part.exists());
        assert!(matches!(&err, DownloadError::Checksum { moved_to: None, .. }));
        let err = verify_download(&part, &wrong, &()).unwrap_err();
        assert!(!part.exists());
        assert_eq!(std::fs::read(dir.path().join("w.pth.bad")).unwrap(), b"abc");
        let message = err.to_string();
        assert!(message.contains("expected SHA-256 00000000…") && message.contains(ABC), "{message}");
        assert!(message.contains("w.pth.bad"), "{message}");
    }
}
