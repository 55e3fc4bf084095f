//! The supervised process against real children (`sh`, `sleep`): nothing survives a panicking
//! test, readiness fails fast and names the process and its log, signals and restarts work.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chainfire_testkit::process::pid_exists;
use chainfire_testkit::{Process, free_ports};

fn sh(name: &str, script: &str, dir: &std::path::Path) -> Process {
    Process::new(
        name,
        "sh",
        vec!["-c".to_owned(), script.to_owned()],
        dir.join(format!("{name}.log")),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `body` on a fresh runtime and returns its panic message (it must panic).
fn panic_message(body: impl std::future::Future<Output = ()>) -> String {
    let rt = runtime();
    let payload = catch_unwind(AssertUnwindSafe(|| rt.block_on(body)))
        .expect_err("the body was expected to panic");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(non-string panic)".to_owned())
}

/// Waits (bounded) for `pid` to disappear; orphans in a killed group are reaped by init.
fn gone_within(pid: u32, bound: Duration) -> bool {
    let started = Instant::now();
    while pid_exists(pid) {
        if started.elapsed() > bound {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn a_panicking_test_leaves_no_process_behind_not_even_a_grandchild() {
    let dir = tempfile::tempdir().unwrap();
    let pids = Arc::new(Mutex::new(Vec::<u32>::new()));
    let seen = pids.clone();
    let log_dir = dir.path().to_owned();
    let message = panic_message(async move {
        let mut parent = sh(
            "forker",
            "sleep 300 & echo \"grandchild $!\"; wait",
            &log_dir,
        );
        parent.spawn();
        let (line, _) = parent
            .wait_for_log_line(0, "grandchild ", Duration::from_secs(30))
            .await;
        let grandchild: u32 = line["grandchild ".len()..].trim().parse().unwrap();
        seen.lock()
            .unwrap()
            .extend([parent.pid().unwrap(), grandchild]);
        assert!(pid_exists(grandchild));
        panic!("deliberate failure while the processes run");
    });
    assert_eq!(message, "deliberate failure while the processes run");
    let pids = pids.lock().unwrap().clone();
    assert_eq!(pids.len(), 2, "both pids recorded before the panic");
    for pid in pids {
        assert!(
            gone_within(pid, Duration::from_secs(10)),
            "pid {pid} survived the panicking test"
        );
    }
}

#[test]
fn readiness_by_log_line_and_by_port() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().to_string();
    let mut service = sh(
        "service",
        "echo starting; sleep 0.2; echo 'service ready'; exec sleep 300",
        dir.path(),
    );
    runtime().block_on(async {
        service.spawn();
        let (line, _) = service
            .wait_for_log_line(0, "service ready", Duration::from_secs(30))
            .await;
        assert_eq!(line, "service ready");
        // A port someone listens on is ready.
        service.wait_for_port(&open, Duration::from_secs(30)).await;
    });
    let log = service.log();
    assert!(
        log.starts_with("=== harness: starting service: sh -c"),
        "{log}"
    );

    // A port nobody listens on is not, and the failure names process, address and log.
    drop(listener);
    let closed = format!("127.0.0.1:{}", free_ports(1)[0]);
    let message = {
        let closed = closed.clone();
        let dir = dir.path().to_owned();
        panic_message(async move {
            let mut other = sh("silent", "exec sleep 300", &dir);
            other.spawn();
            other
                .wait_for_port(&closed, Duration::from_millis(300))
                .await;
        })
    };
    assert!(
        message.starts_with(&format!("silent not listening on {closed} within 300ms")),
        "{message}"
    );
    assert!(message.contains("silent.log"), "names the log: {message}");
    let pid = service.pid().unwrap();
    assert!(pid_exists(pid), "the other process is untouched");
    service.kill();
    assert!(!service.is_running());
    assert!(gone_within(pid, Duration::from_secs(10)));
}

#[test]
fn a_process_that_exits_early_fails_readiness_at_once_with_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().to_owned();
    let started = Instant::now();
    let message = panic_message(async move {
        let mut broken = sh("broken", "echo 'boom: no config' >&2; exit 3", &log_dir);
        broken.spawn();
        broken
            .wait_for_log_line(0, "ready", Duration::from_secs(60))
            .await;
    });
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "did not wait for the bound"
    );
    assert!(
        message.starts_with("broken exited with exit status: 3 before logging \"ready\""),
        "{message}"
    );
    assert!(message.contains("broken.log"), "{message}");
    assert!(
        message.contains("boom: no config"),
        "shows the log tail: {message}"
    );
}

#[test]
fn terminate_waits_for_a_clean_exit_and_a_restart_appends_to_the_log() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let mut graceful = sh(
            "graceful",
            "trap 'echo stopping; exit 0' TERM; echo up; while :; do sleep 0.05; done",
            dir.path(),
        );
        graceful.spawn();
        graceful
            .wait_for_log_line(0, "up", Duration::from_secs(30))
            .await;
        let status = graceful.terminate(Duration::from_secs(30));
        assert!(status.success(), "{status}");
        assert!(!graceful.is_running());

        let mark = graceful.log_len();
        graceful.spawn();
        graceful
            .wait_for_log_line(mark, "up", Duration::from_secs(30))
            .await;
        graceful.signal(nix::sys::signal::Signal::SIGSTOP);
        graceful.signal(nix::sys::signal::Signal::SIGCONT);
        let log = graceful.log();
        assert_eq!(
            log.matches("=== harness: starting graceful").count(),
            2,
            "{log}"
        );
        assert!(log.contains("stopping"), "{log}");
        let pid = graceful.pid().unwrap();
        drop(graceful);
        assert!(gone_within(pid, Duration::from_secs(10)), "drop kills");
    });
}
