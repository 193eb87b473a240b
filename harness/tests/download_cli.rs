//! `dmlbench data download` and `dmlbench weights download` as a user runs them, against a
//! local HTTP server: a synthetic CUB archive becomes a dataset `data check` accepts, a
//! Cars196 archive whose annotations were saved as MATLAB v7.3 installs and reads, and a
//! source without a checksum is refused.

use std::path::Path;
use std::process::{Command, Output};

use dmlbench_datasets::{Format, synth};
use dmlbench_download::fixture::{self, Server};
use dmlbench_download::verify::sha256_file;

fn dmlbench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dmlbench")).args(args).output().expect("dmlbench runs")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// A synthetic CUB-format dataset archived as CUB_200_2011.tgz is, with its SHA-256.
fn synthetic_cub_tgz(dir: &Path) -> (Vec<u8>, String) {
    let root = dir.join("synthetic");
    let options = synth::SynthOptions { classes: 4, per_class: 3, size: 32, ..Default::default() };
    synth::generate(Format::Cub, &root, &options).unwrap();
    let archive = fixture::tgz_of_dir(&root, "CUB_200_2011");
    let file = dir.join("CUB_200_2011.tgz");
    std::fs::write(&file, &archive).unwrap();
    let sha = sha256_file(&file, &()).unwrap();
    (archive, sha)
}

#[test]
fn a_served_cub_archive_becomes_a_dataset_that_data_check_accepts() {
    let work = tempfile::tempdir().unwrap();
    let (archive, sha) = synthetic_cub_tgz(work.path());
    let server = Server::start();
    server.serve("/CUB_200_2011.tgz", archive);
    let to = work.path().join("data");
    let url = server.url("/CUB_200_2011.tgz");

    let output = dmlbench(&["data", "download", "cub", "--from", &url, "--sha256", &sha, "--to", path(&to)]);

    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(&format!("SHA-256 {sha} verified")), "{stdout}");
    // The check that ends the download: the manifest's counts, no problems.
    assert!(stdout.contains("no problems found"), "{stdout}");
    let dataset = to.join("CUB_200_2011");
    let check = dmlbench(&["data", "check", path(&dataset), "--format", "cub", "--no-strict"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    assert!(String::from_utf8_lossy(&check.stdout).contains("no problems found"));
    // The downloaded archive is removed once unpacked.
    assert!(!to.join("CUB_200_2011.tgz").exists());
}

/// Cars196 from a local archive with its annotation file beside it, that file saved as MATLAB
/// v7.3 (HDF5), as some mirrors serve it: it is copied in as it is and the loaders read it.
#[test]
fn a_cars196_archive_with_v73_annotations_installs_and_reads() {
    let work = tempfile::tempdir().unwrap();
    // 12 images in 3 classes, as the v7.3 fixture's annotations list them.
    let synthetic = work.path().join("synthetic");
    let options = synth::SynthOptions { classes: 3, per_class: 4, size: 32, ..Default::default() };
    synth::generate(Format::Cars196, &synthetic, &options).unwrap();
    let source = work.path().join("mirror");
    std::fs::create_dir(&source).unwrap();
    let archive = source.join("car_ims.tgz");
    std::fs::write(&archive, fixture::tgz_of_dir(&synthetic.join("car_ims"), "car_ims")).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/tests/fixtures");
    std::fs::copy(fixtures.join("cars_annos_v73.mat"), source.join("cars_annos.mat")).unwrap();
    let sha = sha256_file(&archive, &()).unwrap();
    let to = work.path().join("data");

    let output =
        dmlbench(&["data", "download", "cars196", "--from", path(&archive), "--sha256", &sha, "--to", path(&to)]);

    // The check that ends the download reads the v7.3 file; it finds only that 12 images are
    // not the published counts (exit 1, problems, not a failure to install).
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(out.contains("train split has 4 images, expected 8054 (the published Cars196 counts)"), "{out}");
    let dataset = to.join("cars196");
    assert!(dataset.join("car_ims/000012.jpg").is_file());
    let copied = std::fs::read(dataset.join("cars_annos.mat")).unwrap();
    assert_eq!(copied, std::fs::read(fixtures.join("cars_annos_v73.mat")).unwrap(), "copied as it is");
    let check = dmlbench(&["data", "check", path(&dataset), "--format", "cars196", "--no-strict"]);
    let out = text(&check);
    assert_eq!(check.status.code(), Some(0), "{out}");
    assert!(out.contains("no problems found"), "{out}");
    for (split, images, classes) in [("train", 4, 1), ("test", 8, 2)] {
        let line = out.lines().find(|l| l.trim_start().starts_with(split)).unwrap_or_else(|| panic!("{out}"));
        let numbers: Vec<&str> = line.split_whitespace().skip(1).collect();
        assert_eq!(numbers, [images.to_string(), classes.to_string()], "{line}");
    }
}

#[test]
fn a_wrong_checksum_fails_with_both_hashes_and_installs_nothing() {
    let work = tempfile::tempdir().unwrap();
    let (archive, sha) = synthetic_cub_tgz(work.path());
    let server = Server::start();
    server.serve("/CUB_200_2011.tgz", archive.clone());
    let to = work.path().join("data");
    let wrong = "0".repeat(64);

    let output = dmlbench(&[
        "data",
        "download",
        "cub",
        "--from",
        &server.url("/CUB_200_2011.tgz"),
        "--sha256",
        &wrong,
        "--to",
        path(&to),
    ]);

    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("expected SHA-256 {wrong}")) && stderr.contains(&sha), "{stderr}");
    assert!(!to.join("CUB_200_2011").exists());
    assert_eq!(std::fs::read(to.join("CUB_200_2011.tgz.bad")).unwrap(), archive);
}

#[test]
fn a_source_without_a_checksum_is_refused_unless_verification_is_waived() {
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("car_ims.tgz");
    std::fs::write(&local, fixture::tgz(&[("car_ims/000001.jpg", b"jpeg")])).unwrap();
    let to = work.path().join("data");

    let refused = dmlbench(&["data", "download", "cars196", "--from", path(&local), "--to", path(&to)]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("no SHA-256 is known") && stderr.contains("--no-verify"), "{stderr}");
    assert!(stderr.contains("MD5"), "the reason is given: {stderr}");
    assert!(!to.exists());

    let waived = dmlbench(&["data", "download", "cars196", "--from", path(&local), "--no-verify", "--to", path(&to)]);
    // Unpacked, but cars_annos.mat is missing: the check says so and fails.
    assert_eq!(waived.status.code(), Some(1), "{}", text(&waived));
    let stdout = String::from_utf8_lossy(&waived.stdout);
    assert!(stdout.contains("not verified") && stdout.contains("cars_annos.mat is missing"), "{stdout}");
    assert_eq!(std::fs::read(to.join("cars196/car_ims/000001.jpg")).unwrap(), b"jpeg");
}

#[test]
fn a_dataset_without_a_public_url_prints_how_to_get_it() {
    let work = tempfile::tempdir().unwrap();
    let output = dmlbench(&["data", "download", "inshop", "--to", path(work.path())]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("list_eval_partition.txt") && stdout.contains("img.zip"), "{stdout}");
    assert!(stdout.contains("data/InShop/img/"), "{stdout}");
}

#[test]
fn weights_download_under_the_torchvision_name() {
    let work = tempfile::tempdir().unwrap();
    let weights = b"\x80\x02tiny pickle, not real weights".to_vec();
    let file = work.path().join("tiny.pth");
    std::fs::write(&file, &weights).unwrap();
    let sha = sha256_file(&file, &()).unwrap();
    let server = Server::start();
    server.serve("/resnet50.pth", weights.clone());
    let to = work.path().join("weights");

    let output = dmlbench(&[
        "weights",
        "download",
        "resnet50",
        "--from",
        &server.url("/resnet50.pth"),
        "--sha256",
        &sha,
        "--to",
        path(&to),
    ]);

    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(std::fs::read(to.join("resnet50-0676ba61.pth")).unwrap(), weights);

    // Without --sha256, the prefix in torchvision's name is the check: these bytes fail it.
    let again = work.path().join("again");
    let output =
        dmlbench(&["weights", "download", "resnet50", "--from", &server.url("/resnet50.pth"), "--to", path(&again)]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("expected SHA-256 0676ba61…"));
    assert!(!again.join("resnet50-0676ba61.pth").exists());
}

#[test]
fn help_shows_examples() {
    let output = dmlbench(&["data", "download", "--help"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("dmlbench data download cub --from ~/CUB_200_2011.tgz"), "{stdout}");
    let output = dmlbench(&["weights", "download", "--help"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("resnet50-0676ba61.pth"), "{stdout}");
}
