//! Getting a dataset or a weights file into place: download (or take a local copy), verify,
//! unpack, in that order, leaving either the finished result or nothing new in place.

use std::path::{Path, PathBuf};

use crate::catalogue::{DatasetSource, WeightsSource};
use crate::error::DownloadError;
use crate::fetch::{FetchOptions, fetch};
use crate::progress::Progress;
use crate::unpack::unpack;
use crate::verify::{Expected, verify_download, verify_in_place};

/// Where a file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// An `http://` or `https://` URL.
    Url(String),
    /// A file already on disk (clusters whose compute nodes have no internet).
    File(PathBuf),
}

impl Origin {
    /// A URL when it starts with `http://` or `https://`, a local path otherwise.
    pub fn parse(text: &str) -> Origin {
        if text.starts_with("http://") || text.starts_with("https://") {
            Origin::Url(text.to_string())
        } else {
            Origin::File(PathBuf::from(text))
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Url(url) => f.write_str(url),
            Origin::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A verified file, and whether it was downloaded here (and so may be removed after use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Obtained {
    /// The file.
    pub path: PathBuf,
    /// `true` when it was downloaded into the download directory.
    pub downloaded: bool,
}

/// Makes a verified copy of `origin` available as `dir/name`: a URL is fetched into
/// `dir/name.part` (resuming one left by an earlier run), verified, then renamed; a local
/// file is verified where it is. A file already at `dir/name` from an earlier run is
/// verified and reused.
pub fn obtain(
    origin: &Origin,
    dir: &Path,
    name: &str,
    expected: &Expected,
    progress: &dyn Progress,
    options: &FetchOptions,
) -> Result<Obtained, DownloadError> {
    match origin {
        Origin::File(path) => {
            if !path.is_file() {
                return Err(DownloadError::io(path, std::io::ErrorKind::NotFound.into()));
            }
            verify_in_place(path, expected, progress)?;
            Ok(Obtained { path: path.clone(), downloaded: false })
        }
        Origin::Url(url) => {
            std::fs::create_dir_all(dir).map_err(|e| DownloadError::io(dir, e))?;
            let done = dir.join(name);
            if done.is_file() {
                verify_download(&done, expected, progress)?;
                return Ok(Obtained { path: done, downloaded: true });
            }
            let part = dir.join(format!("{name}.part"));
            fetch(url, &part, progress, options)?;
            verify_download(&part, expected, progress)?;
            std::fs::rename(&part, &done).map_err(|e| DownloadError::io(&done, e))?;
            Ok(Obtained { path: done, downloaded: true })
        }
    }
}

/// Downloads (or takes from `origin`), verifies and unpacks a dataset into
/// `to/<source.dir>`, which must not exist. A downloaded archive is removed once unpacked;
/// a local one is left alone. Returns the dataset's directory.
pub fn install_dataset(
    source: &DatasetSource,
    origin: &Origin,
    expected: &Expected,
    to: &Path,
    progress: &dyn Progress,
    options: &FetchOptions,
) -> Result<PathBuf, DownloadError> {
    let layout = source.layout();
    // Checked before a download of gigabytes, and again when unpacking.
    let dest = to.join(layout.dir_name());
    if dest.exists() {
        return Err(DownloadError::Exists { path: dest });
    }
    let archive = obtain(origin, to, source.archive, expected, progress, options)?;
    let mut extra = Vec::new();
    if let (Some(companion), Origin::File(path)) = (source.companion, origin) {
        let beside = path.parent().unwrap_or(Path::new(".")).join(companion);
        if beside.is_file() {
            extra.push((beside, companion.to_string()));
        }
    }
    let dir = unpack(&archive.path, to, &layout, &extra, progress)?;
    if archive.downloaded {
        std::fs::remove_file(&archive.path).map_err(|e| DownloadError::io(&archive.path, e))?;
    }
    Ok(dir)
}

/// Downloads (or copies from `origin`) and verifies a weights file as `to/<source.file>`,
/// torchvision's name, which the recipes use. Returns its path.
pub fn install_weights(
    source: &WeightsSource,
    origin: &Origin,
    expected: &Expected,
    to: &Path,
    progress: &dyn Progress,
    options: &FetchOptions,
) -> Result<PathBuf, DownloadError> {
    let obtained = obtain(origin, to, source.file, expected, progress, options)?;
    let dest = to.join(source.file);
    if obtained.path != dest {
        // A local file: copied under the final name through a temporary one, so that an
        // interrupted copy never looks like the real file.
        std::fs::create_dir_all(to).map_err(|e| DownloadError::io(to, e))?;
        let temp = to.join(format!("{}.part", source.file));
        if let Err(e) = std::fs::copy(&obtained.path, &temp) {
            let _ = std::fs::remove_file(&temp);
            return Err(DownloadError::io(&temp, e));
        }
        std::fs::rename(&temp, &dest).map_err(|e| DownloadError::io(&dest, e))?;
    }
    Ok(dest)
}
