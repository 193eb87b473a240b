//! Downloading, verifying and unpacking the datasets and pretrained weights that dmlbench's
//! recipes need, so that a fresh clone gets to a real benchmark with dmlbench's own commands.
//!
//! One concept per module: [`fetch`] (HTTP with resume), [`verify`] (SHA-256),
//! [`unpack`] (tar.gz and zip, all or nothing), [`catalogue`] (where each file comes from
//! and its checksum), [`install`] (the three in order). Nothing is used before it is
//! verified, and a failure leaves no half-finished file or directory where a finished one
//! belongs: downloads grow in `NAME.part`, a file with the wrong hash becomes `NAME.bad`,
//! archives unpack into a temporary directory that is renamed into place at the end.
//!
//! ```no_run
//! use dmlbench_download::{catalogue, install, FetchOptions, Origin};
//! let cub = catalogue::dataset("cub").unwrap();
//! let origin = Origin::Url(cub.url.unwrap().to_string());
//! let expected = cub.expected().unwrap();
//! let dir = install::install_dataset(cub, &origin, &expected, "data".as_ref(), &(), &FetchOptions::default())?;
//! assert!(dir.ends_with("CUB_200_2011"));
//! # Ok::<(), dmlbench_download::DownloadError>(())
//! ```

pub mod catalogue;
pub mod error;
pub mod fetch;
#[cfg(feature = "fixture")]
pub mod fixture;
pub mod install;
pub mod progress;
pub mod unpack;
pub mod verify;

pub use error::DownloadError;
pub use fetch::FetchOptions;
pub use install::{Origin, install_dataset, install_weights};
pub use progress::Progress;
pub use verify::Expected;
