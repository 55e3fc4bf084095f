//! Command-line flags (each also settable through a `FLAREDB_*` environment variable) and their
//! validation into a [`Config`] the rest of the server uses.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chainfire_api::raft_node::{MembersError, parse_members};
use chainfire_api::retry::RetryPolicy;
use clap::Parser;

/// FlareDB: one store of a Raft-replicated key-value group that uses ChainFire as its placement
/// driver ("PD").
///
/// Start the same command on every store with its own --id, addresses and --data-dir and the same
/// --peers. A fresh data dir forms the group from --peers; a data dir with state rejoins it.
/// Clients speak gRPC `flaredb.v1.FlareDb` on --addr; stores speak `raft.v1.RaftTransport` on
/// --peer-addr. Each store registers under /flaredb/stores/<id> in ChainFire (bound to a lease it
/// keeps alive: the heartbeat), the leader publishes itself under /flaredb/leader, and the PD
/// session reconnects by itself ("Reconnected to PD" at INFO). PD is not in the data path: reads
/// and writes go on while it is away. The line "flaredb ready" is logged once the client port
/// serves. SIGTERM/SIGINT shut down gracefully (exit 0); invalid flags exit 2.
/// Every time flag is in milliseconds, from 1 ms to 1 h: a larger value is a typo, and would
/// overflow the deadlines computed from it.
fn millis() -> clap::builder::RangedU64ValueParser<u64> {
    clap::builder::RangedU64ValueParser::new().range(0..=3_600_000)
}

#[derive(Debug, Clone, Parser)]
#[command(name = "flaredb", version)]
pub struct Args {
    /// This store's id: a positive integer that appears in --peers.
    #[arg(long, env = "FLAREDB_ID")]
    pub id: u64,

    /// Address the client gRPC API (put/get/delete/scan/status) listens on, HOST:PORT.
    #[arg(long, env = "FLAREDB_ADDR")]
    pub addr: String,

    /// Address the Raft peer transport listens on, HOST:PORT; must equal this store's entry in
    /// --peers.
    #[arg(long, env = "FLAREDB_PEER_ADDR")]
    pub peer_addr: String,

    /// Every store of the group as ID=PEER_HOST:PORT, comma separated, identical on all stores,
    /// e.g. 1=127.0.0.1:5100,2=127.0.0.1:5101,3=127.0.0.1:5102.
    #[arg(long, env = "FLAREDB_PEERS")]
    pub peers: String,

    /// ChainFire client endpoints (the PD), HOST:PORT, comma separated.
    #[arg(
        long,
        env = "FLAREDB_PD_ENDPOINTS",
        value_delimiter = ',',
        required = true
    )]
    pub pd_endpoints: Vec<String>,

    /// Directory for this store's database (Raft log and data); created if missing.
    #[arg(long, env = "FLAREDB_DATA_DIR")]
    pub data_dir: PathBuf,

    /// Log filter (error, warn, info, debug, trace or a tracing directive); RUST_LOG wins when
    /// set.
    #[arg(long, env = "FLAREDB_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Append logs to this file instead of stderr.
    #[arg(long, env = "FLAREDB_LOG_FILE")]
    pub log_file: Option<PathBuf>,

    /// Raft leader heartbeat interval, in milliseconds.
    #[arg(long, env = "FLAREDB_HEARTBEAT_INTERVAL_MS", default_value_t = 100, value_parser = millis())]
    pub heartbeat_interval_ms: u64,

    /// Raft election timeout, in milliseconds (a follower waits a random time in [T, 2T) without
    /// heartbeats before it starts an election). Must exceed the heartbeat interval.
    #[arg(long, env = "FLAREDB_ELECTION_TIMEOUT_MS", default_value_t = 1000, value_parser = millis())]
    pub election_timeout_ms: u64,

    /// Retries after a failed Raft peer RPC or PD call (attempts = retries + 1).
    #[arg(long, env = "FLAREDB_RETRY_MAX_RETRIES", default_value_t = 3)]
    pub retry_max_retries: usize,

    /// Delay before the first retry, in milliseconds.
    #[arg(long, env = "FLAREDB_RETRY_INITIAL_DELAY_MS", default_value_t = 500, value_parser = millis())]
    pub retry_initial_delay_ms: u64,

    /// Growth factor between consecutive retry delays (>= 1.0).
    #[arg(long, env = "FLAREDB_RETRY_MULTIPLIER", default_value_t = 2.0)]
    pub retry_multiplier: f64,

    /// Cap on any retry delay, jitter included, in milliseconds.
    #[arg(long, env = "FLAREDB_RETRY_MAX_DELAY_MS", default_value_t = 30_000, value_parser = millis())]
    pub retry_max_delay_ms: u64,

    /// Symmetric jitter as a fraction of each delay, in [0, 1).
    #[arg(long, env = "FLAREDB_RETRY_JITTER", default_value_t = 0.2)]
    pub retry_jitter: f64,

    /// PD reconnect cycle, in milliseconds: after losing PD, a reconnect attempt (every endpoint,
    /// with the retry policy's backoff) is made once per cycle until one succeeds.
    #[arg(
        long,
        env = "FLAREDB_PD_RECONNECT_INTERVAL_MS",
        value_parser = millis(),
        default_value_t = 10_000
    )]
    pub pd_reconnect_interval_ms: u64,

    /// Interval between PD heartbeats (lease keep-alives), in milliseconds. A failed heartbeat
    /// counts as a lost PD connection.
    #[arg(long, env = "FLAREDB_PD_HEARTBEAT_INTERVAL_MS", default_value_t = 1000, value_parser = millis())]
    pub pd_heartbeat_interval_ms: u64,

    /// TTL of the PD lease the store's registration is bound to, in seconds; ChainFire removes
    /// the registration this long after the last heartbeat.
    #[arg(long, env = "FLAREDB_PD_LEASE_TTL_S", default_value_t = 30)]
    pub pd_lease_ttl_s: u64,

    /// Deadline of one PD request attempt, in milliseconds.
    #[arg(long, env = "FLAREDB_PD_REQUEST_TIMEOUT_MS", default_value_t = 2000, value_parser = millis())]
    pub pd_request_timeout_ms: u64,

    /// A write (or linearizable read) that a majority has not confirmed within this many
    /// milliseconds fails with UNAVAILABLE instead of waiting for a quorum forever.
    #[arg(long, env = "FLAREDB_WRITE_TIMEOUT_MS", default_value_t = 3000, value_parser = millis())]
    pub write_timeout_ms: u64,

    /// Build a snapshot after this many log entries since the last one. A snapshot writes the
    /// whole state and the request-id window (up to 75 s of writes): every 5,000 entries it took
    /// about a tenth of a node's CPU under a sustained 2,000 puts/s (kv-bench); etcd's default
    /// is 100,000.
    #[arg(long, env = "FLAREDB_SNAPSHOT_LOGS", default_value_t = 20_000)]
    pub snapshot_logs: u64,

    /// Log entries already in a snapshot that are kept anyway, so briefly lagging followers catch
    /// up from the log instead of a full snapshot.
    #[arg(long, env = "FLAREDB_SNAPSHOT_KEEP_LOGS", default_value_t = 2000)]
    pub snapshot_keep_logs: u64,

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

/// Validated settings of one store.
#[derive(Debug, Clone)]
pub struct Config {
    pub id: u64,
    pub addr: String,
    pub peer_addr: String,
    /// Store id -> peer (Raft) address, including this store.
    pub peers: BTreeMap<u64, String>,
    pub data_dir: PathBuf,
    pub log_level: String,
    pub log_file: Option<PathBuf>,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    pub retry: RetryPolicy,
    pub pd: PdSettings,
    pub write_timeout: Duration,
    pub snapshot_logs: u64,
    pub snapshot_keep_logs: u64,
    pub rejoin_wiped_member: bool,
    /// What the database is written on (see `--unsynced-writes-in-memory`).
    pub disk: chainfire_storage::Disk,
}

/// How the store talks to its placement driver.
#[derive(Debug, Clone, PartialEq)]
pub struct PdSettings {
    pub endpoints: Vec<String>,
    pub reconnect_interval: Duration,
    pub heartbeat_interval: Duration,
    pub lease_ttl: Duration,
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
}

/// A flag value that cannot work, with the flag's name in the message.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("--id must be a positive integer, got 0")]
    ZeroId,
    #[error("{flag}: {value:?} is not HOST:PORT ({reason})")]
    BadAddr {
        flag: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("--peers: {0}")]
    BadPeers(#[from] MembersError),
    #[error("--peers does not list this store's id {0}")]
    IdNotInPeers(u64),
    #[error("--peer-addr {given} differs from this store's entry in --peers ({listed})")]
    PeerAddrMismatch { given: String, listed: String },
    #[error("--pd-endpoints: at least one ChainFire endpoint is needed")]
    NoPdEndpoints,
    #[error("{flag} must be positive")]
    NotPositive { flag: &'static str },
    #[error(
        "--election-timeout-ms ({election}) must be greater than --heartbeat-interval-ms ({heartbeat})"
    )]
    ElectionNotAboveHeartbeat { election: u64, heartbeat: u64 },
    #[error(
        "--pd-heartbeat-interval-ms ({heartbeat_ms}) must be shorter than the PD lease TTL ({ttl_s} s), or the registration expires between heartbeats"
    )]
    HeartbeatNotBelowTtl { heartbeat_ms: u64, ttl_s: u64 },
    #[error("retry policy: {0}")]
    Retry(#[from] chainfire_api::retry::InvalidPolicy),
}

/// Checks that `value` looks like HOST:PORT with a non-empty host and a port in 1..=65535.
pub fn check_host_port(flag: &'static str, value: &str) -> Result<(), ConfigError> {
    let bad = |reason| ConfigError::BadAddr {
        flag,
        value: value.to_owned(),
        reason,
    };
    let (host, port) = value.rsplit_once(':').ok_or_else(|| bad("missing :PORT"))?;
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    if value.contains("://") {
        return Err(bad("no scheme expected"));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad("port must be 1..65535")),
        Ok(_) => Ok(()),
    }
}

impl Args {
    /// Validates the flags into a [`Config`].
    pub fn into_config(self) -> Result<Config, ConfigError> {
        if self.id == 0 {
            return Err(ConfigError::ZeroId);
        }
        check_host_port("--addr", &self.addr)?;
        check_host_port("--peer-addr", &self.peer_addr)?;
        let peers: BTreeMap<u64, String> = parse_members(&self.peers)?
            .into_iter()
            .map(|(id, node)| (id, node.addr))
            .collect();
        let listed = peers
            .get(&self.id)
            .ok_or(ConfigError::IdNotInPeers(self.id))?;
        if *listed != self.peer_addr {
            return Err(ConfigError::PeerAddrMismatch {
                given: self.peer_addr.clone(),
                listed: listed.clone(),
            });
        }
        let pd_endpoints: Vec<String> = self
            .pd_endpoints
            .iter()
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())
            .collect();
        if pd_endpoints.is_empty() {
            return Err(ConfigError::NoPdEndpoints);
        }
        for endpoint in &pd_endpoints {
            check_host_port("--pd-endpoints", endpoint)?;
        }
        for (flag, value) in [
            ("--heartbeat-interval-ms", self.heartbeat_interval_ms),
            ("--election-timeout-ms", self.election_timeout_ms),
            ("--pd-reconnect-interval-ms", self.pd_reconnect_interval_ms),
            ("--pd-heartbeat-interval-ms", self.pd_heartbeat_interval_ms),
            ("--pd-lease-ttl-s", self.pd_lease_ttl_s),
            ("--pd-request-timeout-ms", self.pd_request_timeout_ms),
            ("--write-timeout-ms", self.write_timeout_ms),
            ("--snapshot-logs", self.snapshot_logs),
        ] {
            if value == 0 {
                return Err(ConfigError::NotPositive { flag });
            }
        }
        if self.election_timeout_ms <= self.heartbeat_interval_ms {
            return Err(ConfigError::ElectionNotAboveHeartbeat {
                election: self.election_timeout_ms,
                heartbeat: self.heartbeat_interval_ms,
            });
        }
        if self.pd_heartbeat_interval_ms >= self.pd_lease_ttl_s * 1000 {
            return Err(ConfigError::HeartbeatNotBelowTtl {
                heartbeat_ms: self.pd_heartbeat_interval_ms,
                ttl_s: self.pd_lease_ttl_s,
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
            addr: self.addr,
            peer_addr: self.peer_addr,
            peers,
            pd: PdSettings {
                endpoints: pd_endpoints,
                reconnect_interval: Duration::from_millis(self.pd_reconnect_interval_ms),
                heartbeat_interval: Duration::from_millis(self.pd_heartbeat_interval_ms),
                lease_ttl: Duration::from_secs(self.pd_lease_ttl_s),
                request_timeout: Duration::from_millis(self.pd_request_timeout_ms),
                retry,
            },
            data_dir: self.data_dir,
            log_level: self.log_level,
            log_file: self.log_file,
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval_ms),
            election_timeout: Duration::from_millis(self.election_timeout_ms),
            retry,
            write_timeout: Duration::from_millis(self.write_timeout_ms),
            snapshot_logs: self.snapshot_logs,
            snapshot_keep_logs: self.snapshot_keep_logs,
            rejoin_wiped_member: self.rejoin_wiped_member,
            disk: if self.unsynced_writes_in_memory {
                chainfire_storage::Disk::UnsyncedInMemory
            } else {
                chainfire_storage::Disk::File
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a valid base command line with `overrides` (flag, value) replacing or adding flags.
    fn parse(overrides: &[&str]) -> Result<Config, String> {
        let mut flags: Vec<(String, String)> = [
            ("--id", "2"),
            ("--addr", "127.0.0.1:5001"),
            ("--peer-addr", "127.0.0.1:5101"),
            (
                "--peers",
                "1=127.0.0.1:5100,2=127.0.0.1:5101,3=127.0.0.1:5102",
            ),
            ("--data-dir", "/tmp/x"),
            ("--pd-endpoints", "127.0.0.1:2379,127.0.0.1:2380"),
        ]
        .iter()
        .map(|(f, v)| (f.to_string(), v.to_string()))
        .collect();
        for pair in overrides.chunks(2) {
            match flags.iter_mut().find(|(f, _)| f == pair[0]) {
                Some(slot) => slot.1 = pair[1].to_string(),
                None => flags.push((pair[0].to_string(), pair[1].to_string())),
            }
        }
        let argv = std::iter::once("flaredb".to_string())
            .chain(flags.into_iter().flat_map(|(f, v)| [f, v]));
        let args = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
        args.into_config().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_follow_the_design_note() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.id, 2);
        assert_eq!(config.peers.len(), 3);
        assert_eq!(config.pd.endpoints, ["127.0.0.1:2379", "127.0.0.1:2380"]);
        assert_eq!(config.pd.reconnect_interval, Duration::from_secs(10));
        assert_eq!(config.retry, RetryPolicy::default());
        assert_eq!(config.heartbeat_interval, Duration::from_millis(100));
        assert_eq!(config.election_timeout, Duration::from_millis(1000));
    }

    #[test]
    fn flags_override_defaults() {
        let config = parse(&[
            "--pd-reconnect-interval-ms",
            "1000",
            "--retry-max-retries",
            "5",
            "--retry-jitter",
            "0",
        ])
        .unwrap();
        assert_eq!(config.pd.reconnect_interval, Duration::from_secs(1));
        assert_eq!(config.retry.max_retries, 5);
        assert_eq!(config.pd.retry.jitter, 0.0);
    }

    #[test]
    fn bad_peer_lists_are_rejected_naming_the_flag() {
        let err = parse(&["--peers", "1=127.0.0.1:5100,1=127.0.0.1:5101"]).unwrap_err();
        assert!(
            err.starts_with("--peers: member id 1 appears more than once"),
            "{err}"
        );
        let err = parse(&["--peers", "2127.0.0.1:5101"]).unwrap_err();
        assert!(
            err.contains("--peers") && err.contains("ID=HOST:PORT"),
            "{err}"
        );
    }

    #[test]
    fn inconsistent_flags_are_rejected_with_the_flag_named() {
        let err = parse(&["--peer-addr", "127.0.0.1:9999"]).unwrap_err();
        assert!(err.contains("differs from this store's entry"), "{err}");
        let err = parse(&["--id", "7"]).unwrap_err();
        assert!(err.contains("does not list this store's id 7"), "{err}");
        let err = parse(&["--election-timeout-ms", "100"]).unwrap_err();
        assert!(err.contains("--election-timeout-ms (100)"), "{err}");
        let err = parse(&["--retry-multiplier", "0.5"]).unwrap_err();
        assert!(err.contains("retry multiplier"), "{err}");
        let err = parse(&[
            "--pd-lease-ttl-s",
            "1",
            "--pd-heartbeat-interval-ms",
            "1000",
        ])
        .unwrap_err();
        assert!(err.contains("lease TTL"), "{err}");
        let err = parse(&["--addr", "http://127.0.0.1:1"]).unwrap_err();
        assert!(err.contains("--addr"), "{err}");
        let err = parse(&["--pd-reconnect-interval-ms", "0"]).unwrap_err();
        assert!(
            err.contains("--pd-reconnect-interval-ms must be positive"),
            "{err}"
        );
    }

    #[test]
    fn check_host_port_accepts_names_and_rejects_port_zero() {
        check_host_port("--addr", "localhost:80").unwrap();
        assert!(check_host_port("--addr", "h:0").is_err());
        assert!(check_host_port("--addr", ":80").is_err());
    }

    #[test]
    fn a_time_flag_beyond_an_hour_is_refused_not_overflowed() {
        let err = parse(&["--pd-reconnect-interval-ms", "99999999999"]).unwrap_err();
        assert!(err.contains("is not in 0..=3600000"), "{err}");
    }
}
