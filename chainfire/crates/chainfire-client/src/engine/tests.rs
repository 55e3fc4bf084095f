//! The engine against a scripted cluster: no network, just a router that records what it is
//! told and an RPC that answers from a script.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tonic::Code;
use tonic::metadata::MetadataMap;

use super::*;

crate::retry_log!(TestLog => "chainfire_client::engine::tests");

const REPLY: NotLeaderReply = NotLeaderReply {
    message: "not leader",
    leader_id_key: "x-test-leader-id",
    leader_addr_key: "x-test-leader-addr",
    member: "node",
};

/// Endpoints "a", "b", "c"; a "not leader" hint is followed when it names an address.
#[derive(Default)]
struct Scripted {
    current: Mutex<usize>,
    lookups: Mutex<usize>,
    log: Mutex<Vec<String>>,
}

impl Scripted {
    fn note(&self, line: String) {
        self.log.lock().unwrap().push(line);
    }
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Endpoints for Scripted {
    /// The endpoint the RPC is sent to.
    type Client = String;
    type Log = TestLog;
    const NOT_LEADER: NotLeaderReply = REPLY;

    fn pick(&self, pick: &mut Pick) -> impl Future<Output = Result<String, Failure>> + Send {
        if !pick.looked_up {
            pick.looked_up = true;
            *self.lookups.lock().unwrap() += 1;
        }
        let endpoint = ["a", "b", "c"][*self.current.lock().unwrap() % 3].to_string();
        std::future::ready(Ok(endpoint))
    }

    fn client(&self, endpoint: &str) -> Result<String, String> {
        match endpoint {
            "bad" => Err("bad is not an address".into()),
            e => Ok(e.to_string()),
        }
    }

    fn on_not_leader(&self, endpoint: &str, failure: &Failure) -> Option<String> {
        self.note(format!(
            "not leader {endpoint} -> {:?}",
            failure.leader_addr
        ));
        failure.leader_addr.clone()
    }

    fn on_failure(&self, endpoint: &str, failure: &Failure) {
        self.note(format!("failure {endpoint} {:?}", failure.kind));
        *self.current.lock().unwrap() += 1;
    }
}

impl LearnFrom<u32> for Scripted {
    fn on_answer(&self, endpoint: &str, route: Route, answer: &u32) {
        self.note(format!("answer {answer} from {endpoint} via {route:?}"));
    }
}

fn not_leader(addr: Option<&str>) -> tonic::Status {
    let mut meta = MetadataMap::new();
    meta.insert(REPLY.leader_id_key, "2".parse().unwrap());
    if let Some(addr) = addr {
        meta.insert(REPLY.leader_addr_key, addr.parse().unwrap());
    }
    tonic::Status::with_metadata(Code::FailedPrecondition, "not leader", meta)
}

type Script = Arc<Mutex<VecDeque<Result<u32, tonic::Status>>>>;

/// Answers from `script` in order, recording which endpoint each RPC went to.
fn scripted_rpc(
    script: Script,
    sent: Arc<Mutex<Vec<String>>>,
) -> impl Fn(String, Duration) -> std::future::Ready<Result<tonic::Response<u32>, tonic::Status>> {
    move |endpoint, _budget| {
        sent.lock().unwrap().push(endpoint);
        let next = script.lock().unwrap().pop_front().expect("script ran out");
        std::future::ready(next.map(tonic::Response::new))
    }
}

fn fast_policy(max_retries: usize) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        initial_delay: Duration::from_millis(5),
        multiplier: 2.0,
        max_delay: Duration::from_millis(20),
        jitter: 0.0,
    }
}

fn call(policy: &RetryPolicy) -> Call<'_> {
    Call {
        op: "put",
        key: Some(b"k"),
        route: Route::Leader,
        policy,
    }
}

fn script(steps: Vec<Result<u32, tonic::Status>>) -> Script {
    Arc::new(Mutex::new(steps.into()))
}

#[tokio::test]
async fn retries_back_off_rotate_and_report_then_succeed() {
    let endpoints = Scripted::default();
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let mut settings = CallSettings::default();
    settings.observe(move |e| seen.lock().unwrap().push(e.clone()));
    let engine = Engine {
        endpoints: &endpoints,
        settings: &settings,
    };
    let sent = Arc::new(Mutex::new(Vec::new()));
    let steps = script(vec![
        Err(tonic::Status::unavailable("no quorum")),
        Err(tonic::Status::aborted("conflict")),
        Ok(7),
    ]);
    let policy = fast_policy(3);
    let (answer, info) = engine
        .run(call(&policy), scripted_rpc(steps, sent.clone()))
        .await
        .unwrap();
    assert_eq!(answer, 7);
    assert_eq!(*sent.lock().unwrap(), ["a", "b", "c"]);
    assert_eq!(
        (
            info.endpoint.as_str(),
            info.attempts,
            info.retries,
            info.redirects
        ),
        ("c", 3, 2, 0)
    );
    let events = events.lock().unwrap();
    let delays: Vec<_> = events.iter().map(|e| e.delay).collect();
    assert_eq!(
        delays,
        [Duration::from_millis(5), Duration::from_millis(10)]
    );
    assert_eq!((events[0].attempt, events[1].attempt), (1, 2));
    assert_eq!(events[0].key.as_deref(), Some("k"));
    assert_eq!(events[1].cause, "aborted: conflict");
    assert_eq!(
        endpoints.log().last().unwrap(),
        "answer 7 from c via Leader"
    );
    // The cluster is looked up at most once per call.
    assert_eq!(*endpoints.lookups.lock().unwrap(), 1);
}

#[tokio::test]
async fn redirects_cost_no_backoff_and_are_bounded() {
    let endpoints = Scripted::default();
    let settings = CallSettings {
        max_redirects: 2,
        ..CallSettings::default()
    };
    let engine = Engine {
        endpoints: &endpoints,
        settings: &settings,
    };
    let sent = Arc::new(Mutex::new(Vec::new()));
    // Two followed hops, a third hop over budget: a retry after backoff, then success.
    let steps = script(vec![
        Err(not_leader(Some("b"))),
        Err(not_leader(Some("c"))),
        Err(not_leader(Some("a"))),
        Ok(1),
    ]);
    let policy = fast_policy(3);
    let (_, info) = engine
        .run(call(&policy), scripted_rpc(steps, sent.clone()))
        .await
        .unwrap();
    assert_eq!(*sent.lock().unwrap(), ["a", "b", "c", "a"]);
    assert_eq!((info.attempts, info.redirects, info.retries), (4, 2, 1));
}

#[tokio::test]
async fn final_answers_are_rejected_and_exhaustion_names_everything() {
    let endpoints = Scripted::default();
    let settings = CallSettings::default();
    let engine = Engine {
        endpoints: &endpoints,
        settings: &settings,
    };
    let policy = fast_policy(3);
    let sent = Arc::new(Mutex::new(Vec::new()));
    let steps = script(vec![Err(tonic::Status::invalid_argument("empty key"))]);
    let err = engine
        .run(call(&policy), scripted_rpc(steps, sent.clone()))
        .await
        .unwrap_err();
    let GaveUp::Rejected(op) = &err else {
        panic!("expected Rejected, got {err:?}")
    };
    assert_eq!(
        (op.attempts, op.retries, op.code),
        (1, 0, Some(Code::InvalidArgument))
    );
    assert_eq!(
        err.to_string(),
        "put \"k\" rejected by a after 1 attempt: invalid argument: empty key"
    );

    let policy = fast_policy(1);
    let steps = script(vec![
        Err(tonic::Status::unavailable("down")),
        Err(tonic::Status::unavailable("still down")),
    ]);
    let err = engine
        .run(call(&policy), scripted_rpc(steps, sent))
        .await
        .unwrap_err();
    let GaveUp::Exhausted(op) = &err else {
        panic!("expected Exhausted, got {err:?}")
    };
    assert_eq!((op.attempts, op.retries, op.deadline), (2, 1, None));
    // A final answer does not move the rotation; an unavailable one does.
    assert_eq!(op.endpoints, ["a", "b"]);
    assert_eq!(op.last_cause, "unavailable: still down");
}

#[tokio::test]
async fn no_sleep_reaches_past_the_deadline() {
    let endpoints = Scripted::default();
    let settings = CallSettings {
        op_deadline: Duration::from_millis(50),
        ..CallSettings::default()
    };
    let engine = Engine {
        endpoints: &endpoints,
        settings: &settings,
    };
    // The first delay (500 ms) is past the 50 ms deadline: give up at once, saying why.
    let policy = RetryPolicy::default();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let steps = script(vec![Err(tonic::Status::unavailable("down"))]);
    let started = Instant::now();
    let err = engine
        .run(call(&policy), scripted_rpc(steps, sent))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "slept past the deadline"
    );
    let op = match &err {
        GaveUp::Exhausted(op) => op,
        other => panic!("expected Exhausted, got {other:?}"),
    };
    assert_eq!(op.deadline, Some(Duration::from_millis(50)));
    assert!(err.to_string().contains("(deadline 50ms)"), "{err}");
}

#[tokio::test]
async fn an_unusable_endpoint_is_final() {
    let endpoints = Scripted::default();
    let settings = CallSettings::default();
    let engine = Engine {
        endpoints: &endpoints,
        settings: &settings,
    };
    let policy = fast_policy(3);
    let sent = Arc::new(Mutex::new(Vec::new()));
    // "a" redirects to "bad", which no client can be made for.
    let steps = script(vec![Err(not_leader(Some("bad")))]);
    let err = engine
        .run(call(&policy), scripted_rpc(steps, sent.clone()))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "put \"k\" rejected by bad after 2 attempts: bad is not an address"
    );
    assert_eq!(*sent.lock().unwrap(), ["a"]);
}

#[tokio::test]
async fn an_earlier_unknown_attempt_makes_a_later_refusal_maybe_applied() {
    let endpoints = Scripted::default();
    let settings = CallSettings {
        request_timeout: Duration::from_millis(30),
        ..CallSettings::default()
    };
    let engine = Engine {
        endpoints: &endpoints,
        settings: &settings,
    };
    let policy = fast_policy(1);
    let attempt = Arc::new(Mutex::new(0));
    // Attempt 1 never answers (the per-attempt timeout fires after sending); attempt 2 cannot
    // connect at all.
    let rpc = |_endpoint: String, _budget| {
        let attempt = attempt.clone();
        async move {
            let n = {
                let mut a = attempt.lock().unwrap();
                *a += 1;
                *a
            };
            if n == 1 {
                std::future::pending::<()>().await;
            }
            Err::<tonic::Response<u32>, _>(refused())
        }
    };
    let err = engine.run(call(&policy), rpc).await.unwrap_err();
    let GaveUp::Exhausted(op) = &err else {
        panic!("expected Exhausted, got {err:?}")
    };
    assert_eq!(op.attempts, 2);
    assert!(
        op.last_cause.contains("Connection refused"),
        "{}",
        op.last_cause
    );
    assert!(op.maybe_applied, "attempt 1 may still commit");
}

#[tokio::test]
async fn connection_refused_on_every_attempt_is_not_applied() {
    let endpoints = Scripted::default();
    let settings = CallSettings::default();
    let engine = Engine {
        endpoints: &endpoints,
        settings: &settings,
    };
    let policy = fast_policy(2);
    let sent = Arc::new(Mutex::new(Vec::new()));
    let steps = script(vec![Err(refused()), Err(refused()), Err(refused())]);
    let err = engine
        .run(call(&policy), scripted_rpc(steps, sent))
        .await
        .unwrap_err();
    let GaveUp::Exhausted(op) = &err else {
        panic!("expected Exhausted, got {err:?}")
    };
    assert_eq!(op.attempts, 3);
    assert!(!op.maybe_applied, "no request was ever sent");
}

#[tokio::test]
async fn not_leader_and_refusals_are_not_applied_but_no_quorum_is() {
    let endpoints = Scripted::default();
    let settings = CallSettings::default();
    let engine = Engine {
        endpoints: &endpoints,
        settings: &settings,
    };
    let policy = fast_policy(3);
    let sent = Arc::new(Mutex::new(Vec::new()));
    let steps = script(vec![
        Err(not_leader(None)),
        Err(refused()),
        Err(tonic::Status::invalid_argument("key must not be empty")),
    ]);
    let err = engine
        .run(call(&policy), scripted_rpc(steps, sent.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, GaveUp::Rejected(op) if !op.maybe_applied),
        "{err:?}"
    );
    let steps = script(vec![
        Err(tonic::Status::unavailable("no quorum: write not committed")),
        Err(tonic::Status::invalid_argument("key must not be empty")),
    ]);
    let err = engine
        .run(call(&policy), scripted_rpc(steps, sent))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, GaveUp::Rejected(op) if op.maybe_applied),
        "{err:?}"
    );
}

/// What tonic returns when the TCP connection is refused: the connector's error inside a
/// `ConnectError`.
fn refused() -> tonic::Status {
    let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
    let mut status = tonic::Status::unavailable("tcp connect error");
    status.set_source(Arc::new(tonic::ConnectError(Box::new(io))));
    status
}
