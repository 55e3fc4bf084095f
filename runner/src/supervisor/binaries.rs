//! Finding the server binaries: an explicit per-service path; else `--bin-dir` alone when it is
//! given (strict: a binary missing there is an error, never one found elsewhere); else the
//! folder of the runner's own executable (where `cargo build` and the Nix package put them),
//! then `PATH`. [`describe`] names the binary and its version, for the run's report.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{Service, SupervisorError};

/// Where to look for the server binaries.
#[derive(Debug, Clone, Default)]
pub struct BinaryPaths {
    /// `--bin-dir DIR`: looked in before the defaults.
    pub bin_dir: Option<PathBuf>,
    /// Explicit path of the `chainfire` binary; used alone when given.
    pub chainfire: Option<PathBuf>,
    /// Explicit path of the `flaredb` binary; used alone when given.
    pub flaredb: Option<PathBuf>,
}

impl BinaryPaths {
    /// The binary to run for `service`, or an error listing every place that was searched.
    pub fn locate(&self, service: Service) -> Result<PathBuf, SupervisorError> {
        // IAM and PlasmaVMC have no flag of their own: `--bin-dir`, next to the runner, or PATH.
        let not_given = None;
        let explicit = match service {
            Service::ChainFire => &self.chainfire,
            Service::FlareDb => &self.flaredb,
            Service::Iam | Service::PlasmaVmc => &not_given,
        };
        let candidates = match (explicit, &self.bin_dir) {
            (Some(path), _) => vec![path.clone()],
            (None, Some(dir)) => vec![dir.join(service.binary_name())],
            (None, None) => self.default_candidates(service.binary_name()),
        };
        if let Some(found) = candidates.iter().find(|p| is_executable(p)) {
            return Ok(found.clone());
        }
        // Say "not executable" when that is what it is, not "not found".
        if let Some(file) = candidates.iter().find(|p| p.is_file()) {
            return Err(SupervisorError::NotExecutable {
                service,
                path: file.clone(),
            });
        }
        Err(SupervisorError::MissingBinary {
            service,
            searched: candidates,
        })
    }

    fn default_candidates(&self, name: &str) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf))
        {
            dirs.push(dir.clone());
            // `cargo test` runs test binaries from target/<profile>/deps; the servers sit one up.
            if dir.ends_with("deps")
                && let Some(up) = dir.parent()
            {
                dirs.push(up.to_path_buf());
            }
        }
        if let Some(path) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&path));
        }
        dirs.into_iter().map(|d| d.join(name)).collect()
    }
}

/// `PATH (VERSION)` of a binary: what `--version` prints (bounded at 2 s), for the report.
pub fn describe(path: &Path) -> String {
    let version = std::process::Command::new(path)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "version unknown".into());
    format!("{} ({version})", path.display())
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_binary(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn bin_dir_is_searched_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = fake_binary(dir.path(), "chainfire");
        let paths = BinaryPaths {
            bin_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        assert_eq!(paths.locate(Service::ChainFire).unwrap(), path);
    }

    #[test]
    fn an_explicit_path_that_is_missing_is_an_error_naming_it() {
        let paths = BinaryPaths {
            flaredb: Some(PathBuf::from("/nonexistent/flaredb")),
            ..Default::default()
        };
        let err = paths.locate(Service::FlareDb).unwrap_err().to_string();
        assert!(
            err.contains("/nonexistent/flaredb") && err.contains("flaredb"),
            "{err}"
        );
    }

    #[test]
    fn a_non_executable_file_is_said_to_be_so() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("flaredb"), "").unwrap();
        let paths = BinaryPaths {
            flaredb: Some(dir.path().join("flaredb")),
            ..Default::default()
        };
        let err = paths.locate(Service::FlareDb).unwrap_err().to_string();
        assert!(err.contains("is not executable"), "{err}");
    }

    #[test]
    fn a_bin_dir_without_the_binary_is_an_error_even_if_path_has_one() {
        // `sh` is on PATH; a --bin-dir without it must not fall back to PATH's.
        let dir = tempfile::tempdir().unwrap();
        let paths = BinaryPaths {
            bin_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let err = paths.locate(Service::ChainFire).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "no chainfire binary found (searched: {})",
                dir.path().join("chainfire").display()
            )
        );
    }

    #[test]
    fn describe_names_the_path_and_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chainfire");
        std::fs::write(&path, "#!/bin/sh\necho chainfire 9.9.9\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            describe(&path),
            format!("{} (chainfire 9.9.9)", path.display())
        );
        let silent = fake_binary(dir.path(), "flaredb");
        assert!(describe(&silent).ends_with("(version unknown)"));
    }
}
