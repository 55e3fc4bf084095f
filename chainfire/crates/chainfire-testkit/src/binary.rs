//! Where the binaries under test are. The Nix build runs the tests against its release build
//! and says so with `RECONNECT_BIN_DIR` (and `CHAINFIRE_BIN`); a plain `cargo test` finds them
//! in the target dir the test executable itself was built into (`target/<profile>/deps/..`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Where a binary may be, in the order asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidates(pub Vec<(String, PathBuf)>);

/// The places to look for binary `name`: `explicit` (the value of its own variable, e.g.
/// `CHAINFIRE_BIN`), else `bin_dir/name` (`RECONNECT_BIN_DIR`), else `name` in the profile dir
/// of the running test executable `exe` (`target/debug/deps/x-123` -> `target/debug/name`).
/// A variable that is set is the only place tried: a wrong setting must fail, not fall through
/// to a stale build.
pub fn candidates(
    name: &str,
    explicit: Option<(&str, OsString)>,
    bin_dir: Option<OsString>,
    exe: &Path,
) -> Candidates {
    if let Some((var, path)) = explicit {
        return Candidates(vec![(format!("${var}"), PathBuf::from(path))]);
    }
    if let Some(dir) = bin_dir {
        return Candidates(vec![(
            "$RECONNECT_BIN_DIR".to_owned(),
            PathBuf::from(dir).join(name),
        )]);
    }
    let mut found = Vec::new();
    // deps/ -> the profile dir; a test run from elsewhere (no deps/ parent) looks next to itself.
    let exe_dir = exe.parent().unwrap_or(Path::new("."));
    if exe_dir.file_name().is_some_and(|n| n == "deps")
        && let Some(profile_dir) = exe_dir.parent()
    {
        found.push(("the test's target dir".to_owned(), profile_dir.join(name)));
    }
    found.push(("next to the test".to_owned(), exe_dir.join(name)));
    Candidates(found)
}

/// Looks up binary `name` (see [`candidates`]), reading `explicit_var` and `RECONNECT_BIN_DIR`;
/// panics naming every place tried and how to fix it.
pub fn find_binary(name: &str, explicit_var: &str, build_hint: &str) -> PathBuf {
    let explicit = std::env::var_os(explicit_var)
        .filter(|v| !v.is_empty())
        .map(|v| (explicit_var, v));
    let bin_dir = std::env::var_os("RECONNECT_BIN_DIR").filter(|v| !v.is_empty());
    let exe = std::env::current_exe()
        .unwrap_or_else(|e| panic!("path of the running test executable (to find {name}): {e}"));
    let Candidates(places) = candidates(name, explicit, bin_dir, &exe);
    if let Some((_, path)) = places.iter().find(|(_, path)| path.is_file()) {
        return path.clone();
    }
    let tried: Vec<String> = places
        .iter()
        .map(|(from, path)| format!("{} ({from})", path.display()))
        .collect();
    panic!(
        "{name} binary not found; tried {}: {build_hint}, or set {explicit_var} or RECONNECT_BIN_DIR",
        tried.join(", ")
    );
}

/// The `chainfire` binary: `CHAINFIRE_BIN`, else `RECONNECT_BIN_DIR/chainfire`, else the test's
/// target dir. ChainFire's own tests pass `env!("CARGO_BIN_EXE_chainfire")` instead
/// ([`crate::ClusterOptions::with_binary`]).
pub fn chainfire_bin() -> PathBuf {
    find_binary(
        "chainfire",
        "CHAINFIRE_BIN",
        "build it with `cargo build -p chainfire-server` (same profile as the tests)",
    )
}

/// The `iam` binary: `IAM_BIN`, else `RECONNECT_BIN_DIR/iam`, else the test's target dir.
pub fn iam_bin() -> PathBuf {
    find_binary(
        "iam",
        "IAM_BIN",
        "build it with `cargo build -p iam-server` (same profile as the tests)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(c: &Candidates) -> Vec<PathBuf> {
        c.0.iter().map(|(_, p)| p.clone()).collect()
    }

    const EXE: &str = "/w/target/debug/deps/flaredb_tests-0123abcd";

    #[test]
    fn the_explicit_variable_wins_alone() {
        let c = candidates(
            "chainfire",
            Some(("CHAINFIRE_BIN", "/nix/cf".into())),
            Some("/bins".into()),
            Path::new(EXE),
        );
        assert_eq!(paths(&c), [PathBuf::from("/nix/cf")]);
        assert_eq!(c.0[0].0, "$CHAINFIRE_BIN");
    }

    #[test]
    fn the_bin_dir_comes_next() {
        let c = candidates("chainfire", None, Some("/bins".into()), Path::new(EXE));
        assert_eq!(paths(&c), [PathBuf::from("/bins/chainfire")]);
    }

    #[test]
    fn otherwise_the_profile_dir_of_the_test_executable() {
        let c = candidates("chainfire", None, None, Path::new(EXE));
        assert_eq!(
            paths(&c),
            [
                PathBuf::from("/w/target/debug/chainfire"),
                PathBuf::from("/w/target/debug/deps/chainfire"),
            ]
        );
        let c = candidates("flaredb", None, None, Path::new("/opt/tests/t"));
        assert_eq!(paths(&c), [PathBuf::from("/opt/tests/flaredb")]);
    }
}
