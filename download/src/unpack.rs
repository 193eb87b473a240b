//! Unpacking a `.tgz` or `.zip` archive safely, all or nothing.
//!
//! Members are written into a temporary directory beside the destination and the result is
//! renamed into place only when every member was read whole; on any failure the temporary
//! directory is removed and the destination was never touched. A member whose path is
//! absolute or climbs out with `..` is refused before anything is written, as are links
//! (none of the datasets has one, and a link is how a later member escapes) and special
//! files.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

use crate::error::DownloadError;
use crate::progress::Progress;

/// The two archive formats the datasets come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// A gzip-compressed tar file (`.tgz`, `.tar.gz`).
    TarGz,
    /// A zip file.
    Zip,
}

impl ArchiveKind {
    /// Recognises an archive by its first bytes, whatever its name (a mirror may rename it).
    pub fn sniff(path: &Path) -> Result<ArchiveKind, DownloadError> {
        let mut magic = [0u8; 4];
        let mut file = File::open(path).map_err(|e| DownloadError::io(path, e))?;
        let n = read_up_to(&mut file, &mut magic).map_err(|e| DownloadError::io(path, e))?;
        match &magic[..n] {
            [0x1f, 0x8b, ..] => Ok(ArchiveKind::TarGz),
            [b'P', b'K', 3, 4] | [b'P', b'K', 5, 6] => Ok(ArchiveKind::Zip),
            _ => Err(DownloadError::Archive {
                archive: path.to_path_buf(),
                message: "neither a gzip-compressed tar file nor a zip file (an HTML error page saved \
                          under the archive's name looks like this too)"
                    .into(),
            }),
        }
    }
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Where an archive's content goes in the destination directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// The archive holds the dataset's directory itself (`CUB_200_2011.tgz` holds
    /// `CUB_200_2011/`): that directory is moved into place, other top-level members (CUB's
    /// stray `attributes.txt`) are dropped.
    Top(String),
    /// The archive holds the dataset's content (`car_ims.tgz` holds `car_ims/`): all of it
    /// goes into a directory of this name.
    Into(String),
}

impl Layout {
    /// The directory name the dataset ends up in.
    pub fn dir_name(&self) -> &str {
        match self {
            Layout::Top(name) | Layout::Into(name) => name,
        }
    }
}

/// Unpacks `archive` into `parent/<layout's directory>`, which must not exist yet, and
/// copies each of `extra` (a source file, its name in the dataset) into it too. Returns the
/// dataset's directory.
pub fn unpack(
    archive: &Path,
    parent: &Path,
    layout: &Layout,
    extra: &[(PathBuf, String)],
    progress: &dyn Progress,
) -> Result<PathBuf, DownloadError> {
    let dest = parent.join(layout.dir_name());
    if dest.exists() {
        return Err(DownloadError::Exists { path: dest });
    }
    std::fs::create_dir_all(parent).map_err(|e| DownloadError::io(parent, e))?;
    // Beside the destination, so that the final rename stays on one file system; removed
    // when dropped, which is every way out of this function but the last.
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{}.unpacking-", layout.dir_name()))
        .tempdir_in(parent)
        .map_err(|e| DownloadError::io(parent, e))?;
    let root = temp.path().join("content");
    std::fs::create_dir(&root).map_err(|e| DownloadError::io(&root, e))?;
    let kind = ArchiveKind::sniff(archive)?;
    progress.start(&format!("unpacking {}", archive.display()), None, 0);
    let unpacked = match kind {
        ArchiveKind::TarGz => unpack_tgz(archive, &root, progress),
        ArchiveKind::Zip => unpack_zip(archive, &root, progress),
    };
    progress.finish();
    unpacked?;
    let ready = match layout {
        Layout::Top(name) => {
            let top = root.join(name);
            if !top.is_dir() {
                return Err(DownloadError::Archive {
                    archive: archive.to_path_buf(),
                    message: format!("no top-level directory '{name}/' (found: {})", listing(&root)),
                });
            }
            top
        }
        Layout::Into(_) => root,
    };
    for (source, name) in extra {
        let target = ready.join(name);
        std::fs::copy(source, &target).map_err(|e| DownloadError::io(source, e))?;
    }
    std::fs::rename(&ready, &dest).map_err(|e| DownloadError::io(&dest, e))?;
    Ok(dest)
}

fn listing(dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    if names.is_empty() { "nothing".into() } else { names.join(", ") }
}

/// The relative path a member may be written to, or why it may not.
fn safe_path(name: &str) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("climbs out of the destination with '..'"),
            Component::RootDir | Component::Prefix(_) => return Err("has an absolute path"),
        }
    }
    Ok(out)
}

fn unsafe_member(archive: &Path, member: &str, reason: &'static str) -> DownloadError {
    DownloadError::UnsafeMember { archive: archive.to_path_buf(), member: member.to_string(), reason }
}

fn corrupt(archive: &Path, member: Option<&str>, error: impl std::fmt::Display) -> DownloadError {
    let message = match member {
        Some(member) => format!("truncated or corrupt at member '{member}': {error}"),
        None => format!("truncated or corrupt: {error}"),
    };
    DownloadError::Archive { archive: archive.to_path_buf(), message }
}

/// Writes one member's bytes to `root/relative`, creating its directories.
fn write_member(root: &Path, relative: &Path, data: &mut impl Read) -> Result<Option<std::io::Error>, DownloadError> {
    let target = root.join(relative);
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).map_err(|e| DownloadError::io(dir, e))?;
    }
    let mut file = File::create(&target).map_err(|e| DownloadError::io(&target, e))?;
    // A read error is the archive's fault, a write error the disk's: told apart here.
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match data.read(&mut buf) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(e) => return Ok(Some(e)),
        };
        std::io::Write::write_all(&mut file, &buf[..n]).map_err(|e| DownloadError::io(&target, e))?;
    }
}

fn unpack_tgz(archive: &Path, root: &Path, progress: &dyn Progress) -> Result<(), DownloadError> {
    // Every name is checked before anything is written: one pass to check, one to write.
    {
        let file = File::open(archive).map_err(|e| DownloadError::io(archive, e))?;
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(file)));
        for entry in tar.entries().map_err(|e| corrupt(archive, None, e))? {
            let entry = entry.map_err(|e| corrupt(archive, None, e))?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            check_tar_entry(archive, &name, entry.header().entry_type())?;
        }
    }
    let file = File::open(archive).map_err(|e| DownloadError::io(archive, e))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(file)));
    for entry in tar.entries().map_err(|e| corrupt(archive, None, e))? {
        let mut entry = entry.map_err(|e| corrupt(archive, None, e))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if !check_tar_entry(archive, &name, kind)? {
            continue;
        }
        let relative = safe_path(&name).map_err(|reason| unsafe_member(archive, &name, reason))?;
        if kind.is_dir() {
            let dir = root.join(&relative);
            std::fs::create_dir_all(&dir).map_err(|e| DownloadError::io(&dir, e))?;
        } else if let Some(e) = write_member(root, &relative, &mut entry)? {
            return Err(corrupt(archive, Some(&name), e));
        }
        progress.advance(1);
    }
    Ok(())
}

/// Whether a tar member is unpacked (`false`: metadata only), or an error if it may not be.
fn check_tar_entry(archive: &Path, name: &str, kind: tar::EntryType) -> Result<bool, DownloadError> {
    safe_path(name).map_err(|reason| unsafe_member(archive, name, reason))?;
    if kind.is_file() || kind.is_dir() || kind == tar::EntryType::Continuous {
        Ok(true)
    } else if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
        Ok(false)
    } else if kind.is_symlink() || kind.is_hard_link() {
        Err(unsafe_member(archive, name, "is a link; links are not unpacked"))
    } else {
        Err(unsafe_member(archive, name, "is not a regular file or directory"))
    }
}

fn unpack_zip(archive: &Path, root: &Path, progress: &dyn Progress) -> Result<(), DownloadError> {
    let file = File::open(archive).map_err(|e| DownloadError::io(archive, e))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| corrupt(archive, None, e))?;
    // The central directory lists every member up front: check them all before writing.
    for i in 0..zip.len() {
        let member = zip.by_index_raw(i).map_err(|e| corrupt(archive, None, e))?;
        let name = member.name().map_err(|e| corrupt(archive, None, e))?.into_owned();
        safe_path(&name).map_err(|reason| unsafe_member(archive, &name, reason))?;
        if member.is_symlink() {
            return Err(unsafe_member(archive, &name, "is a link; links are not unpacked"));
        }
    }
    for i in 0..zip.len() {
        let mut member = zip.by_index(i).map_err(|e| corrupt(archive, None, e))?;
        let name = member.name().map_err(|e| corrupt(archive, None, e))?.into_owned();
        let relative = safe_path(&name).map_err(|reason| unsafe_member(archive, &name, reason))?;
        if member.is_dir() {
            let dir = root.join(&relative);
            std::fs::create_dir_all(&dir).map_err(|e| DownloadError::io(&dir, e))?;
        } else if let Some(e) = write_member(root, &relative, &mut member)? {
            return Err(corrupt(archive, Some(&name), e));
        }
        progress.advance(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_paths() {
        assert_eq!(safe_path("CUB_200_2011/./images.txt").unwrap(), Path::new("CUB_200_2011/images.txt"));
        assert!(safe_path("a/../../etc/passwd").is_err());
        assert!(safe_path("/etc/passwd").is_err());
        assert!(safe_path("..").is_err());
    }
}
