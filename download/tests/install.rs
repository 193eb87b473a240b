//! Downloads against a local HTTP server: success, resume, checksum mismatch, broken and
//! malicious archives, and a full disk. Each failure must leave nothing half-done where the
//! finished dataset or file belongs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dmlbench_datasets::{Format, synth};
use dmlbench_download::catalogue::{self, DatasetSource, WeightsSource};
use dmlbench_download::fixture::{self, Server};
use dmlbench_download::verify::sha256_file;
use dmlbench_download::{DownloadError, Expected, FetchOptions, Origin, install_dataset, install_weights};

fn quick() -> FetchOptions {
    FetchOptions { attempts: 3, pause: Duration::ZERO }
}

fn sha256_of(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, bytes).unwrap();
    sha256_file(&path, &()).unwrap()
}

fn cub() -> &'static DatasetSource {
    catalogue::dataset("cub").unwrap()
}

/// A synthetic CUB-format dataset, and its `.tgz` laid out as the real `CUB_200_2011.tgz`
/// (the dataset's directory, plus a stray top-level file).
fn synthetic_cub() -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("CUB_200_2011");
    let options = synth::SynthOptions { classes: 4, per_class: 3, size: 32, ..Default::default() };
    synth::generate(Format::Cub, &root, &options).unwrap();
    std::fs::write(dir.path().join("attributes.txt"), "1 has_bill_shape::curved\n").unwrap();
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    builder.append_dir_all("CUB_200_2011", &root).unwrap();
    builder.append_path_with_name(dir.path().join("attributes.txt"), "attributes.txt").unwrap();
    let bytes = builder.into_inner().unwrap().finish().unwrap();
    (dir, bytes)
}

/// Every file under `root`, relative path → bytes, sorted.
fn tree(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push((path.strip_prefix(root).unwrap().to_path_buf(), std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// The names in a directory, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn a_dataset_downloads_verifies_and_unpacks_into_the_loaders_layout() {
    let (source_dir, archive) = synthetic_cub();
    let server = Server::start();
    server.serve("/CUB_200_2011.tgz", archive.clone());
    let to = tempfile::tempdir().unwrap();
    let expected = Expected::sha256(&sha256_of(&archive)).unwrap();
    let origin = Origin::Url(server.url("/CUB_200_2011.tgz"));

    let dir = install_dataset(cub(), &origin, &expected, to.path(), &(), &quick()).unwrap();

    assert_eq!(dir, to.path().join("CUB_200_2011"));
    assert_eq!(tree(&dir), tree(&source_dir.path().join("CUB_200_2011")));
    assert!(dir.join("images.txt").is_file());
    // The stray top-level file, the downloaded archive and the temporary directory are gone.
    assert_eq!(names(to.path()), ["CUB_200_2011"]);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_broken_connection_is_resumed_with_a_range_request() {
    let weights: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let server = Server::start();
    server.serve_cut("/w.pth", weights.clone(), 70_000);
    let source = WeightsSource { name: "tiny", file: "w.pth", url: "unused" };
    let to = tempfile::tempdir().unwrap();
    let expected = Expected::Sha256Prefix(sha256_of(&weights)[..8].to_string());

    let path =
        install_weights(&source, &Origin::Url(server.url("/w.pth")), &expected, to.path(), &(), &quick()).unwrap();

    assert_eq!(std::fs::read(&path).unwrap(), weights);
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].range, None);
    assert_eq!(requests[1].range.as_deref(), Some("bytes=70000-"));
    assert_eq!(names(to.path()), ["w.pth"]);
}

#[test]
fn a_connection_that_keeps_breaking_keeps_the_partial_file_for_the_next_run() {
    let weights: Vec<u8> = (0..100_000u32).map(|i| (i % 239) as u8).collect();
    let server = Server::start();
    server.serve_always_cut("/w.pth", weights.clone(), 10_000);
    let to = tempfile::tempdir().unwrap();
    let source = WeightsSource { name: "tiny", file: "w.pth", url: "unused" };
    let expected = Expected::sha256(&sha256_of(&weights)).unwrap();
    let origin = Origin::Url(server.url("/w.pth"));

    let err = install_weights(&source, &origin, &expected, to.path(), &(), &quick()).unwrap_err();

    let DownloadError::Interrupted { received, total, attempts, part, .. } = &err else { panic!("{err:?}") };
    assert_eq!((*received, *total, *attempts), (30_000, Some(100_000), 3));
    assert_eq!(std::fs::read(part).unwrap(), &weights[..30_000]);
    assert!(!to.path().join("w.pth").exists());
    let ranges: Vec<_> = server.requests().into_iter().map(|r| r.range).collect();
    assert_eq!(ranges, [None, Some("bytes=10000-".into()), Some("bytes=20000-".into())]);
    assert!(err.to_string().contains("the next run resumes from it"), "{err}");

    // The next run, on a healthy connection, asks for the rest only.
    server.serve("/w.pth", weights.clone());
    let path = install_weights(&source, &origin, &expected, to.path(), &(), &quick()).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), weights);
    assert_eq!(server.requests().last().unwrap().range.as_deref(), Some("bytes=30000-"));
}

#[test]
fn a_partial_file_from_an_earlier_run_is_resumed() {
    let weights: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
    let server = Server::start();
    server.serve("/w.pth", weights.clone());
    let to = tempfile::tempdir().unwrap();
    std::fs::write(to.path().join("w.pth.part"), &weights[..12_345]).unwrap();
    let source = WeightsSource { name: "tiny", file: "w.pth", url: "unused" };
    let expected = Expected::sha256(&sha256_of(&weights)).unwrap();

    let path =
        install_weights(&source, &Origin::Url(server.url("/w.pth")), &expected, to.path(), &(), &quick()).unwrap();

    assert_eq!(std::fs::read(&path).unwrap(), weights);
    assert_eq!(server.requests()[0].range.as_deref(), Some("bytes=12345-"));
}

#[test]
fn a_server_without_ranges_restarts_the_file() {
    let weights: Vec<u8> = (0..30_000u32).map(|i| (i % 241) as u8).collect();
    let server = Server::start();
    server.serve_without_ranges("/w.pth", weights.clone());
    let to = tempfile::tempdir().unwrap();
    // Not a prefix of the file: appending to it would give a wrong file.
    std::fs::write(to.path().join("w.pth.part"), vec![0xAA; 1000]).unwrap();
    let source = WeightsSource { name: "tiny", file: "w.pth", url: "unused" };
    let expected = Expected::sha256(&sha256_of(&weights)).unwrap();

    let path =
        install_weights(&source, &Origin::Url(server.url("/w.pth")), &expected, to.path(), &(), &quick()).unwrap();

    assert_eq!(std::fs::read(&path).unwrap(), weights);
}

#[test]
fn a_checksum_mismatch_keeps_the_file_aside_and_installs_nothing() {
    let server = Server::start();
    server.serve("/resnet18-f37072fd.pth", b"not the weights".to_vec());
    let source = catalogue::weights("resnet18").unwrap();
    let to = tempfile::tempdir().unwrap();
    let origin = Origin::Url(server.url("/resnet18-f37072fd.pth"));

    let err = install_weights(source, &origin, &source.expected(), to.path(), &(), &quick()).unwrap_err();

    let DownloadError::Checksum { expected, actual, moved_to, .. } = &err else { panic!("{err:?}") };
    assert_eq!(expected, "f37072fd");
    assert_eq!(actual, &sha256_of(b"not the weights"));
    let bad = to.path().join("resnet18-f37072fd.pth.bad");
    assert_eq!(moved_to.as_deref(), Some(bad.as_path()));
    assert_eq!(std::fs::read(&bad).unwrap(), b"not the weights");
    assert_eq!(names(to.path()), ["resnet18-f37072fd.pth.bad"]);
    let message = err.to_string();
    assert!(message.contains("expected SHA-256 f37072fd…") && message.contains(actual.as_str()), "{message}");
}

#[test]
fn a_local_archive_with_the_wrong_checksum_is_left_where_it_is() {
    let (_source, archive) = synthetic_cub();
    let mine = tempfile::tempdir().unwrap();
    let local = mine.path().join("CUB_200_2011.tgz");
    std::fs::write(&local, &archive).unwrap();
    let to = tempfile::tempdir().unwrap();
    let wrong = Expected::sha256(&"ab".repeat(32)).unwrap();

    let err = install_dataset(cub(), &Origin::File(local.clone()), &wrong, to.path(), &(), &quick()).unwrap_err();

    assert!(matches!(err, DownloadError::Checksum { moved_to: None, .. }), "{err:?}");
    assert_eq!(std::fs::read(&local).unwrap(), archive);
    assert!(names(to.path()).is_empty());
}

#[test]
fn a_local_archive_installs_and_is_kept() {
    let (source_dir, archive) = synthetic_cub();
    let mine = tempfile::tempdir().unwrap();
    let local = mine.path().join("CUB_200_2011.tgz");
    std::fs::write(&local, &archive).unwrap();
    let to = tempfile::tempdir().unwrap();

    let dir =
        install_dataset(cub(), &Origin::File(local.clone()), &Expected::Unverified, to.path(), &(), &quick()).unwrap();

    assert_eq!(tree(&dir), tree(&source_dir.path().join("CUB_200_2011")));
    assert!(local.is_file());
}

/// Serves `archive` as CUB with its own (matching) checksum and installs it into a fresh
/// directory, which is returned with the outcome.
fn install_served_cub(archive: Vec<u8>) -> (tempfile::TempDir, Result<PathBuf, DownloadError>) {
    let server = Server::start();
    server.serve("/CUB_200_2011.tgz", archive.clone());
    let to = tempfile::tempdir().unwrap();
    let expected = Expected::sha256(&sha256_of(&archive)).unwrap();
    let origin = Origin::Url(server.url("/CUB_200_2011.tgz"));
    let outcome = install_dataset(cub(), &origin, &expected, &to.path().join("data"), &(), &quick());
    (to, outcome)
}

/// Nothing but the verified archive is left in `to/data`, and nothing outside it.
fn assert_nothing_unpacked(to: &Path) {
    assert_eq!(names(to), ["data"]);
    assert_eq!(names(&to.join("data")), ["CUB_200_2011.tgz"]);
}

#[test]
fn a_truncated_archive_leaves_nothing_unpacked() {
    let (_source, archive) = synthetic_cub();
    let truncated = archive[..archive.len() * 2 / 3].to_vec();

    let (to, outcome) = install_served_cub(truncated);

    let err = outcome.unwrap_err();
    let DownloadError::Archive { message, .. } = &err else { panic!("{err:?}") };
    assert!(message.contains("truncated or corrupt"), "{message}");
    assert!(err.to_string().contains("nothing was unpacked"));
    assert_nothing_unpacked(to.path());
}

#[test]
fn a_member_climbing_out_with_dotdot_is_refused() {
    let archive = fixture::tgz(&[("CUB_200_2011/images.txt", b"1 a.jpg\n"), ("CUB_200_2011/../../evil.txt", b"x")]);

    let (to, outcome) = install_served_cub(archive);

    let err = outcome.unwrap_err();
    let DownloadError::UnsafeMember { member, reason, .. } = &err else { panic!("{err:?}") };
    assert_eq!(member, "CUB_200_2011/../../evil.txt");
    assert!(reason.contains(".."), "{reason}");
    assert_nothing_unpacked(to.path());
}

#[test]
fn a_member_with_an_absolute_path_is_refused() {
    let target = std::env::temp_dir().join(format!("dmlbench-absolute-{}", std::process::id()));
    let name = target.to_str().unwrap().to_string();
    let archive = fixture::tgz(&[("CUB_200_2011/images.txt", b"1 a.jpg\n"), (name.as_str(), b"x")]);

    let (to, outcome) = install_served_cub(archive);

    let err = outcome.unwrap_err();
    let DownloadError::UnsafeMember { member, reason, .. } = &err else { panic!("{err:?}") };
    assert_eq!(member, &name);
    assert!(reason.contains("absolute"), "{reason}");
    assert!(!target.exists());
    assert_nothing_unpacked(to.path());
}

#[test]
fn a_link_member_is_refused() {
    let (to, outcome) = install_served_cub(fixture::tgz_with_symlink("CUB_200_2011/images", "/etc"));

    let err = outcome.unwrap_err();
    assert!(matches!(&err, DownloadError::UnsafeMember { member, .. } if member == "CUB_200_2011/images"), "{err:?}");
    assert_nothing_unpacked(to.path());
}

#[test]
fn zip_members_climbing_out_or_absolute_are_refused() {
    let sop = catalogue::dataset("sop").unwrap();
    for bad in ["Stanford_Online_Products/../../evil.txt", "/tmp/dmlbench-evil.txt"] {
        let archive = fixture::zip(&[("Stanford_Online_Products/Ebay_train.txt", b"x"), (bad, b"x")]);
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("sop.zip");
        std::fs::write(&local, archive).unwrap();
        let to = dir.path().join("data");

        let err = install_dataset(sop, &Origin::File(local), &Expected::Unverified, &to, &(), &quick()).unwrap_err();

        assert!(matches!(&err, DownloadError::UnsafeMember { member, .. } if member == bad), "{err:?}");
        assert!(names(&to).is_empty(), "{:?}", names(&to));
    }
}

#[test]
fn a_zip_without_a_top_directory_unpacks_into_the_dataset_directory_with_its_companion() {
    // In-Shop's img.zip holds img/; list_eval_partition.txt is published beside it.
    let inshop = catalogue::dataset("inshop").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("img.zip");
    std::fs::write(&local, fixture::zip(&[("img/WOMEN/a.jpg", b"jpeg bytes")])).unwrap();
    std::fs::write(dir.path().join("list_eval_partition.txt"), "1\nimage_name item_id evaluation_status\n").unwrap();
    let to = dir.path().join("data");

    let root = install_dataset(inshop, &Origin::File(local), &Expected::Unverified, &to, &(), &quick()).unwrap();

    assert_eq!(root, to.join("InShop"));
    assert_eq!(names(&root), ["img", "list_eval_partition.txt"]);
    assert_eq!(std::fs::read(root.join("img/WOMEN/a.jpg")).unwrap(), b"jpeg bytes");
    assert_eq!(names(&to), ["InShop"]);
}

#[test]
fn an_existing_dataset_is_never_overwritten_or_downloaded_again() {
    let server = Server::start();
    server.serve("/CUB_200_2011.tgz", b"unused".to_vec());
    let to = tempfile::tempdir().unwrap();
    std::fs::create_dir(to.path().join("CUB_200_2011")).unwrap();
    let origin = Origin::Url(server.url("/CUB_200_2011.tgz"));

    let err = install_dataset(cub(), &origin, &Expected::Unverified, to.path(), &(), &quick()).unwrap_err();

    assert!(matches!(&err, DownloadError::Exists { path } if path.ends_with("CUB_200_2011")), "{err:?}");
    assert!(server.requests().is_empty());
}

#[test]
fn a_missing_file_names_the_url_and_status() {
    let server = Server::start();
    let to = tempfile::tempdir().unwrap();
    let url = server.url("/nowhere.tgz");

    let err =
        install_dataset(cub(), &Origin::Url(url.clone()), &Expected::Unverified, to.path(), &(), &quick()).unwrap_err();

    assert!(matches!(&err, DownloadError::Status { status: 404, .. }), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
}

/// A full disk: the partial file is a link to /dev/full, where every write fails with
/// ENOSPC, for root too (which ignores a read-only directory).
#[cfg(target_os = "linux")]
#[test]
fn a_write_error_stops_the_download_and_names_the_file() {
    let server = Server::start();
    server.serve("/w.pth", vec![1u8; 100_000]);
    let to = tempfile::tempdir().unwrap();
    let part = to.path().join("w.pth.part");
    std::os::unix::fs::symlink("/dev/full", &part).unwrap();
    let source = WeightsSource { name: "tiny", file: "w.pth", url: "unused" };

    let err =
        install_weights(&source, &Origin::Url(server.url("/w.pth")), &Expected::Unverified, to.path(), &(), &quick())
            .unwrap_err();

    let DownloadError::Io { path, source } = &err else { panic!("{err:?}") };
    assert_eq!(path, &part);
    assert_eq!(source.kind(), std::io::ErrorKind::StorageFull);
    assert!(!to.path().join("w.pth").exists());
    // A write error is final: no second request.
    assert_eq!(server.requests().len(), 1);
}
