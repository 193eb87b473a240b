//! Keeping annotation paths inside the dataset root.
//!
//! An annotation file is data from the internet: a path like `../../etc/passwd`, an
//! absolute path or a symlink that points out of the root must not make the loader read
//! files elsewhere. [`RootGuard`] rejects the first two lexically and resolves symlinks of
//! files that exist. Parent directories are resolved once each and cached, so checking the
//! 120,053 SOP paths costs one `lstat` per file plus one `realpath` per directory.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use crate::error::DatasetError;

/// Checks paths found in annotation files against one dataset root.
pub(crate) struct RootGuard {
    root: PathBuf,
    canonical_root: PathBuf,
    /// Parent directory (relative) → whether its real path is inside the root.
    directories: HashMap<PathBuf, Result<(), PathBuf>>,
}

impl RootGuard {
    pub fn new(root: &Path) -> Result<Self, DatasetError> {
        let canonical_root = root.canonicalize().map_err(|e| DatasetError::io(root, e))?;
        Ok(RootGuard { root: root.to_path_buf(), canonical_root, directories: HashMap::new() })
    }

    /// Checks `text` (a path as written in `file` at `line`) and returns it as a clean
    /// relative path (`.` components dropped, `\` kept as an ordinary character on Unix).
    pub fn check(&mut self, text: &str, file: &Path, line: Option<usize>) -> Result<PathBuf, DatasetError> {
        self.check_in(Path::new(""), text, file, line)
    }

    /// Like [`RootGuard::check`] for a path that the format places under `base` (CUB's
    /// `images/`): `text` itself must be relative and free of `..`; the result is
    /// `base/text`.
    pub fn check_in(
        &mut self,
        base: &Path,
        text: &str,
        file: &Path,
        line: Option<usize>,
    ) -> Result<PathBuf, DatasetError> {
        let fail = |why: String| DatasetError::format(file, line, why);
        if text.is_empty() {
            return Err(fail("empty image path".into()));
        }
        let mut clean = base.to_path_buf();
        for component in Path::new(text).components() {
            match component {
                Component::Normal(part) => clean.push(part),
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(fail(format!("path '{text}' contains '..' and could escape the dataset root")));
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(fail(format!(
                        "path '{text}' is absolute; annotation paths must be relative to the dataset root"
                    )));
                }
            }
        }
        // Windows drive letters are ordinary characters on Unix; reject them anyway so a
        // dataset prepared on Windows fails clearly instead of as a missing file.
        if text.len() >= 2 && text.as_bytes()[1] == b':' && text.as_bytes()[0].is_ascii_alphabetic() {
            return Err(fail(format!("path '{text}' is absolute (drive letter)")));
        }
        if clean == base {
            return Err(fail(format!("path '{text}' names the dataset root, not an image")));
        }

        if let Some(parent) = clean.parent().filter(|p| !p.as_os_str().is_empty()) {
            let verdict = match self.directories.get(parent) {
                Some(v) => v.clone(),
                None => {
                    let v = self.resolve(parent);
                    self.directories.insert(parent.to_path_buf(), v.clone());
                    v
                }
            };
            if let Err(target) = verdict {
                return Err(fail(format!(
                    "path '{text}' leads through a symlink to {}, outside the dataset root",
                    target.display()
                )));
            }
        }
        let full = self.root.join(&clean);
        if let Ok(meta) = std::fs::symlink_metadata(&full)
            && meta.file_type().is_symlink()
            && let Err(target) = self.resolve(&clean)
        {
            return Err(fail(format!("path '{text}' is a symlink to {}, outside the dataset root", target.display())));
        }
        Ok(clean)
    }

    /// Whether the real path of `relative` is inside the root. A path that does not exist
    /// passes: it is reported as missing when the image is read.
    fn resolve(&self, relative: &Path) -> Result<(), PathBuf> {
        match self.root.join(relative).canonicalize() {
            Ok(real) if !real.starts_with(&self.canonical_root) => Err(real),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_parent_absolute_and_drive_paths() {
        let dir = tempfile::tempdir().unwrap();
        let mut guard = RootGuard::new(dir.path()).unwrap();
        let f = Path::new("list.txt");
        for bad in ["../x.jpg", "a/../../x.jpg", "/etc/passwd", "C:/x.jpg", "", "."] {
            let e = guard.check(bad, f, Some(3)).unwrap_err().to_string();
            assert!(e.starts_with("list.txt:3: "), "{bad}: {e}");
        }
        assert_eq!(guard.check("./a/b.jpg", f, None).unwrap(), Path::new("a/b.jpg"));
    }

    #[cfg(unix)]
    #[test]
    fn rejects_symlinks_out_of_the_root_but_not_inside() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.jpg"), b"x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("imgs")).unwrap();
        std::fs::write(root.join("imgs/real.jpg"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.jpg"), root.join("imgs/out.jpg")).unwrap();
        std::os::unix::fs::symlink(root.join("imgs/real.jpg"), root.join("imgs/in.jpg")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("outdir")).unwrap();

        let mut guard = RootGuard::new(root).unwrap();
        let f = Path::new("list.txt");
        assert!(guard.check("imgs/in.jpg", f, Some(1)).is_ok());
        assert!(guard.check("imgs/missing.jpg", f, Some(1)).is_ok());
        let e = guard.check("imgs/out.jpg", f, Some(2)).unwrap_err().to_string();
        assert!(e.contains("list.txt:2") && e.contains("outside the dataset root"), "{e}");
        let e = guard.check("outdir/secret.jpg", f, Some(4)).unwrap_err().to_string();
        assert!(e.contains("list.txt:4") && e.contains("symlink"), "{e}");
    }
}
