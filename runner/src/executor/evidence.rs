//! The evidence folder is the runner's own: it is locked for the run (two runs cannot share
//! one), and a scenario's old evidence is cleared only when everything in it is something the
//! runner writes. A file of anyone else's found there stops the run before anything is deleted,
//! naming it, so nothing is ever lost.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::scenario::ScenarioFile;

/// The lock file in the evidence root; holds the pid of the run that holds it.
const LOCK_FILE: &str = ".reconnect-runner.lock";

/// Files and folders the runner writes in a scenario's (or a run's) evidence folder.
const SCENARIO_ENTRIES: &[&str] = &[
    "client.log",
    "history.jsonl",
    "ops.jsonl",
    crate::report::RESULT_FILE,
    "scenario.yaml",
    "summary.md",
    crate::report::timeline::TIMELINE_FILE,
    "worker.log",
    "nodes",
];

/// Held for the whole run: the evidence root's lock (released when dropped).
#[derive(Debug)]
pub struct EvidenceLock {
    _file: File,
}

/// Locks `root` (creating it) and clears the evidence folder of each scenario, refusing
/// anything the runner did not write.
pub fn prepare(root: &Path, scenarios: &[&ScenarioFile]) -> Result<EvidenceLock, String> {
    std::fs::create_dir_all(root)
        .map_err(|e| format!("cannot create the evidence folder {}: {e}", root.display()))?;
    let lock = lock(root)?;
    for f in scenarios {
        let dir = root.join(&f.scenario.id);
        if dir.exists() {
            if let Some(foreign) = foreign_entry(&dir) {
                return Err(format!(
                    "{} is not something reconnect-runner writes, so the old evidence in {} \
                     is not cleared; move it away or choose another --evidence folder",
                    foreign.display(),
                    dir.display()
                ));
            }
            std::fs::remove_dir_all(&dir)
                .map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    Ok(lock)
}

fn lock(root: &Path) -> Result<EvidenceLock, String> {
    let path = root.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot create the lock {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(format!(
                "another reconnect-runner run (pid {}) is using the evidence folder {}; wait \
                 for it or choose another --evidence folder",
                holder.trim(),
                root.display()
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(format!("cannot lock {}: {e}", path.display()));
        }
    }
    file.set_len(0)
        .and_then(|()| write!(file, "{}", std::process::id()))
        .map_err(|e| format!("cannot write the lock {}: {e}", path.display()))?;
    Ok(EvidenceLock { _file: file })
}

/// The first entry below `dir` the runner does not write, if any.
fn foreign_entry(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let is_dir = path.is_dir() && !path.is_symlink();
        let ours = if name.starts_with("run-") && is_dir {
            name[4..].parse::<u32>().is_ok() && foreign_entry(&path).is_none()
        } else if name == "nodes" && is_dir {
            match foreign_node_entry(&path) {
                Some(foreign) => return Some(foreign),
                None => continue,
            }
        } else {
            SCENARIO_ENTRIES.contains(&name.as_str()) && !path.is_symlink()
        };
        if !ours {
            return Some(if name.starts_with("run-") && is_dir {
                foreign_entry(&path).unwrap_or(path)
            } else {
                path
            });
        }
    }
    None
}

/// In `nodes/`: only `<service>-<n>.log` files and `<service>-<n>.data` folders.
fn foreign_node_entry(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let node = |suffix: &str| {
            name.strip_suffix(suffix)
                .and_then(|stem| stem.rsplit_once('-'))
                .is_some_and(|(service, n)| {
                    ["chainfire", "flaredb"].contains(&service) && n.parse::<u32>().is_ok()
                })
        };
        let ours = !path.is_symlink()
            && ((node(".log") && path.is_file()) || (node(".data") && path.is_dir()));
        if !ours {
            return Some(path);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::parse_file;

    fn scenario(dir: &Path) -> ScenarioFile {
        let path = dir.join("s.yaml");
        std::fs::write(
            &path,
            "id: s1-x\ntitle: t\ncovers: [{cell: S1/chainfire, status: TEST}]\nsteps:\n  - sleep: {ms: 1}\n",
        )
        .unwrap();
        parse_file(&path).unwrap()
    }

    fn old_run(root: &Path) -> PathBuf {
        let dir = root.join("s1-x");
        std::fs::create_dir_all(dir.join("nodes/chainfire-1.data")).unwrap();
        std::fs::write(dir.join("nodes/chainfire-1.log"), "log").unwrap();
        std::fs::write(dir.join("result.json"), "{}").unwrap();
        std::fs::create_dir_all(dir.join("run-2/nodes")).unwrap();
        std::fs::write(dir.join("run-2/history.jsonl"), "").unwrap();
        dir
    }

    #[test]
    fn the_runners_own_old_evidence_is_cleared() {
        let tmp = tempfile::tempdir().unwrap();
        let f = scenario(tmp.path());
        let root = tmp.path().join("ev");
        let dir = old_run(&root);
        let _lock = prepare(&root, &[&f]).unwrap();
        assert!(dir.is_dir());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "emptied");
    }

    #[test]
    fn a_file_of_someone_else_stops_the_run_and_nothing_is_deleted() {
        let tmp = tempfile::tempdir().unwrap();
        let f = scenario(tmp.path());
        let root = tmp.path().join("ev");
        for foreign in ["thesis.tex", "run-2/notes.txt", "nodes/backup.tar"] {
            let dir = old_run(&root);
            std::fs::write(dir.join(foreign), "precious").unwrap();
            let err = prepare(&root, &[&f]).unwrap_err();
            assert!(
                err.contains(foreign) && err.contains("is not something reconnect-runner writes"),
                "{err}"
            );
            assert_eq!(
                std::fs::read_to_string(dir.join(foreign)).unwrap(),
                "precious"
            );
            assert!(dir.join("result.json").exists(), "nothing deleted");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn two_runs_cannot_share_an_evidence_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let f = scenario(tmp.path());
        let root = tmp.path().join("ev");
        let first = prepare(&root, &[&f]).unwrap();
        let err = prepare(&root, &[&f]).unwrap_err();
        assert!(
            err.contains(&format!(
                "another reconnect-runner run (pid {})",
                std::process::id()
            )),
            "{err}"
        );
        drop(first);
        prepare(&root, &[&f]).unwrap();
    }
}
