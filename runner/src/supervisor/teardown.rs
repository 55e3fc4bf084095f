//! Ctrl-C / SIGTERM handling for a worker: kill every node and remove host firewall rules before
//! the process exits, so an interrupted run leaves nothing behind.
//!
//! The handler is a plain thread waiting in `sigwait` for SIGINT/SIGTERM, which are blocked in
//! every other thread. It must be installed before any other thread starts (before the tokio
//! runtime): threads inherit the signal mask of the thread that creates them. Node processes get
//! an unblocked mask back (see `process`). Panics need no hook: an unwinding panic drops the
//! supervisor (which kills its nodes), and a process that dies takes its nodes with it through
//! their parent-death signal.

use std::sync::Once;

use nix::sys::signal::{SigSet, Signal};

/// Installs the SIGINT/SIGTERM teardown thread (idempotent). Call it first thing in the worker,
/// before building the tokio runtime. Do not use `tokio::signal` for SIGINT/SIGTERM in the same
/// process: the signals are consumed here.
pub fn install_teardown_handlers() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let mut set = SigSet::empty();
        set.add(Signal::SIGINT);
        set.add(Signal::SIGTERM);
        if let Err(err) = set.thread_block() {
            eprintln!("reconnect-runner: cannot block SIGINT/SIGTERM for teardown: {err}");
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("teardown-signals".into())
            .spawn(move || {
                let signal = set.wait().unwrap_or(Signal::SIGTERM);
                let killed = super::process::kill_all_live_groups();
                let chains = crate::faults::remove_registered_chains();
                eprintln!(
                    "reconnect-runner: {signal} received: killed {killed} node process group(s), removed {chains} iptables chain(s)"
                );
                std::process::exit(128 + signal as i32);
            });
        if let Err(err) = spawned {
            eprintln!("reconnect-runner: cannot start the teardown thread: {err}");
        }
    });
}
