//! Reading the logs of processes under test: the tail that goes into failure messages, and
//! waiting for a line (readiness, "Reconnected to PD", ...) written after a given offset.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

/// How much of a log's end [`tail`] reads: enough for any sensible number of lines.
const TAIL_BYTES: u64 = 64 * 1024;

/// The start of the line the harness writes into a log before each start of its process. It
/// quotes the command line, so waiting for a line skips it: a flag must not look like output.
pub const HARNESS_LINE_PREFIX: &str = "=== harness: ";

/// The last `lines` lines of the file at `path` (read from its last 64 KiB), or a note that
/// there is no such file.
pub fn tail(path: &Path, lines: usize) -> String {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) => return format!("(no log at {}: {e})", path.display()),
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let mut bytes = Vec::new();
    if let Err(e) = file
        .seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)))
        .and_then(|_| file.read_to_end(&mut bytes))
    {
        return format!("(cannot read log {}: {e})", path.display());
    }
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The size of the file at `path` now (0 if there is none): pass it to [`wait_for_log`] to look
/// only at lines written after this moment.
pub fn log_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Waits until a complete line containing `pattern` is written to `path` after byte offset
/// `from` (the harness's own lines do not count); returns that line and when it was seen, or `None` after `bound`. Reads only what is
/// new on each poll (every 25 ms), so a chatty DEBUG log costs nothing extra.
pub async fn wait_for_log(
    path: &Path,
    from: u64,
    pattern: &str,
    bound: Duration,
) -> Option<(String, Instant)> {
    let started = Instant::now();
    let mut scanner = LineScanner::new(from);
    loop {
        if let Some(line) = scanner.scan(path, pattern) {
            return Some((line, Instant::now()));
        }
        if started.elapsed() > bound {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Reads a growing file incrementally, line by line, from an offset.
pub(crate) struct LineScanner {
    offset: u64,
    /// The unfinished last line of what was read so far.
    partial: Vec<u8>,
}

impl LineScanner {
    pub(crate) fn new(from: u64) -> Self {
        Self {
            offset: from,
            partial: Vec::new(),
        }
    }

    /// The first complete new line containing `pattern` (not a harness line), if one was written
    /// since the last call.
    pub(crate) fn scan(&mut self, path: &Path, pattern: &str) -> Option<String> {
        let mut file = File::open(path).ok()?;
        file.seek(SeekFrom::Start(self.offset)).ok()?;
        let mut fresh = Vec::new();
        let read = file.read_to_end(&mut fresh).ok()?;
        self.offset += read as u64;
        self.partial.extend_from_slice(&fresh);
        let complete = self.partial.iter().rposition(|&b| b == b'\n')? + 1;
        let lines: Vec<u8> = self.partial.drain(..complete).collect();
        String::from_utf8_lossy(&lines)
            .lines()
            .find(|line| line.contains(pattern) && !line.starts_with(HARNESS_LINE_PREFIX))
            .map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail(&path, 2), "c\nd");
        assert_eq!(tail(&path, 10), "a\nb\nc\nd");
        let missing = tail(&dir.path().join("none.log"), 3);
        assert!(missing.starts_with("(no log at "), "{missing}");
    }

    #[test]
    fn the_scanner_sees_only_new_complete_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, "old ready\n=== harness: starting x: x --ready\n").unwrap();
        assert_eq!(
            LineScanner::new(0).scan(&path, "--ready"),
            None,
            "the harness line quoting the command is not output"
        );
        let mut scanner = LineScanner::new(log_len(&path));
        assert_eq!(
            scanner.scan(&path, "ready"),
            None,
            "the old line is before the mark"
        );
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        write!(file, "new rea").unwrap();
        assert_eq!(
            scanner.scan(&path, "ready"),
            None,
            "half a line is not a line"
        );
        writeln!(file, "dy at last").unwrap();
        assert_eq!(
            scanner.scan(&path, "ready").as_deref(),
            Some("new ready at last")
        );
    }

    #[tokio::test]
    async fn waiting_for_a_line_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, "booting\n").unwrap();
        let writer = {
            let path = path.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
                writeln!(file, "service ready on 127.0.0.1:1").unwrap();
            })
        };
        let (line, _) = wait_for_log(&path, 0, "ready", Duration::from_secs(30))
            .await
            .expect("the line written after 100 ms");
        assert_eq!(line, "service ready on 127.0.0.1:1");
        writer.await.unwrap();
        let none = wait_for_log(&path, log_len(&path), "ready", Duration::from_millis(200)).await;
        assert_eq!(none, None);
    }
}
