//! How one failed attempt is classified: a broken connection, "cannot answer now", "not the
//! leader" (with the hint the server gave), or a final answer; and how its cause is worded.
//! ChainFire and FlareDB answer "not leader" the same way, under their own metadata keys
//! ([`NotLeaderReply`]).
//!
//! It also decides what the failed attempt did to the server ([`Effect`]): nothing for sure, or
//! possibly a proposed write. [`effect_of`] is the whole mapping, in one place.

use std::error::Error as _;
use std::time::Duration;

use tonic::Code;

/// How a server says "not leader": the FAILED_PRECONDITION message and the metadata keys that
/// carry the leader's id and client address, and what a member is called in causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotLeaderReply {
    /// The message starts with this (`"not leader"`).
    pub message: &'static str,
    /// Metadata key: the leader's id (0 or absent when unknown).
    pub leader_id_key: &'static str,
    /// Metadata key: the leader's client address, when known.
    pub leader_addr_key: &'static str,
    /// What the cluster's members are called: `"node"` gives `not leader (leader is node 3)`.
    pub member: &'static str,
}

/// What the client does after one failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The connection is broken or silent (refused, reset, no answer in time): retry after
    /// backoff on the next endpoint (a pooling client also drops the connection).
    Transport,
    /// The server answered "cannot now" (e.g. no quorum): retry after backoff.
    Retry,
    /// The server is not the leader: follow the hint at once, or retry.
    NotLeader,
    /// The answer is final: retrying cannot change it.
    Fatal,
}

/// Where an attempt failed, as far as the client can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePoint {
    /// No request left the client: no endpoint was known, no client could be made for the
    /// endpoint, or the connection could not be made (tonic's `ConnectError`: refused,
    /// unreachable, bad address).
    NotSent,
    /// The request was, or may have been, sent, but no answer came: the per-attempt timeout
    /// fired, or the connection was reset or closed under it (any status made on this side of
    /// the wire that is not a connect error).
    NoAnswer,
    /// The server answered with a status.
    Answered,
}

/// What a failed attempt did to the server's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Definitely not applied: the request never reached a server, or the server refused it
    /// before proposing it to Raft (or the state machine refused it, changing nothing).
    None,
    /// The request may have been proposed and may still commit: applied once or not at all.
    Unknown,
}

/// The effect of a failed attempt on the server, from where it failed and, for an answer, its
/// gRPC code and message: the mapping from status and failure point to "fail" (definitely not
/// applied) or "info" (outcome unknown), written down in one place.
///
/// | failure point | code / message | effect | why |
/// |---|---|---|---|
/// | not sent (no endpoint, unusable endpoint, connect refused/failed) | any | `None` | no byte of the request left the client |
/// | no answer (local per-attempt timeout, reset / broken connection, h2 error) | any | `Unknown` | the server may have received and proposed it |
/// | answered | FAILED_PRECONDITION starting with the "not leader" message | `None` | both servers answer it only from their own leadership check, before proposing |
/// | answered | INVALID_ARGUMENT | `None` | request checks (empty key, ttl, missing compare) run before proposing; the state machine's own refusals change nothing |
/// | answered | NOT_FOUND, ALREADY_EXISTS | `None` | ChainFire's lease lookups and the state machine's lease refusals: nothing changed |
/// | answered | OUT_OF_RANGE | `None` | a watch or read from a compacted revision: no write |
/// | answered | UNIMPLEMENTED | `None` | the server has no such method |
/// | answered | UNAVAILABLE (e.g. "no quorum: write not committed", leadership lost while proposing, shutting down) | `Unknown` | proposed, not committed in time: it may still commit |
/// | answered | DEADLINE_EXCEEDED, CANCELLED | `Unknown` | the server gave up waiting, possibly after proposing |
/// | answered | INTERNAL, UNKNOWN, ABORTED, other FAILED_PRECONDITION, anything else | `Unknown` | not recognised: assume the worst |
///
/// "Not leader" is safe to call `None` because both servers check leadership themselves before
/// handing a write to openraft and answer "not leader" only then. openraft 0.9 also says
/// "forward to leader" for an entry it had appended when a new leader overwrote it; the servers
/// answer that one UNAVAILABLE ("leadership lost while proposing"): `Unknown`.
pub fn effect_of(
    point: FailurePoint,
    code: Option<Code>,
    message: &str,
    reply: &NotLeaderReply,
) -> Effect {
    match (point, code) {
        (FailurePoint::NotSent, _) => Effect::None,
        (FailurePoint::NoAnswer, _) | (FailurePoint::Answered, None) => Effect::Unknown,
        (FailurePoint::Answered, Some(code)) => match code {
            Code::FailedPrecondition if message.starts_with(reply.message) => Effect::None,
            Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::OutOfRange
            | Code::Unimplemented => Effect::None,
            _ => Effect::Unknown,
        },
    }
}

/// One failed attempt.
#[derive(Debug, Clone)]
pub struct Failure {
    pub endpoint: String,
    /// gRPC code; `None` for a local timeout or an unusable endpoint.
    pub code: Option<Code>,
    /// Human-readable cause, e.g. `unavailable: tcp connect error: Connection refused`.
    pub cause: String,
    pub kind: FailureKind,
    /// From "not leader" metadata: the leader's id (0 = unknown) and client address.
    pub leader_id: u64,
    pub leader_addr: Option<String>,
    /// What this attempt did to the server ([`effect_of`]).
    pub effect: Effect,
}

impl Failure {
    /// A local per-attempt timeout: the endpoint did not answer within `after`.
    pub fn timeout(endpoint: &str, after: Duration) -> Self {
        Self::local(
            endpoint,
            format!("deadline exceeded: no answer within {after:?}"),
            FailureKind::Transport,
            FailurePoint::NoAnswer,
        )
    }

    /// No endpoint is known yet (none configured and the directory listed none).
    pub fn no_endpoint(cause: &str) -> Self {
        Self::local(
            "(none)",
            format!("no store endpoint known: {cause}"),
            FailureKind::Retry,
            FailurePoint::NotSent,
        )
    }

    /// No connection can be made to `endpoint` at all (e.g. it is not an address).
    pub fn unusable_endpoint(endpoint: &str, cause: String) -> Self {
        Self::local(endpoint, cause, FailureKind::Fatal, FailurePoint::NotSent)
    }

    fn local(endpoint: &str, cause: String, kind: FailureKind, point: FailurePoint) -> Self {
        Self {
            endpoint: endpoint.to_string(),
            code: None,
            cause,
            kind,
            leader_id: 0,
            leader_addr: None,
            effect: effect_of(point, None, "", &NOT_LEADER_UNUSED),
        }
    }

    /// Classifies a gRPC status from `endpoint`.
    pub fn from_status(endpoint: &str, status: &tonic::Status, reply: &NotLeaderReply) -> Self {
        let code = status.code();
        // A status made on this side of the wire (connect refused, connection reset, h2 error)
        // carries its source error; one decoded from a server's answer does not.
        let local = status.source().is_some();
        let not_leader =
            code == Code::FailedPrecondition && status.message().starts_with(reply.message);
        let kind = if not_leader {
            FailureKind::NotLeader
        } else if local
            && matches!(
                code,
                Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
            )
        {
            FailureKind::Transport
        } else if is_retryable_code(code) {
            FailureKind::Retry
        } else {
            FailureKind::Fatal
        };
        let point = if !local {
            FailurePoint::Answered
        } else if is_connect_error(status) {
            FailurePoint::NotSent
        } else {
            FailurePoint::NoAnswer
        };
        let effect = effect_of(point, Some(code), status.message(), reply);
        let meta = status.metadata();
        let leader_id = meta
            .get(reply.leader_id_key)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let leader_addr = meta
            .get(reply.leader_addr_key)
            .and_then(|v| v.to_str().ok())
            .map(normalize_endpoint)
            .filter(|v| !v.is_empty());
        let cause = if not_leader {
            match leader_id {
                0 => format!("{} (no leader known)", reply.message),
                id => format!("{} (leader is {} {id})", reply.message, reply.member),
            }
        } else {
            describe_status(status)
        };
        Self {
            endpoint: endpoint.to_string(),
            code: Some(code),
            cause,
            kind,
            leader_id,
            leader_addr,
            effect,
        }
    }

    pub fn retryable(&self) -> bool {
        self.kind != FailureKind::Fatal
    }
}

/// Local failures carry no message to match; any reply does for them.
const NOT_LEADER_UNUSED: NotLeaderReply = NotLeaderReply {
    message: "not leader",
    leader_id_key: "",
    leader_addr_key: "",
    member: "",
};

/// Whether the status's source chain holds tonic's `ConnectError`: no connection was made, so
/// the request was not sent.
fn is_connect_error(status: &tonic::Status) -> bool {
    let mut source = status.source();
    while let Some(err) = source {
        if err.downcast_ref::<tonic::ConnectError>().is_some() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Codes that mean "the cluster could not answer now", never "the answer is no".
fn is_retryable_code(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted
    )
}

/// `http://host:port/` and `host:port` name the same endpoint; keep the short form.
pub fn normalize_endpoint(endpoint: &str) -> String {
    let e = endpoint.trim();
    let e = e
        .strip_prefix("http://")
        .or_else(|| e.strip_prefix("https://"))
        .unwrap_or(e);
    e.trim_end_matches('/').to_string()
}

/// `unavailable: tcp connect error: Connection refused`, with the source chain, since tonic
/// puts the useful part (refused, reset) there.
pub fn describe_status(status: &tonic::Status) -> String {
    let mut text = format!("{}: {}", code_name(status.code()), status.message());
    let mut source = status.source();
    while let Some(err) = source {
        let part = err.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = err.source();
    }
    text
}

/// gRPC code names as the gRPC docs write them, lower case (tonic's descriptions are
/// sentences; the short names read better in one-line errors).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use tonic::metadata::MetadataMap;

    use super::*;

    const REPLY: NotLeaderReply = NotLeaderReply {
        message: "not leader",
        leader_id_key: "x-test-leader-id",
        leader_addr_key: "x-test-leader-addr",
        member: "node",
    };

    fn not_leader(id: Option<&str>, addr: Option<&str>) -> tonic::Status {
        let mut meta = MetadataMap::new();
        if let Some(id) = id {
            meta.insert(REPLY.leader_id_key, id.parse().unwrap());
        }
        if let Some(addr) = addr {
            meta.insert(REPLY.leader_addr_key, addr.parse().unwrap());
        }
        tonic::Status::with_metadata(Code::FailedPrecondition, "not leader", meta)
    }

    #[test]
    fn not_leader_reads_the_hint_from_the_configured_keys() {
        let f = Failure::from_status("a:1", &not_leader(Some("3"), Some(" http://c:3/ ")), &REPLY);
        assert_eq!(f.kind, FailureKind::NotLeader);
        assert_eq!((f.leader_id, f.leader_addr.as_deref()), (3, Some("c:3")));
        assert_eq!(f.cause, "not leader (leader is node 3)");
        let f = Failure::from_status("a:1", &not_leader(None, Some("http://")), &REPLY);
        assert_eq!((f.leader_id, f.leader_addr), (0, None));
        assert_eq!(f.cause, "not leader (no leader known)");
        let store = NotLeaderReply {
            member: "store",
            ..REPLY
        };
        let f = Failure::from_status("a:1", &not_leader(Some("2"), None), &store);
        assert_eq!(f.cause, "not leader (leader is store 2)");
    }

    #[test]
    fn local_transport_errors_differ_from_server_answers() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let mut local = tonic::Status::unavailable("tcp connect error");
        local.set_source(std::sync::Arc::new(io));
        let f = Failure::from_status("a:1", &local, &REPLY);
        assert_eq!(f.kind, FailureKind::Transport);
        assert_eq!(
            f.cause,
            "unavailable: tcp connect error: Connection refused"
        );
        let mut reset = tonic::Status::unknown("h2 protocol error");
        reset.set_source(std::sync::Arc::new(std::io::Error::other(
            "connection reset",
        )));
        assert_eq!(
            Failure::from_status("a:1", &reset, &REPLY).kind,
            FailureKind::Transport
        );
        for (status, kind) in [
            (tonic::Status::unavailable("no quorum"), FailureKind::Retry),
            (tonic::Status::deadline_exceeded("slow"), FailureKind::Retry),
            (tonic::Status::aborted("conflict"), FailureKind::Retry),
            (
                tonic::Status::unknown("from the server"),
                FailureKind::Fatal,
            ),
            (tonic::Status::not_found("lease 7"), FailureKind::Fatal),
            (
                tonic::Status::failed_precondition("compacted"),
                FailureKind::Fatal,
            ),
        ] {
            assert_eq!(
                Failure::from_status("a:1", &status, &REPLY).kind,
                kind,
                "{status:?}"
            );
        }
        assert!(!Failure::unusable_endpoint("bad", "no address".into()).retryable());
        assert!(Failure::no_endpoint("PD lists no store").retryable());
    }

    const ALL_CODES: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    #[test]
    fn effect_table_every_row() {
        use Effect::{None as Not, Unknown};
        use FailurePoint::*;
        // Not sent: nothing can have happened, whatever the code.
        for code in ALL_CODES.map(Some).into_iter().chain([None]) {
            assert_eq!(effect_of(NotSent, code, "x", &REPLY), Not, "{code:?}");
            assert_eq!(effect_of(NoAnswer, code, "x", &REPLY), Unknown, "{code:?}");
        }
        // Answered: each code, with a message that is not "not leader".
        let answered = |code| effect_of(Answered, Some(code), "something", &REPLY);
        for code in ALL_CODES {
            let expected = match code {
                Code::InvalidArgument
                | Code::NotFound
                | Code::AlreadyExists
                | Code::OutOfRange
                | Code::Unimplemented => Not,
                _ => Unknown,
            };
            assert_eq!(answered(code), expected, "{code:?}");
        }
        let not_leader = "not leader; leader is node 2 at 127.0.0.1:2379";
        assert_eq!(
            effect_of(Answered, Some(Code::FailedPrecondition), not_leader, &REPLY),
            Not
        );
        assert_eq!(
            effect_of(Answered, Some(Code::Unavailable), not_leader, &REPLY),
            Unknown,
            "only FAILED_PRECONDITION is the not-leader answer"
        );
        assert_eq!(
            effect_of(
                Answered,
                Some(Code::Unavailable),
                "no quorum: write not committed within 1500ms (leader 1, term 2)",
                &REPLY
            ),
            Unknown
        );
        assert_eq!(effect_of(Answered, None, "", &REPLY), Unknown);
    }

    #[test]
    fn failures_carry_the_effect_of_their_failure_point() {
        use std::sync::Arc;
        // Connect refused: tonic wraps the connector's error in a ConnectError.
        let mut refused = tonic::Status::unavailable("tcp connect error");
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        refused.set_source(Arc::new(tonic::ConnectError(Box::new(io))));
        let f = Failure::from_status("a:1", &refused, &REPLY);
        assert_eq!((f.kind, f.effect), (FailureKind::Transport, Effect::None));
        // A reset after sending: local, but not a connect error.
        let mut reset = tonic::Status::unknown("h2 protocol error");
        reset.set_source(Arc::new(std::io::Error::other("connection reset")));
        assert_eq!(
            Failure::from_status("a:1", &reset, &REPLY).effect,
            Effect::Unknown
        );
        let mut broken = tonic::Status::unavailable("connection closed");
        broken.set_source(Arc::new(std::io::Error::other("broken pipe")));
        assert_eq!(
            Failure::from_status("a:1", &broken, &REPLY).effect,
            Effect::Unknown
        );
        assert_eq!(
            Failure::timeout("a:1", Duration::from_secs(2)).effect,
            Effect::Unknown
        );
        assert_eq!(Failure::no_endpoint("none").effect, Effect::None);
        assert_eq!(
            Failure::unusable_endpoint("bad", "no address".into()).effect,
            Effect::None
        );
        // Server answers.
        for (status, effect) in [
            (not_leader(Some("2"), None), Effect::None),
            (
                tonic::Status::invalid_argument("key must not be empty"),
                Effect::None,
            ),
            (tonic::Status::not_found("lease 7 not found"), Effect::None),
            (tonic::Status::out_of_range("compacted"), Effect::None),
            (
                tonic::Status::unavailable("no quorum: write not committed"),
                Effect::Unknown,
            ),
            (tonic::Status::deadline_exceeded("slow"), Effect::Unknown),
            (
                tonic::Status::internal("unexpected result"),
                Effect::Unknown,
            ),
            (
                tonic::Status::failed_precondition("compacted"),
                Effect::Unknown,
            ),
        ] {
            assert_eq!(
                Failure::from_status("a:1", &status, &REPLY).effect,
                effect,
                "{status:?}"
            );
        }
    }

    #[test]
    fn code_names_are_the_codes_in_lower_case_words() {
        for code in ALL_CODES {
            let words: String = format!("{code:?}")
                .chars()
                .enumerate()
                .flat_map(|(i, c)| {
                    let sep = (i > 0 && c.is_ascii_uppercase()).then_some(' ');
                    sep.into_iter().chain([c.to_ascii_lowercase()])
                })
                .collect();
            assert_eq!(code_name(code), words);
        }
    }

    #[test]
    fn endpoints_are_normalized() {
        assert_eq!(
            normalize_endpoint(" http://127.0.0.1:5000/ "),
            "127.0.0.1:5000"
        );
        assert_eq!(normalize_endpoint("https://a:1"), "a:1");
        assert_eq!(normalize_endpoint("127.0.0.1:5000"), "127.0.0.1:5000");
    }
}
