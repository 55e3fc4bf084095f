//! Reading node log files: finding lines that match a pattern (with the time the line was
//! logged, taken from its leading RFC 3339 timestamp as `tracing` writes it) and the last lines
//! of a log for error messages.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A complete line read from a log file.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Byte offset of the line's start in the file.
    pub offset: u64,
    /// The line without ANSI colour codes or the trailing newline.
    pub text: String,
    /// The timestamp the line starts with, if it has one.
    pub logged_at: Option<SystemTime>,
}

/// Reads the complete lines of `path` from byte `from` on; returns them and the offset just
/// after the last complete line (a partially written last line is left for the next read).
pub fn read_lines_from(path: &Path, from: u64) -> std::io::Result<(Vec<LogLine>, u64)> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let mut lines = Vec::new();
    let mut start = 0usize;
    while let Some(pos) = bytes[start..].iter().position(|b| *b == b'\n') {
        let raw = String::from_utf8_lossy(&bytes[start..start + pos]);
        let text = strip_ansi(raw.trim_end_matches('\r'));
        let logged_at = parse_leading_timestamp(&text);
        lines.push(LogLine {
            offset: from + start as u64,
            text,
            logged_at,
        });
        start += pos + 1;
    }
    Ok((lines, from + start as u64))
}

/// The last `n` lines of a log, for error messages ("(no log)" if it cannot be read).
pub fn tail(path: &Path, n: usize) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(16 * 1024);
    let mut bytes = Vec::new();
    if file
        .seek(SeekFrom::Start(from))
        .and_then(|_| file.read_to_end(&mut bytes))
        .is_err()
    {
        return format!("(cannot read {})", path.display());
    }
    let text = strip_ansi(&String::from_utf8_lossy(&bytes));
    let lines: Vec<&str> = text.lines().collect();
    let shown = &lines[lines.len().saturating_sub(n)..];
    if shown.is_empty() {
        "(log is empty)".to_string()
    } else {
        shown.join("\n")
    }
}

/// Removes ANSI escape sequences (`ESC [ ... letter`), which tracing adds when colours are on.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Parses an RFC 3339 timestamp at the start of a line (`2025-11-27T13:47:00.123456Z ...`,
/// offsets like `+01:00` accepted).
pub fn parse_leading_timestamp(line: &str) -> Option<SystemTime> {
    let token = line.split_whitespace().next()?;
    let b = token.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| token.get(r)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &token[19..];
    let mut nanos = 0u64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() {
            return None;
        }
        let scaled: String = digits
            .chars()
            .chain(std::iter::repeat('0'))
            .take(9)
            .collect();
        nanos = scaled.parse().ok()?;
        rest = &frac[digits.len()..];
    }
    let offset_secs = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && &rest[3..4] == ":" =>
        {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            let h: i64 = rest[1..3].parse().ok()?;
            let m: i64 = rest[4..6].parse().ok()?;
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos as u32))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracing_timestamps_are_parsed() {
        let t =
            parse_leading_timestamp("2025-11-27T13:47:00.123456Z  INFO chainfire: chainfire ready")
                .unwrap();
        let since = t.duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(since.as_secs(), 1_764_251_220);
        assert_eq!(since.subsec_micros(), 123_456);
        let shifted = parse_leading_timestamp("2025-11-27T14:47:00.123456+01:00 x").unwrap();
        assert_eq!(shifted, t);
        assert_eq!(
            parse_leading_timestamp("1970-01-01T00:00:01Z").unwrap(),
            UNIX_EPOCH + Duration::from_secs(1)
        );
        assert_eq!(parse_leading_timestamp("INFO no time here"), None);
        assert_eq!(parse_leading_timestamp("2025-13-27T13:47:00Z"), None);
    }

    #[test]
    fn colours_are_stripped_before_parsing() {
        let line =
            "\u{1b}[2m2025-11-27T13:47:00.5Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m Reconnected to PD";
        assert_eq!(
            strip_ansi(line),
            "2025-11-27T13:47:00.5Z  INFO Reconnected to PD"
        );
        assert!(parse_leading_timestamp(&strip_ansi(line)).is_some());
    }

    #[test]
    fn only_complete_lines_are_returned_and_offsets_continue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.log");
        std::fs::write(&path, "one\ntwo\npartial").unwrap();
        let (lines, next) = read_lines_from(&path, 0).unwrap();
        assert_eq!(
            lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
            ["one", "two"]
        );
        assert_eq!(lines[1].offset, 4);
        assert_eq!(next, 8);
        std::fs::write(&path, "one\ntwo\npartial line\n").unwrap();
        let (lines, _) = read_lines_from(&path, next).unwrap();
        assert_eq!(lines[0].text, "partial line");
        assert_eq!(tail(&path, 2), "two\npartial line");
    }
}
