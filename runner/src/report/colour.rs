//! Colour on a terminal only: `--color auto|always|never`, and `NO_COLOR` (no-color.org)
//! honoured under `auto`. Decided once per run by the main process, which is also the only
//! one that writes to the terminal (workers' lines are relayed through it), so `worker.log`,
//! `summary.md` and CI logs stay plain text. The escape codes come from `anstyle`.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};

use anstyle::{AnsiColor, Style};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether to colour, from the choice, `NO_COLOR` and whether stderr is a terminal.
pub fn decide(choice: clap::ColorChoice, no_color: Option<&str>, terminal: bool) -> bool {
    match choice {
        clap::ColorChoice::Always => true,
        clap::ColorChoice::Never => false,
        clap::ColorChoice::Auto => no_color.is_none_or(str::is_empty) && terminal,
    }
}

/// Decides for this process (see [`decide`]).
pub fn init(choice: clap::ColorChoice) {
    let no_color = std::env::var("NO_COLOR").ok();
    let on = decide(choice, no_color.as_deref(), std::io::stderr().is_terminal());
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

fn paint_with(style: Style, text: &str) -> String {
    format!("{}{text}{}", style.render(), style.render_reset())
}

const GOOD: Style = AnsiColor::Green.on_default();
const BAD: Style = AnsiColor::Red.on_default().bold();
const FAULT: Style = AnsiColor::Magenta.on_default().bold();
const QUIET: Style = AnsiColor::Yellow.on_default();

/// A progress line, its verdict or fault marker coloured (the line as it is when colour is
/// off). The words are the progress lines' own (`executor::progress`).
pub fn progress_line(line: &str) -> String {
    if !enabled() {
        return line.to_owned();
    }
    paint_line(line)
}

fn paint_line(line: &str) -> String {
    for (word, style) in [
        (" ok after ", GOOD),
        (" FAILED after ", BAD),
        (" ERROR after ", BAD),
        (" SKIPPED after ", QUIET),
        (" FAULT ", FAULT),
        (" still waiting ", QUIET),
    ] {
        if let Some(at) = line.find(word) {
            let (head, rest) = line.split_at(at);
            let (word, tail) = rest.split_at(word.len());
            return format!("{head}{}{tail}", paint_with(style, word));
        }
    }
    line.to_owned()
}

/// The header of a cell repeated in full after the table (`--- FAIL: ...`).
pub fn failure_header(line: &str) -> String {
    if enabled() {
        paint_with(BAD, line)
    } else {
        line.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_and_never_under_no_color() {
        use clap::ColorChoice::*;
        assert!(decide(Auto, None, true));
        assert!(!decide(Auto, None, false), "not on a pipe or a CI log");
        assert!(!decide(Auto, Some("1"), true), "NO_COLOR");
        assert!(decide(Auto, Some(""), true), "an empty NO_COLOR is unset");
        assert!(decide(Always, Some("1"), false));
        assert!(!decide(Never, None, true));
    }

    #[test]
    fn verdicts_and_faults_are_painted_and_nothing_else_changes() {
        let ok = "[s1 +   0.7s] step  2/32 ok after 15 ms: ok after 2 attempt(s)";
        let painted = paint_line(ok);
        assert!(
            painted.contains("\u{1b}[32m ok after \u{1b}[0m"),
            "{painted:?}"
        );
        assert!(
            painted.ends_with(": ok after 2 attempt(s)"),
            "only the first: {painted:?}"
        );
        let fault = paint_line("[s1 +   0.7s] step  5/32 FAULT block all ports of leader");
        assert!(fault.contains("\u{1b}["), "{fault:?}");
        let plain = "[s1 +   0.0s] starting chainfire x3";
        assert_eq!(paint_line(plain), plain);
        // Off (the default of a process that never decided): lines pass as they are.
        assert_eq!(progress_line(ok), ok);
    }
}
