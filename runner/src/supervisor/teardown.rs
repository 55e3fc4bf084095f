//! Ctrl-C / SIGTERM handling for a worker: kill every node and remove host firewall rules before
//! the process exits, so an interrupted run leaves nothing behind.
//!
//! The handler is a plain thread waiting in `sigwait` for SIGINT/SIGTERM, which are blocked in
//! every other thread. It must be installed before any other thread starts (before the tokio
//! runtime): threads inherit the signal mask of the thread that creates them. Node processes get
//! an unblocked mask back (see `process`). Panics need no hook: an unwinding panic drops the
//! supervisor (which kills its nodes), and a process that dies takes its nodes with it through
//! their parent-death signal.
//!
//! A scenario worker ([`OnSignal::TearDownWithin`]) does not exit at the first signal: it
//! raises a flag ([`interrupted`]) so the run stops its steps, tears down the usual way and
//! writes its `result.json`, `summary.md` and timeline, which say where it was interrupted. A
//! second signal, or the grace period running out, kills everything and exits at once as before.

use std::sync::Once;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};

/// What the first SIGINT/SIGTERM does.
#[derive(Debug, Clone, Copy)]
pub enum OnSignal {
    /// Kill every node and exit (`up`: there is nothing to report).
    ExitAtOnce,
    /// Raise the [`interrupted`] flag; kill and exit at a second signal or after this long.
    TearDownWithin(Duration),
}

/// The signal that interrupted this process, 0 while none has.
static INTERRUPTED_BY: AtomicI32 = AtomicI32::new(0);

/// The signal that asked this worker to stop, if one did.
pub fn interrupted_by() -> Option<Signal> {
    Signal::try_from(INTERRUPTED_BY.load(Ordering::SeqCst)).ok()
}

/// Resolves once a signal asked this worker to stop (checked every 100 ms: the flag is set by a
/// plain thread, and a tenth of a second is nothing next to a teardown).
pub async fn interrupted() -> Signal {
    loop {
        if let Some(signal) = interrupted_by() {
            return signal;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Installs the SIGINT/SIGTERM teardown thread (idempotent). Call it first thing in the worker,
/// before building the tokio runtime. Do not use `tokio::signal` for SIGINT/SIGTERM in the same
/// process: the signals are consumed here.
pub fn install_teardown_handlers(on_signal: OnSignal) {
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
                let first = set.wait().unwrap_or(Signal::SIGTERM);
                let OnSignal::TearDownWithin(grace) = on_signal else {
                    kill_everything_and_exit(first);
                };
                INTERRUPTED_BY.store(first as i32, Ordering::SeqCst);
                eprintln!(
                    "reconnect-runner: {first} received: stopping the steps and tearing down (a second signal, or {} s from now, kills everything at once)",
                    grace.as_secs()
                );
                let _ = std::thread::Builder::new()
                    .name("teardown-deadline".into())
                    .spawn(move || {
                        std::thread::sleep(grace);
                        eprintln!(
                            "reconnect-runner: teardown took over {} s",
                            grace.as_secs()
                        );
                        kill_everything_and_exit(first);
                    });
                let at = Instant::now();
                loop {
                    let again = set.wait().unwrap_or(Signal::SIGTERM);
                    // One Ctrl-C often arrives twice (from the terminal to the whole group,
                    // and forwarded by the parent): only a signal a moment later is a second.
                    if at.elapsed() >= Duration::from_secs(1) {
                        kill_everything_and_exit(again);
                    }
                }
            });
        if let Err(err) = spawned {
            eprintln!("reconnect-runner: cannot start the teardown thread: {err}");
        }
    });
}

fn kill_everything_and_exit(signal: Signal) -> ! {
    let killed = super::process::kill_all_live_groups();
    // PlasmaVMC's guests lead sessions of their own, outside the nodes' groups.
    let guests = super::guests::kill_registered();
    let chains = crate::faults::remove_registered_chains();
    eprintln!(
        "reconnect-runner: {signal} received: killed {killed} node process group(s) and {guests} PlasmaVMC guest(s), removed {chains} iptables chain(s)"
    );
    std::process::exit(128 + signal as i32);
}
