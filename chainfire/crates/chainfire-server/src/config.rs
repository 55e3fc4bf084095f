//! Command-line flags (each also readable from a `CHAINFIRE_*` environment variable) and their
//! validation into a [`Config`] the node runs from. Every validation error names the flag and the
//! offending value, so a bad command line fails with one clear line.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chainfire_api::raft_node::{self, MembersError};
use chainfire_api::retry::{InvalidPolicy, RetryPolicy};
use clap::{Parser, ValueEnum};

use crate::store::StoreLimits;

/// ChainFire: one node of a Raft-replicated key-value store (an etcd-like control-plane store).
///
/// Start the same command on every member with its own --id, addresses and --data-dir and the
/// same --initial-cluster. A fresh data dir bootstraps the cluster from --initial-cluster; a
/// data dir with state rejoins with it. Clients speak gRPC `chainfire.v1.KV` on --client-addr,
/// peers speak `raft.v1.RaftTransport` on --peer-addr. Logs go to stderr (or --log-file); the
/// line "chainfire ready" is logged once the client port serves. SIGTERM/SIGINT shut down
/// gracefully (exit 0).
/// Every time flag is in milliseconds, from 1 ms to 1 h: a larger value is a typo, and would
/// overflow the deadlines computed from it.
fn millis() -> clap::builder::RangedU64ValueParser<u64> {
    clap::builder::RangedU64ValueParser::new().range(0..=3_600_000)
}

#[derive(Debug, Clone, Parser)]
#[command(name = "chainfire", version)]
pub struct Cli {
    /// This node's id: one of the ids in --initial-cluster (a positive integer).
    #[arg(long, env = "CHAINFIRE_ID")]
    pub id: u64,

    /// HOST:PORT the client gRPC API (chainfire.v1.KV) listens on.
    #[arg(long, env = "CHAINFIRE_CLIENT_ADDR", default_value = "127.0.0.1:2379")]
    pub client_addr: String,

    /// HOST:PORT the peer Raft transport listens on [default: this node's --initial-cluster
    /// address].
    #[arg(long, env = "CHAINFIRE_PEER_ADDR")]
    pub peer_addr: Option<String>,

    /// Every member's id and peer address, ID=HOST:PORT,ID=HOST:PORT,... — identical on all
    /// nodes. Used to bootstrap a fresh data dir; afterwards the membership lives in the Raft log.
    #[arg(long, env = "CHAINFIRE_INITIAL_CLUSTER")]
    pub initial_cluster: String,

    /// Members' client addresses, ID=HOST:PORT,... (optional). Lets a follower's "not leader"
    /// error carry the leader's client address and Status list every member's client address.
    #[arg(long, env = "CHAINFIRE_CLUSTER_CLIENT_ADDRS")]
    pub cluster_client_addrs: Option<String>,

    /// Directory holding this node's database (created when missing; must be writable).
    #[arg(long, env = "CHAINFIRE_DATA_DIR")]
    pub data_dir: PathBuf,

    /// Log level when RUST_LOG is unset (RUST_LOG, an env-filter directive, wins).
    #[arg(long, env = "CHAINFIRE_LOG_LEVEL", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Append logs to this file instead of writing them to stderr.
    #[arg(long, env = "CHAINFIRE_LOG_FILE")]
    pub log_file: Option<PathBuf>,

    /// Leader heartbeat interval, in milliseconds.
    #[arg(long, env = "CHAINFIRE_HEARTBEAT_INTERVAL_MS", default_value_t = 100, value_parser = millis())]
    pub heartbeat_interval_ms: u64,

    /// Election timeout in milliseconds: a follower that hears nothing from the leader for
    /// between this and 1.2 x this starts an election (must exceed 2.5 x the heartbeat).
    #[arg(long, env = "CHAINFIRE_ELECTION_TIMEOUT_MS", default_value_t = 1000, value_parser = millis())]
    pub election_timeout_ms: u64,

    /// Retries of a failed Raft RPC to a peer (attempts = retries + 1).
    #[arg(long, env = "CHAINFIRE_RETRY_MAX_RETRIES", default_value_t = 3)]
    pub retry_max_retries: usize,

    /// Delay before the first retry of a failed Raft RPC, in milliseconds.
    #[arg(long, env = "CHAINFIRE_RETRY_INITIAL_DELAY_MS", default_value_t = 500, value_parser = millis())]
    pub retry_initial_delay_ms: u64,

    /// Growth factor between consecutive retry delays (>= 1.0).
    #[arg(long, env = "CHAINFIRE_RETRY_MULTIPLIER", default_value = "2.0")]
    pub retry_multiplier: f64,

    /// Cap on any retry delay, jitter included, in milliseconds.
    #[arg(long, env = "CHAINFIRE_RETRY_MAX_DELAY_MS", default_value_t = 30_000, value_parser = millis())]
    pub retry_max_delay_ms: u64,

    /// Symmetric jitter as a fraction of each retry delay, in [0, 1).
    #[arg(long, env = "CHAINFIRE_RETRY_JITTER", default_value = "0.2")]
    pub retry_jitter: f64,

    /// How long a write (or a linearizable read's leadership check, or a lease operation) may
    /// wait for a quorum before failing with UNAVAILABLE "no quorum", in milliseconds. Kept
    /// below chainfire-client's 2 s per-attempt bound, so a client sees the server's "no quorum"
    /// reason rather than its own "no answer within 2s".
    #[arg(long, env = "CHAINFIRE_WRITE_TIMEOUT_MS", default_value_t = 1_500, value_parser = millis())]
    pub write_timeout_ms: u64,

    /// How often the leader checks lease deadlines, in milliseconds.
    #[arg(long, env = "CHAINFIRE_LEASE_CHECK_INTERVAL_MS", default_value_t = 250, value_parser = millis())]
    pub lease_check_interval_ms: u64,

    /// Build a snapshot after this many log entries since the last one. A snapshot writes the
    /// whole state and the request-id window (up to 75 s of writes): every 5,000 entries it took
    /// about a tenth of a node's CPU under a sustained 2,000 puts/s (kv-bench); etcd's default
    /// is 100,000.
    #[arg(long, env = "CHAINFIRE_SNAPSHOT_LOGS", default_value_t = 20_000)]
    pub snapshot_logs: u64,

    /// Log entries already in a snapshot that are kept anyway, so briefly lagging followers
    /// catch up from the log instead of a full snapshot.
    #[arg(long, env = "CHAINFIRE_SNAPSHOT_KEEP_LOGS", default_value_t = 2_000)]
    pub snapshot_keep_logs: u64,

    /// Revisions of change history kept for watches; a watch starting before them fails with
    /// OUT_OF_RANGE "compacted".
    #[arg(long, env = "CHAINFIRE_WATCH_HISTORY", default_value_t = 10_000)]
    pub watch_history: u64,

    /// On SIGTERM/SIGINT, how long to wait for in-flight requests before stopping anyway, in
    /// milliseconds.
    #[arg(long, env = "CHAINFIRE_SHUTDOWN_TIMEOUT_MS", default_value_t = 5_000, value_parser = millis())]
    pub shutdown_timeout_ms: u64,

    /// Let a member whose data dir was wiped rejoin under its old id: it catches up from the
    /// leader and votes only after it has heard from one. Without it such a member refuses to
    /// start (its peers remember it, and it could vote twice in one term).
    #[arg(long)]
    pub rejoin_wiped_member: bool,

    /// Tests only: keep database writes that were not fsynced yet in this process's memory, so
    /// that kill -9 loses them as a power cut loses a disk's unsynced writes (the power-cut
    /// tests prove that no acknowledged write depends on them).
    #[arg(long)]
    pub unsynced_writes_in_memory: bool,
}

/// Log verbosity for `--log-level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    /// The env-filter directives this level stands for when RUST_LOG is unset. ChainFire's own
    /// crates get the level. openraft is capped at `info` below `trace` (its DEBUG traces every
    /// internal command, several lines per heartbeat), and the HTTP/2 stack (h2, hyper, tower)
    /// stays at `warn` (at DEBUG it logs every frame): otherwise they drown the DEBUG lines that
    /// matter — elections, leader changes, retries, connection losses and reconnections.
    pub fn filter_directives(self) -> String {
        let openraft = match self {
            LogLevel::Debug => "info",
            other => other.as_str(),
        };
        format!(
            "{},openraft={openraft},h2=warn,hyper=warn,hyper_util=warn,tower=warn",
            self.as_str()
        )
    }
}

/// Raft timing and log-compaction settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftSettings {
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    pub snapshot_logs: u64,
    pub snapshot_keep_logs: u64,
}

impl RaftSettings {
    /// openraft's (min, max) election timeouts for `--election-timeout-ms` E.
    ///
    /// An openraft 0.9 follower that has seen a committed leader waits a leader lease of
    /// `election_timeout_max` plus its own random timeout from `[min, max)` before campaigning.
    /// With min = 0.4 E and max = 0.6 E that wait is between E and 1.2 E, which is what an etcd
    /// user means by "election timeout E" (etcd waits [E, 2E)); the literal min = E, max = 2E
    /// would wait 3 E to 4 E and miss the 2 s failover promise at E = 1000 ms.
    pub fn openraft_election_timeouts(&self) -> (u64, u64) {
        let e = self.election_timeout.as_millis() as u64;
        (e * 2 / 5, e * 3 / 5)
    }

    /// The openraft configuration these settings describe (not yet validated by openraft).
    pub fn openraft_config(&self) -> openraft::Config {
        let election_ms = self.election_timeout.as_millis() as u64;
        let (election_timeout_min, election_timeout_max) = self.openraft_election_timeouts();
        // Chunk size and batch length come from the peer transport's one message limit.
        chainfire_api::peer_limits::configure(openraft::Config {
            cluster_name: "chainfire".into(),
            heartbeat_interval: self.heartbeat_interval.as_millis() as u64,
            election_timeout_min,
            election_timeout_max,
            // A snapshot chunk on two loaded cores can take a while; this bounds one chunk.
            install_snapshot_timeout: election_ms.max(3_000),
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_logs),
            max_in_snapshot_log_to_keep: self.snapshot_keep_logs,
            // Followers further behind than this get a snapshot instead of log entries.
            replication_lag_threshold: (self.snapshot_logs + self.snapshot_keep_logs).max(5_000),
            ..Default::default()
        })
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub id: u64,
    /// Where the client API listens.
    pub client_listen: SocketAddr,
    /// The client address as given, advertised in Status and leader hints.
    pub client_addr: String,
    /// Where the peer transport listens.
    pub peer_listen: SocketAddr,
    /// Members' peer addresses, by id.
    pub members: BTreeMap<u64, String>,
    /// Members' client addresses, by id (always includes this node).
    pub client_addrs: BTreeMap<u64, String>,
    pub data_dir: PathBuf,
    pub log_level: LogLevel,
    pub log_file: Option<PathBuf>,
    pub raft: RaftSettings,
    pub retry: RetryPolicy,
    pub op_timeout: Duration,
    pub lease_check_interval: Duration,
    pub limits: StoreLimits,
    pub shutdown_timeout: Duration,
    pub rejoin_wiped_member: bool,
    /// What the database is written on (see `--unsynced-writes-in-memory`).
    pub disk: chainfire_storage::Disk,
}

/// A command line that cannot run.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("invalid {flag}: {source}")]
    Members {
        flag: &'static str,
        #[source]
        source: MembersError,
    },
    #[error("--id {id} is not in --initial-cluster (members: {members})")]
    IdNotInCluster { id: u64, members: String },
    #[error("--cluster-client-addrs names node {id}, which is not in --initial-cluster")]
    UnknownClientAddrId { id: u64 },
    #[error("invalid {flag} '{value}': {reason}")]
    Address {
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error("{flag} must be greater than 0")]
    Zero { flag: &'static str },
    #[error(
        "--election-timeout-ms ({election}) must be more than 2.5 x --heartbeat-interval-ms ({heartbeat})"
    )]
    Timing { election: u64, heartbeat: u64 },
    #[error("invalid retry flags: {0}")]
    Retry(#[from] InvalidPolicy),
    #[error("data dir {path} is not usable: {reason}")]
    DataDir { path: String, reason: String },
}

/// Checks HOST:PORT syntax without resolving the host.
fn check_host_port(value: &str) -> Result<(), String> {
    let (host, port) = value
        .rsplit_once(':')
        .ok_or_else(|| "expected HOST:PORT".to_string())?;
    if host.is_empty() {
        return Err("missing host".into());
    }
    port.parse::<u16>()
        .map_err(|_| format!("port '{port}' is not a number in 0..=65535"))?;
    Ok(())
}

/// Resolves a HOST:PORT this node listens on.
fn resolve(flag: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    let error = |reason: String| ConfigError::Address {
        flag,
        value: value.to_string(),
        reason,
    };
    check_host_port(value).map_err(error)?;
    value
        .to_socket_addrs()
        .map_err(|e| error(e.to_string()))?
        .next()
        .ok_or_else(|| error("resolves to no address".into()))
}

/// Parses an `ID=HOST:PORT,...` flag with the shared member-list parser, naming the flag.
fn parse_member_flag(flag: &'static str, text: &str) -> Result<BTreeMap<u64, String>, ConfigError> {
    let members =
        raft_node::parse_members(text).map_err(|source| ConfigError::Members { flag, source })?;
    Ok(members
        .into_iter()
        .map(|(id, node)| (id, node.addr))
        .collect())
}

fn positive(flag: &'static str, value: u64) -> Result<Duration, ConfigError> {
    if value == 0 {
        return Err(ConfigError::Zero { flag });
    }
    Ok(Duration::from_millis(value))
}

impl Cli {
    /// Checks every flag and builds the configuration.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let members = parse_member_flag("--initial-cluster", &self.initial_cluster)?;
        let Some(own_peer_addr) = members.get(&self.id) else {
            let ids: Vec<String> = members.keys().map(u64::to_string).collect();
            return Err(ConfigError::IdNotInCluster {
                id: self.id,
                members: ids.join(", "),
            });
        };
        let peer_listen = match &self.peer_addr {
            Some(addr) => resolve("--peer-addr", addr)?,
            None => resolve("--initial-cluster", own_peer_addr)?,
        };
        let client_listen = resolve("--client-addr", &self.client_addr)?;

        let mut client_addrs = match &self.cluster_client_addrs {
            Some(text) => parse_member_flag("--cluster-client-addrs", text)?,
            None => BTreeMap::new(),
        };
        if let Some(&id) = client_addrs.keys().find(|id| !members.contains_key(id)) {
            return Err(ConfigError::UnknownClientAddrId { id });
        }
        client_addrs.insert(self.id, self.client_addr.clone());

        let heartbeat = positive("--heartbeat-interval-ms", self.heartbeat_interval_ms)?;
        let election = positive("--election-timeout-ms", self.election_timeout_ms)?;
        // openraft needs its minimum election timeout (0.4 E) above the heartbeat interval.
        if self.election_timeout_ms * 2 / 5 <= self.heartbeat_interval_ms {
            return Err(ConfigError::Timing {
                election: self.election_timeout_ms,
                heartbeat: self.heartbeat_interval_ms,
            });
        }
        if self.snapshot_logs == 0 {
            return Err(ConfigError::Zero {
                flag: "--snapshot-logs",
            });
        }
        if self.watch_history == 0 {
            return Err(ConfigError::Zero {
                flag: "--watch-history",
            });
        }
        let retry = RetryPolicy::from_flags(
            self.retry_max_retries,
            self.retry_initial_delay_ms,
            self.retry_multiplier,
            self.retry_max_delay_ms,
            self.retry_jitter,
        )?;

        Ok(Config {
            id: self.id,
            client_listen,
            client_addr: self.client_addr,
            peer_listen,
            members,
            client_addrs,
            data_dir: self.data_dir,
            log_level: self.log_level,
            log_file: self.log_file,
            raft: RaftSettings {
                heartbeat_interval: heartbeat,
                election_timeout: election,
                snapshot_logs: self.snapshot_logs,
                snapshot_keep_logs: self.snapshot_keep_logs,
            },
            retry,
            op_timeout: positive("--write-timeout-ms", self.write_timeout_ms)?,
            lease_check_interval: positive(
                "--lease-check-interval-ms",
                self.lease_check_interval_ms,
            )?,
            limits: StoreLimits {
                history_revisions: self.watch_history,
                // The platform's rule, the same in FlareDB: not a per-node choice.
                dedup: chainfire_storage::dedup::DedupRule::PLATFORM,
            },
            shutdown_timeout: positive("--shutdown-timeout-ms", self.shutdown_timeout_ms)?,
            rejoin_wiped_member: self.rejoin_wiped_member,
            disk: if self.unsynced_writes_in_memory {
                chainfire_storage::Disk::UnsyncedInMemory
            } else {
                chainfire_storage::Disk::File
            },
        })
    }
}

/// Creates the data dir if needed and proves it is writable by writing and removing a probe
/// file, so a bad path fails at startup with the path in the message.
pub fn prepare_data_dir(path: &Path) -> Result<(), ConfigError> {
    let fail = |reason: String| ConfigError::DataDir {
        path: path.display().to_string(),
        reason,
    };
    std::fs::create_dir_all(path).map_err(|e| fail(format!("cannot create it: {e}")))?;
    let probe = path.join(".chainfire-write-probe");
    std::fs::write(&probe, b"probe").map_err(|e| fail(format!("not writable: {e}")))?;
    std::fs::remove_file(&probe).map_err(|e| fail(format!("not writable: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: &str = "1=127.0.0.1:23801,2=127.0.0.1:23802,3=127.0.0.1:23803";

    /// Parses a base command line for node 2 with `extra` flags replacing or adding to it.
    fn cli(extra: &[&str]) -> Result<Cli, clap::Error> {
        let mut flags: Vec<(String, String)> = [
            ("--id", "2"),
            ("--client-addr", "127.0.0.1:23792"),
            ("--initial-cluster", CLUSTER),
            ("--data-dir", "/tmp/unused"),
        ]
        .iter()
        .map(|(f, v)| (f.to_string(), v.to_string()))
        .collect();
        for pair in extra.chunks(2) {
            let (flag, value) = (pair[0].to_string(), pair[1].to_string());
            match flags.iter_mut().find(|(f, _)| *f == flag) {
                Some(existing) => existing.1 = value,
                None => flags.push((flag, value)),
            }
        }
        let args = std::iter::once("chainfire".to_string())
            .chain(flags.into_iter().flat_map(|(f, v)| [f, v]));
        Cli::try_parse_from(args)
    }

    fn validate(extra: &[&str]) -> Result<Config, ConfigError> {
        cli(extra).expect("flags parse").validate()
    }

    #[test]
    fn defaults_match_the_design_note() {
        let config = validate(&[]).unwrap();
        assert_eq!(config.id, 2);
        assert_eq!(config.peer_listen, "127.0.0.1:23802".parse().unwrap());
        assert_eq!(config.members.len(), 3);
        assert_eq!(config.retry, RetryPolicy::default());
        assert_eq!(config.raft.heartbeat_interval, Duration::from_millis(100));
        assert_eq!(config.raft.election_timeout, Duration::from_millis(1000));
        assert_eq!(config.op_timeout, Duration::from_millis(1500));
        let raft = config.raft.openraft_config().validate().unwrap();
        assert_eq!(
            (raft.election_timeout_min, raft.election_timeout_max),
            (400, 600)
        );
        // A follower waits lease (max) + its random timeout in [min, max): [E, 1.2 E).
        let wait_low = raft.election_timeout_max + raft.election_timeout_min;
        let wait_high = raft.election_timeout_max * 2;
        assert_eq!((wait_low, wait_high), (1000, 1200));
        assert_eq!(
            config.client_addrs,
            BTreeMap::from([(2, "127.0.0.1:23792".to_string())])
        );
    }

    #[test]
    fn retry_and_timing_flags_are_applied() {
        let config = validate(&[
            "--retry-max-retries",
            "5",
            "--retry-initial-delay-ms",
            "100",
            "--retry-multiplier",
            "3",
            "--retry-max-delay-ms",
            "2000",
            "--retry-jitter",
            "0",
            "--election-timeout-ms",
            "300",
            "--heartbeat-interval-ms",
            "50",
        ])
        .unwrap();
        assert_eq!(config.retry.max_retries, 5);
        assert_eq!(config.retry.initial_delay, Duration::from_millis(100));
        assert_eq!(config.retry.multiplier, 3.0);
        assert_eq!(config.retry.max_delay, Duration::from_secs(2));
        assert_eq!(config.retry.jitter, 0.0);
        assert_eq!(config.raft.election_timeout, Duration::from_millis(300));
    }

    #[test]
    fn bad_initial_cluster_entries_are_named() {
        let err = validate(&["--initial-cluster", "1=127.0.0.1:1,2=nohostport"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid --initial-cluster: member \"2=nohostport\": address \"nohostport\" is not HOST:PORT"
        );
        let err = validate(&["--initial-cluster", "1=a:1,1=b:2"]).unwrap_err();
        assert!(
            err.to_string().contains("id 1 appears more than once"),
            "{err}"
        );
        let err = validate(&["--cluster-client-addrs", "x=127.0.0.1:1"]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid --cluster-client-addrs: member \"x=127.0.0.1:1\""),
            "{err}"
        );
    }

    #[test]
    fn log_level_directives_quiet_the_http_stack() {
        let d = LogLevel::Debug.filter_directives();
        assert!(d.starts_with("debug,"), "{d}");
        assert!(d.contains("openraft=info") && d.contains("h2=warn"), "{d}");
        assert!(
            LogLevel::Trace
                .filter_directives()
                .contains("openraft=trace")
        );
        tracing_subscriber::EnvFilter::try_new(&d).unwrap();
    }

    #[test]
    fn id_outside_the_cluster_is_rejected_with_the_members() {
        let err = validate(&["--id", "4"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--id 4 is not in --initial-cluster (members: 1, 2, 3)"
        );
    }

    #[test]
    fn bad_addresses_and_numbers_are_rejected() {
        let err = validate(&["--client-addr", "localhost"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid --client-addr 'localhost': expected HOST:PORT"
        );
        let err = validate(&["--election-timeout-ms", "250"]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::Timing {
                election: 250,
                heartbeat: 100
            }
        );
        let ok = validate(&["--election-timeout-ms", "300"]).unwrap();
        ok.raft.openraft_config().validate().unwrap();
        let err = validate(&["--write-timeout-ms", "0"]).unwrap_err();
        assert_eq!(err.to_string(), "--write-timeout-ms must be greater than 0");
        let err = validate(&["--retry-jitter", "1.5"]).unwrap_err();
        assert!(err.to_string().starts_with("invalid retry flags:"), "{err}");
        let err = validate(&["--cluster-client-addrs", "9=127.0.0.1:1"]).unwrap_err();
        assert_eq!(err, ConfigError::UnknownClientAddrId { id: 9 });
    }

    #[test]
    fn client_addrs_map_includes_self_and_peers() {
        let config = validate(&[
            "--cluster-client-addrs",
            "1=127.0.0.1:23791,3=127.0.0.1:23793",
        ])
        .unwrap();
        assert_eq!(
            config.client_addrs.values().collect::<Vec<_>>(),
            ["127.0.0.1:23791", "127.0.0.1:23792", "127.0.0.1:23793"]
        );
    }

    #[test]
    fn missing_required_flags_are_reported_by_clap() {
        let err = Cli::try_parse_from(["chainfire", "--id", "1"]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("--initial-cluster"), "{text}");
        assert!(text.contains("--data-dir"), "{text}");
    }

    #[test]
    fn data_dir_problems_name_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let ok = tmp.path().join("node1");
        prepare_data_dir(&ok).unwrap();
        assert!(ok.is_dir());
        // A path below a regular file cannot be created, even by root.
        let file = tmp.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        let bad = file.join("data");
        let err = prepare_data_dir(&bad).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "data dir {} is not usable: cannot create it:",
                bad.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn a_time_flag_beyond_an_hour_is_refused_not_overflowed() {
        let err = cli(&["--election-timeout-ms", "18446744073709551615"]).unwrap_err();
        assert!(err.to_string().contains("is not in 0..=3600000"), "{err}");
        assert!(cli(&["--election-timeout-ms", "3600000"]).is_ok());
    }
}
