//! Private network namespaces for scenario workers.
//!
//! Each scenario runs in a worker process that starts in a network namespace of its own, so the
//! note's fixed ports never collide with the host or with other workers (`--jobs N`), and the
//! iptables rules a scenario adds live and die with the namespace: the host firewall is never
//! touched. As root the worker only unshares the network namespace; otherwise it unshares a user
//! namespace too and maps the caller to root inside it (what `unshare -Urn` does), which gives it
//! CAP_NET_ADMIN over its own network only.
//!
//! `unshare(CLONE_NEWUSER)` is refused to multi-threaded processes, so it happens in the forked
//! child before exec (single-threaded by construction), never in the parent or under tokio.

use std::ffi::CStr;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::fcntl::{OFlag, open};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::unistd::{getegid, geteuid, getppid};
use serde::{Deserialize, Serialize};

/// Where a worker's network lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkMode {
    /// A network namespace made for the worker (the default).
    PrivateNamespace,
    /// The host's network (`--host-network`): free ports, a dedicated iptables chain.
    HostNetwork,
}

/// Namespace setup failures.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error(
        "the worker is not in a private network namespace (its {ns} is the same as its parent's)"
    )]
    NotIsolated { ns: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot bring the loopback interface up with `ip link set lo up`: {0}")]
    LoopbackUp(String),
}

/// What the worker found itself in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceInfo {
    pub mode: NetworkMode,
    /// e.g. `net:[4026532281]`.
    pub net_ns: String,
    /// Whether a user namespace was needed (not root).
    pub user_ns: bool,
}

/// What this machine allows, as found by [`probe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Whether a private network namespace can be made (Err = why not).
    pub namespaces: Result<(), String>,
    /// Whether iptables works inside one (Err = why not).
    pub iptables: Result<(), String>,
    /// True when not root: the namespace path includes a user namespace.
    pub user_namespace: bool,
}

/// Prepares `cmd` to start in a new network namespace (PrivateNamespace) and to be SIGKILLed if
/// its parent dies (both modes). All data is prepared before fork; the child only makes system
/// calls. Spawn from a thread that outlives the worker: the parent-death signal follows the
/// thread that forked.
pub fn isolate(cmd: &mut Command, mode: NetworkMode) {
    let parent = std::process::id() as i32;
    let uid = geteuid();
    let root = uid.is_root();
    // "0 <uid> 1\n": root inside the user namespace is the caller outside it.
    let uid_map = format!("0 {uid} 1\n").into_bytes();
    let gid_map = format!("0 {} 1\n", getegid()).into_bytes();
    // SAFETY: the closure allocates nothing and only makes system calls (prctl, getppid,
    // unshare, open, write, close), which is what is allowed between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            if getppid().as_raw() != parent {
                return Err(std::io::Error::other(
                    "the runner exited before the worker started",
                ));
            }
            if mode == NetworkMode::HostNetwork {
                return Ok(());
            }
            if root {
                unshare(CloneFlags::CLONE_NEWNET)?;
            } else {
                unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET)?;
                write_proc(c"/proc/self/setgroups", b"deny")?;
                write_proc(c"/proc/self/uid_map", &uid_map)?;
                write_proc(c"/proc/self/gid_map", &gid_map)?;
            }
            Ok(())
        });
    }
}

fn write_proc(path: &CStr, data: &[u8]) -> std::io::Result<()> {
    let fd = open(path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())?;
    let written = nix::unistd::write(&fd, data)?;
    if written != data.len() {
        return Err(std::io::Error::other("short write to a /proc map file"));
    }
    Ok(())
}

/// The first thing a worker does: checks that it is isolated (PrivateNamespace) and brings the
/// loopback interface up, which gives it all of 127.0.0.0/8.
pub fn setup_inside_worker(mode: NetworkMode) -> Result<NamespaceInfo, NetnsError> {
    let own = read_ns_link("/proc/self/ns/net")?;
    let info = NamespaceInfo {
        mode,
        net_ns: own.clone(),
        user_ns: !geteuid().is_root() || read_ns_link("/proc/self/ns/user")? != parent_ns("user"),
    };
    if mode == NetworkMode::HostNetwork {
        return Ok(info);
    }
    if own == parent_ns("net") {
        return Err(NetnsError::NotIsolated { ns: own });
    }
    let output = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .output()
        .map_err(|e| NetnsError::LoopbackUp(format!("cannot run `ip` (iproute2): {e}")))?;
    if !output.status.success() {
        return Err(NetnsError::LoopbackUp(format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(info)
}

fn read_ns_link(path: &str) -> Result<String, NetnsError> {
    std::fs::read_link(path)
        .map(|p| p.display().to_string())
        .map_err(|source| NetnsError::Read {
            path: path.to_string(),
            source,
        })
}

/// The parent's namespace of a kind ("" if it cannot be read, which never equals ours).
fn parent_ns(kind: &str) -> String {
    read_ns_link(&format!("/proc/{}/ns/{kind}", getppid())).unwrap_or_default()
}

/// Finds out, in throw-away namespaces, whether this machine lets the runner make private
/// namespaces and use iptables inside them.
pub fn probe() -> Probe {
    let run = |program: &str, args: &[&str]| -> Result<(), String> {
        let mut cmd = Command::new(program);
        cmd.args(args);
        isolate(&mut cmd, NetworkMode::PrivateNamespace);
        let output = cmd
            .output()
            .map_err(|e| format!("cannot start `{program}` in a new network namespace: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`{program} {}` in a new network namespace failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    };
    let namespaces = run("ip", &["link", "set", "lo", "up"]);
    let iptables = match &namespaces {
        Ok(()) => run("iptables", &["-w", "-S"]),
        Err(e) => Err(format!("no private namespace: {e}")),
    };
    Probe {
        namespaces,
        iptables,
        user_namespace: !geteuid().is_root(),
    }
}

/// Running a test of this crate inside a private network namespace: the test binary re-runs
/// the one test isolated (a fresh process can unshare; the threaded test harness cannot).
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// Set in the environment of the re-run, so the test knows it is the inner run.
    pub const INSIDE: &str = "RECONNECT_RUNNER_TEST_IN_NETNS";

    /// True in the isolated re-run.
    pub fn inside() -> bool {
        std::env::var_os(INSIDE).is_some()
    }

    /// Re-runs test `name` (full path, e.g. `faults::tests::x`) in a new network namespace and
    /// returns its output; `None` (with the reason printed) when this machine cannot do that.
    pub fn rerun_isolated(name: &str) -> Option<std::process::Output> {
        if let Err(reason) = probe().iptables {
            eprintln!("skipping {name}: {reason}");
            return None;
        }
        let exe = std::env::current_exe().expect("test binary path");
        let mut cmd = Command::new(exe);
        cmd.args([name, "--exact", "--nocapture", "--test-threads", "1"])
            .env(INSIDE, "1");
        isolate(&mut cmd, NetworkMode::PrivateNamespace);
        Some(cmd.output().expect("re-run the test in a namespace"))
    }

    /// Whether test `name` goes on in this process. Outside a namespace: re-runs the test
    /// isolated, asserts that run passed, and returns false (the test stops here). In the
    /// isolated re-run: sets the namespace up like a worker does and returns true.
    pub fn run_isolated(name: &str) -> bool {
        if !inside() {
            assert_passes_isolated(name);
            return false;
        }
        setup_inside_worker(NetworkMode::PrivateNamespace).unwrap();
        true
    }

    /// Asserts the isolated re-run of `name` passed, showing its output otherwise.
    pub fn assert_passes_isolated(name: &str) {
        if let Some(output) = rerun_isolated(name) {
            let stdout = String::from_utf8_lossy(&output.stdout);
            // Shown with --nocapture: what the isolated run measured.
            eprintln!("{}", String::from_utf8_lossy(&output.stderr));
            assert!(
                output.status.success() && stdout.contains("1 passed"),
                "isolated run of {name} failed ({}):\n{stdout}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `sh -c script` isolated and returns its stdout.
    fn isolated_sh(script: &str) -> std::process::Output {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        isolate(&mut cmd, NetworkMode::PrivateNamespace);
        cmd.output().expect("spawn an isolated shell")
    }

    #[test]
    fn an_isolated_child_has_its_own_network_namespace() {
        if probe().namespaces.is_err() {
            eprintln!("skipping: this machine cannot make network namespaces");
            return;
        }
        let host = read_ns_link("/proc/self/ns/net").unwrap();
        let out = isolated_sh("readlink /proc/self/ns/net");
        let child = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(out.status.success(), "{out:?}");
        assert!(child.starts_with("net:["), "{child}");
        assert_ne!(child, host);
    }

    #[test]
    fn iptables_rules_inside_stay_inside() {
        let probe = probe();
        if let Err(reason) = &probe.iptables {
            eprintln!("skipping: {reason}");
            return;
        }
        let out = isolated_sh(
            "ip link set lo up && iptables -w -A INPUT -s 127.0.1.2 -d 127.0.1.1 -j DROP && iptables -w -S INPUT",
        );
        let inside = String::from_utf8_lossy(&out.stdout);
        assert!(
            inside.contains("-A INPUT -s 127.0.1.2/32 -d 127.0.1.1/32 -j DROP"),
            "{out:?}"
        );
        let host = Command::new("iptables")
            .args(["-w", "-S", "INPUT"])
            .output()
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&host.stdout).contains("127.0.1.2/32 -d 127.0.1.1/32"),
            "the rule leaked to the host"
        );
    }

    /// The non-root path: a user namespace (root inside, the caller outside) plus a network
    /// namespace, with iptables working inside. As root, the test re-runs itself as `nobody`.
    #[test]
    fn a_non_root_user_gets_a_user_and_network_namespace() {
        use std::os::unix::process::CommandExt;
        let name = "netns::tests::a_non_root_user_gets_a_user_and_network_namespace";
        if geteuid().is_root() {
            let exe = std::env::current_exe().unwrap();
            let out = Command::new(&exe)
                .args([name, "--exact", "--nocapture", "--test-threads", "1"])
                .uid(65534)
                .gid(65534)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if !out.status.success() && stderr.contains("Permission denied") {
                eprintln!(
                    "skipping: user nobody cannot run {}: {stderr}",
                    exe.display()
                );
                return;
            }
            // Shown with --nocapture: whether the inner run really ran or skipped.
            eprintln!("as nobody: {}", stderr.trim());
            assert!(
                out.status.success() && stdout.contains("1 passed"),
                "as nobody:\n{stdout}\n{stderr}"
            );
            return;
        }
        if let Err(reason) = probe().iptables {
            eprintln!("skipping: {reason}");
            return;
        }
        let host_user = read_ns_link("/proc/self/ns/user").unwrap();
        let out = isolated_sh(
            "id -u; readlink /proc/self/ns/user; ip link set lo up && iptables -w -A INPUT -s 127.0.1.2 -j DROP && iptables -w -S INPUT",
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("0"),
            "root inside the user namespace: {out:?}"
        );
        assert_ne!(
            lines.next().unwrap_or_default(),
            host_user,
            "a new user namespace"
        );
        assert!(
            text.contains("-A INPUT -s 127.0.1.2/32 -j DROP"),
            "iptables inside: {out:?}"
        );
    }

    #[test]
    fn host_network_mode_stays_on_the_host() {
        let mut cmd = Command::new("readlink");
        cmd.arg("/proc/self/ns/net");
        isolate(&mut cmd, NetworkMode::HostNetwork);
        let out = cmd.output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            read_ns_link("/proc/self/ns/net").unwrap()
        );
    }
}
