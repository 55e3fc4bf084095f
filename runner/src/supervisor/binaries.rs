//! Finding the server binaries: an explicit per-service path, then `--bin-dir`, then the folder
//! of the runner's own executable (where `cargo build` and the Nix package put them), then `PATH`.

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
        let explicit = match service {
            Service::ChainFire => &self.chainfire,
            Service::FlareDb => &self.flaredb,
        };
        let candidates = match explicit {
            Some(path) => vec![path.clone()],
            None => self.default_candidates(service.binary_name()),
        };
        candidates.iter().find(|p| is_executable(p)).cloned().ok_or(
            SupervisorError::MissingBinary {
                service,
                searched: candidates,
            },
        )
    }

    fn default_candidates(&self, name: &str) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        dirs.extend(self.bin_dir.clone());
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
    fn a_non_executable_file_does_not_count() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("flaredb"), "").unwrap();
        let paths = BinaryPaths {
            flaredb: Some(dir.path().join("flaredb")),
            ..Default::default()
        };
        assert!(paths.locate(Service::FlareDb).is_err());
    }
}
