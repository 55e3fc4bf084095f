//! One test's world: a temp dir for its data dirs and logs, and its turn to run clusters.
//!
//! Tests of one test binary run their clusters one at a time: the machine has two shared cores,
//! and concurrent clusters would turn slowness into failures. The turn is a process-wide async
//! lock, so a waiting test does not block a runtime thread; it is held until the [`TestEnv`]
//! drops, after the processes started in it (declare the env first, so it drops last).
//!
//! Set `RECONNECT_TEST_KEEP=1` to keep the temp dir (full logs and data) for inspection.

use std::path::{Path, PathBuf};

use tokio::sync::{Mutex, MutexGuard};

/// The variable that keeps a test's temp dir.
pub const KEEP_VAR: &str = "RECONNECT_TEST_KEEP";

static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// A temp dir named after the test, held with the turn to run clusters.
pub struct TestEnv {
    name: String,
    dir: Option<tempfile::TempDir>,
    _turn: MutexGuard<'static, ()>,
}

impl TestEnv {
    /// Waits for this test's turn, then creates its temp dir (`<tmp>/<name>-XXXXXX`).
    pub async fn new(name: &str) -> TestEnv {
        let turn = ONE_CLUSTER_AT_A_TIME.lock().await;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("create the temp dir of test {name}: {e}"));
        TestEnv {
            name: name.to_owned(),
            dir: Some(dir),
            _turn: turn,
        }
    }

    /// The temp dir.
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .expect("the temp dir lives as long as the TestEnv")
            .path()
    }

    /// `file` inside the temp dir.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir().join(file)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        if std::env::var_os(KEEP_VAR).is_some_and(|v| !v.is_empty()) {
            eprintln!(
                "kept the logs and data of test {} in {}",
                self.name,
                dir.keep().display()
            );
        } else if std::thread::panicking() {
            eprintln!(
                "(set {KEEP_VAR}=1 to keep the data dirs and full logs of test {})",
                self.name
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_dir_goes_with_the_env_and_turns_are_taken_one_at_a_time() {
        let env = TestEnv::new("testkit-env").await;
        let dir = env.dir().to_owned();
        assert!(dir.is_dir());
        assert!(
            dir.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("testkit-env-"),
            "{}",
            dir.display()
        );
        assert_eq!(env.path("a.log"), dir.join("a.log"));
        let second = tokio::time::timeout(Duration::from_millis(200), TestEnv::new("second")).await;
        assert!(
            second.is_err(),
            "a second env got a turn while the first held it"
        );
        drop(env);
        let second = tokio::time::timeout(Duration::from_secs(30), TestEnv::new("second"))
            .await
            .expect("the turn is free once the first env dropped");
        assert!(!dir.exists() || std::env::var_os(KEEP_VAR).is_some());
        drop(second);
    }
}
