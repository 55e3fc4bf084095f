//! Helpers the runner's integration tests share: where the workspace is, whether this machine
//! can make network namespaces, how to show a run's output, and how to find a JUnit testcase.

#![allow(dead_code)] // each test crate uses its own subset

use std::path::{Path, PathBuf};
use std::process::Output;

use quick_junit::Report;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Tests that start clusters need network namespaces; the Nix build sandbox has none and says
/// so with `RECONNECT_TESTS_NO_NETNS`.
pub fn namespaces_disabled(test: &str) -> bool {
    let disabled = std::env::var_os("RECONNECT_TESTS_NO_NETNS").is_some_and(|v| !v.is_empty());
    if disabled {
        eprintln!(
            "skipped: {test}: needs network namespaces/iptables (RECONNECT_TESTS_NO_NETNS=1)"
        );
    }
    disabled
}

pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn case<'a>(report: &'a Report, classname: &str, name: &str) -> &'a quick_junit::TestCase {
    report
        .test_suites
        .iter()
        .flat_map(|s| &s.test_cases)
        .find(|c| c.classname.as_deref() == Some(classname) && c.name.as_str() == name)
        .unwrap_or_else(|| panic!("no testcase {classname} / {name}"))
}
