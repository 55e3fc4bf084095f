//! The pictures, checked in a real browser: a real scenario runs, then headless Chromium loads
//! its `timeline.html` and the run's `index.html` from disk and the tests read back the DOM the
//! browser built (`--dump-dom`): the page's own script counts, in `<body data-rendered>`, the
//! lanes, operation bars and fault bands that have a size on screen, so an empty or broken page
//! fails. A screenshot of each is taken too (and must not be blank).
//!
//! Chromium is found as `$CHROMIUM`, else `chromium` / `chromium-browser` / `google-chrome` on
//! `PATH`. Without one the tests skip and say so, except under CI (`CI` set), where `.ci/run`
//! installs Debian's `chromium` and its absence is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::{namespaces_disabled, text, workspace};

const RUNNER: &str = env!("CARGO_BIN_EXE_reconnect-runner");

fn chromium(test: &str) -> Option<PathBuf> {
    let named = std::env::var_os("CHROMIUM").map(PathBuf::from);
    let on_path = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find_map(|name| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        });
    let found = named.or(on_path);
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: CI installs chromium (.ci/run), but none was found"
        );
        eprintln!("skipped: {test}: no chromium (set CHROMIUM or install Debian's chromium)");
    }
    found
}

/// Headless Chromium on `page` with `args` (`--dump-dom`, `--screenshot=...`): its stdout.
/// Run under coreutils' `timeout`, so a browser that hangs (no D-Bus, a stuck GPU process) fails
/// the test in two minutes instead of holding CI until its limit.
fn headless(browser: &Path, page: &Path, args: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("timeout")
        .args(["--kill-after=10", "120"])
        .arg(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            // Containers often give /dev/shm only 64 MB, too little for the renderer.
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--window-size=1500,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium starts (through coreutils' timeout)");
    assert!(out.status.success(), "chromium failed:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The counts the page's script wrote, e.g. `lanes=16 ops=333 bands=4 plots=2`.
fn rendered(dom: &str) -> std::collections::BTreeMap<String, u64> {
    let attr = dom
        .split("data-rendered=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("the page's script never ran: no data-rendered in\n{dom}"));
    attr.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap()))
        .collect()
}

fn screenshot_is_not_blank(browser: &Path, page: &Path, png: &Path) {
    headless(browser, page, &[format!("--screenshot={}", png.display())]);
    let bytes = std::fs::read(png).expect("a screenshot");
    assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
    // A blank 1500x1000 page compresses to a few KB; a drawn one is far larger.
    assert!(
        bytes.len() > 30_000,
        "a blank screenshot: {} bytes",
        bytes.len()
    );
}

#[test]
fn a_real_runs_timeline_and_index_render_in_a_browser() {
    let test = "a_real_runs_timeline_and_index_render_in_a_browser";
    if namespaces_disabled(test) {
        return;
    }
    let Some(browser) = chromium(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let evidence = tmp.path().join("ev");
    let out = Command::new(RUNNER)
        .arg("run")
        .arg(workspace().join("scenarios/s4-chainfire-restart.yaml"))
        .arg("--chainfire-bin")
        .arg(chainfire_testkit::chainfire_bin())
        .arg("--junit")
        .arg(tmp.path().join("junit.xml"))
        .arg("--evidence")
        .arg(&evidence)
        .current_dir(workspace())
        .output()
        .expect("the runner starts");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // The timeline: every node and client has a lane, the bars and the bands have a size.
    let timeline = evidence.join("s4-chainfire-restart/timeline.html");
    let counts = rendered(&headless(&browser, &timeline, &["--dump-dom".into()]));
    assert!(
        counts["lanes"] >= 3 + 5,
        "3 nodes and the clients: {counts:?}"
    );
    assert!(counts["ops"] >= 100, "the operations drawn: {counts:?}");
    assert!(counts["bands"] >= 2, "the SIGTERMs as bands: {counts:?}");
    assert_eq!(counts["plots"], 2, "latency and throughput: {counts:?}");
    // S4 kills its leader: the survivors log the change, and each is a marker.
    assert!(
        counts["leaders"] >= 2,
        "leader changes as markers: {counts:?}"
    );
    assert_eq!(
        counts["violations"], 0,
        "a passing run names no operation: {counts:?}"
    );
    screenshot_is_not_blank(&browser, &timeline, &tmp.path().join("timeline.png"));

    // The index: a row per matrix cell; every link it has leads to a file or folder.
    let index = evidence.join("index.html");
    let dom = headless(&browser, &index, &["--dump-dom".into()]);
    let matrix = std::fs::read_to_string(workspace().join("scenarios/matrix.yaml")).unwrap();
    let cells = matrix.matches("\n  - cell: ").count();
    assert!(cells >= 13, "the committed matrix lists its cells: {cells}");
    assert_eq!(
        dom.matches(r#"<tr class="cell">"#).count(),
        cells,
        "every matrix cell:\n{dom}"
    );
    let links: Vec<&str> = dom
        .split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(
        links.contains(&"s4-chainfire-restart/timeline.html"),
        "{links:?}"
    );
    for link in &links {
        let target = if Path::new(link).is_absolute() {
            PathBuf::from(link)
        } else {
            evidence.join(link)
        };
        assert!(target.exists(), "a dead link in index.html: {link}");
    }
    screenshot_is_not_blank(&browser, &index, &tmp.path().join("index.png"));
}
