//! The HTML leaderboard in a real browser: a page rendered from the default
//! experiment's records is loaded by headless Chromium, which must build the tables and the
//! SVG charts from it, and a screenshot of it must show a rendered page.
//!
//! Chromium comes from Debian's `chromium` package. Where neither `chromium` nor
//! `chromium-browser` is on PATH the test says so and returns.

mod leaderboard_fixture;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dmlbench_leaderboard::html;
use dmlbench_leaderboard::table::Leaderboard;
use dmlbench_record::load_all;

/// Longest a single Chromium run may take before the test gives up on it.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(120);

fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// Runs Chromium headless with a fresh profile and the given extra arguments, returning its
/// standard output. Panics with its standard error if it fails or hangs.
fn chromium(binary: &Path, profile: &Path, args: &[String]) -> String {
    let stdout_file = profile.with_extension("stdout");
    let stderr_file = profile.with_extension("stderr");
    let mut child = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_file).unwrap())
        .stderr(std::fs::File::create(&stderr_file).unwrap())
        .spawn()
        .expect("chromium starts");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > CHROMIUM_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish within {CHROMIUM_TIMEOUT:?}: {}",
                std::fs::read_to_string(&stderr_file).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "chromium failed ({status}): {}",
        std::fs::read_to_string(&stderr_file).unwrap_or_default()
    );
    std::fs::read_to_string(&stdout_file).unwrap()
}

/// Width and height from a PNG's IHDR chunk, which the format puts first.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

/// The text of each `<svg …>…</svg>` element, in order.
fn svg_elements(dom: &str) -> Vec<&str> {
    dom.match_indices("<svg")
        .map(|(start, _)| {
            let end = dom[start..].find("</svg>").expect("a closed svg element") + start + "</svg>".len();
            &dom[start..end]
        })
        .collect()
}

#[test]
fn chromium_renders_the_tables_and_charts() {
    let Some(binary) = find_chromium() else {
        eprintln!(
            "SKIPPED chromium_renders_the_tables_and_charts: neither `chromium` nor `chromium-browser` is on PATH (apt-get install chromium)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    leaderboard_fixture::write_records(&results);
    let (records, errors) = load_all(std::slice::from_ref(&results));
    assert!(errors.is_empty(), "{errors:?}");
    let board = Leaderboard::from_records(records);
    let page = results.join(html::FILE_NAME);
    std::fs::write(&page, html::render(&board, &results)).unwrap();
    let url = format!("file://{}", page.canonicalize().unwrap().display());

    // The DOM as Chromium built it from the page.
    let dom = chromium(&binary, &dir.path().join("profile-dom"), &["--dump-dom".into(), url.clone()]);
    assert!(dom.contains("<table class=\"leaderboard\" data-dataset=\"cub\" data-recipe=\"default\">"), "{dom}");
    for (method, class) in [
        ("cross_entropy", "completed"),
        ("contrastive+batch_hard", "completed"),
        ("multi_similarity+multi_similarity", "completed"),
        ("snca", "running"),
        ("triplet_margin+semihard", "failed"),
    ] {
        assert!(
            dom.contains(&format!("<tr class=\"{class}\" data-method=\"{method}\">")),
            "row {method} missing from the DOM"
        );
    }
    // The best values as the browser sees them (0.60, 0.62, 0.67 → 63.0 ± 9.0).
    assert!(dom.contains("<td class=\"num best\"><strong>63.0 ± 9.0</strong></td>"));
    // The failure's full text sits in a disclosure, escaped by us and unescaped by the browser
    // into text (re-escaped when the DOM is serialised).
    assert!(dom.contains("backbone &lt;relu&gt;; lower the learning rate</pre></details>"));
    // Links to the records, relative to the page.
    assert!(dom.contains("<a href=\"default/cross_entropy-seed2.ron\" title=\"record of seed 2\">2</a>"));

    let svgs = svg_elements(&dom);
    assert_eq!(svgs.len(), 2, "one accuracy/time chart and one per-epoch chart");
    let (pareto, curves) = (svgs[0], svgs[1]);
    // Accuracy against time: a point per completed method (3), their legend markers (3),
    // error bars, the Pareto front, ticks and axis labels.
    assert_eq!(pareto.matches("<circle").count(), 6, "{pareto}");
    assert_eq!(pareto.matches("class=\"error-bar\"").count(), 3);
    // The front: contrastive+batch_hard (250 s, 56.0) then cross_entropy (300 s, 63.0);
    // multi_similarity (360 s, 41.0) is slower and less accurate than both.
    let front = pareto.lines().find(|l| l.contains("class=\"pareto-front\"")).expect("a Pareto front");
    assert_eq!(front.split("points=\"").nth(1).unwrap().split('"').next().unwrap().split(' ').count(), 2, "{front}");
    assert!(pareto.contains(">time per epoch (s)</text>") && pareto.contains(">R@1 (%)</text>"));
    assert!(pareto.matches("class=\"tick-label\"").count() >= 4);
    for method in ["cross_entropy", "contrastive+batch_hard", "multi_similarity+multi_similarity"] {
        assert!(pareto.contains(&format!(">{method}</text>")), "label {method}");
    }
    // Per epoch, from epoch 0 (before training) on: a line for each of the five methods,
    // with a marker per evaluation (5 + 5 + 5 for the completed, 3 for the running snca after
    // 2 epochs, 2 for the cell that failed after 1) and 5 legend entries.
    assert_eq!(curves.matches("<polyline").count(), 5, "{curves}");
    assert_eq!(curves.matches("<circle").count(), 20 + 5, "{curves}");
    assert!(curves.contains(">epoch</text>") && curves.contains("class=\"legend\""));
    assert!(dom.contains("<section id=\"reproducibility\">") && dom.contains("experiments/default.ron"));

    // A screenshot: a PNG of the window's size, with real content in it.
    let shot = dir.path().join("leaderboard.png");
    chromium(
        &binary,
        &dir.path().join("profile-shot"),
        &[format!("--screenshot={}", shot.display()), "--window-size=1280,2000".into(), url],
    );
    let bytes = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert_eq!(png_size(&bytes), (1280, 2000));
    assert!(bytes.len() > 50_000, "a {}-byte screenshot is too small to hold the tables and charts", bytes.len());
    let image = image::load_from_memory(&bytes).unwrap().to_rgb8();
    // The first series colour (#4e79a7) is drawn by the charts: look for it.
    let blue = image.pixels().filter(|p| p.0 == [0x4e, 0x79, 0xa7]).count();
    assert!(blue > 100, "the charts' first colour covers only {blue} pixels");
    let distinct: std::collections::BTreeSet<[u8; 3]> = image.pixels().map(|p| p.0).collect();
    assert!(distinct.len() > 50, "only {} colours: the page did not render", distinct.len());
    if let Some(keep) = std::env::var_os("DMLBENCH_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}
