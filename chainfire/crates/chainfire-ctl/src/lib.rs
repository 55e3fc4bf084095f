//! What the command-line clients (`chainfire-ctl`, `flaredb-ctl`) share: how a result is
//! printed (a line of text, or with `--json` one JSON object per line) and how they exit (0,
//! or 1 with `NAME: error: ...` on stderr).

use std::process::ExitCode;

use serde_json::{Value, json};

/// Bytes as text (keys and values are UTF-8 in practice; anything else is shown lossily).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Prints `value` as one JSON line, or `line` as text.
pub fn emit(json: bool, value: Value, line: impl FnOnce() -> String) {
    if json {
        println!("{value}");
    } else {
        println!("{}", line());
    }
}

/// The exit of a command named `name`.
pub fn exit(name: &str, result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints one line per endpoint of `statuses`: an answer as `render` shows it (its JSON and
/// text), a failure as `{"endpoint", "error"}`. An error saying `none` when no endpoint answered.
pub fn emit_statuses<S, E: std::fmt::Display>(
    json: bool,
    statuses: Vec<(String, Result<S, E>)>,
    none: &str,
    render: impl Fn(&str, &S) -> (Value, String),
) -> Result<(), String> {
    let mut any = false;
    for (endpoint, status) in statuses {
        match status {
            Ok(s) => {
                any = true;
                let (value, line) = render(&endpoint, &s);
                emit(json, value, || line);
            }
            Err(e) => emit(
                json,
                json!({"endpoint": endpoint, "error": e.to_string()}),
                || format!("{endpoint}: {e}"),
            ),
        }
    }
    if any { Ok(()) } else { Err(none.to_owned()) }
}

/// The first status that answered, or an error saying `none`.
pub fn first_answer<S, E>(statuses: Vec<(String, Result<S, E>)>, none: &str) -> Result<S, String> {
    statuses
        .into_iter()
        .find_map(|(_, s)| s.ok())
        .ok_or_else(|| none.to_owned())
}

/// One member of a group, as both services' Status lists it.
pub struct MemberRow<'a> {
    pub id: u64,
    pub client_addr: &'a str,
    pub peer_addr: &'a str,
}

/// Prints the members, the leader marked.
pub fn emit_members<'a>(
    json: bool,
    members: impl IntoIterator<Item = MemberRow<'a>>,
    leader_id: u64,
) {
    for m in members {
        let leader = m.id == leader_id;
        emit(
            json,
            json!({"id": m.id, "client_addr": m.client_addr, "peer_addr": m.peer_addr, "leader": leader}),
            || {
                format!(
                    "{}: client {} peer {}{}",
                    m.id,
                    m.client_addr,
                    m.peer_addr,
                    if leader { " (leader)" } else { "" }
                )
            },
        );
    }
}
