//! Command-line flags (each also settable through a `PLASMAVMC_*` environment variable) and
//! their validation into a [`Config`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// PlasmaVMC: the platform's VM control plane.
///
/// Serves plasmavmc.v1.Vms on --addr (CreateVm, StartVm, StopVm, DeleteVm, GetVm, ListVms,
/// WatchVms); every call must be signed with SigV4 for service "plasmavmc" and is authenticated
/// and authorised by IAM (--iam-endpoints, IAM's internal gRPC API). Desired and actual state
/// of every VM live in FlareDB (--flaredb-endpoints). Instances register in ChainFire
/// (--chainfire-endpoints) under a lease, and one at a time, elected there, reconciles: it
/// starts, stops and removes guests through the hypervisor driver (the process driver: each VM
/// a process in its own session under --driver-root, surviving a restart of PlasmaVMC and
/// re-adopted after it). Every remote call retries with the platform's policy (3 retries,
/// x2.0, 500 ms to 30 s). The line "plasmavmc ready" is logged once the port serves.
/// SIGTERM/SIGINT shut down gracefully (exit 0; guests keep running); invalid flags exit 2.
#[derive(Debug, Clone, Parser)]
#[command(name = "plasmavmc", version)]
pub struct Args {
    /// Address the gRPC API listens on, HOST:PORT; also the `host` clients sign for.
    #[arg(long, env = "PLASMAVMC_ADDR")]
    pub addr: String,

    /// This instance's name in ChainFire and in transitions (default: --addr).
    #[arg(long, env = "PLASMAVMC_INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// FlareDB store endpoints, HOST:PORT, comma separated.
    #[arg(
        long,
        env = "PLASMAVMC_FLAREDB_ENDPOINTS",
        value_delimiter = ',',
        required = true
    )]
    pub flaredb_endpoints: Vec<String>,

    /// ChainFire client endpoints, HOST:PORT, comma separated.
    #[arg(
        long,
        env = "PLASMAVMC_CHAINFIRE_ENDPOINTS",
        value_delimiter = ',',
        required = true
    )]
    pub chainfire_endpoints: Vec<String>,

    /// IAM instances' internal gRPC addresses, HOST:PORT, comma separated.
    #[arg(
        long,
        env = "PLASMAVMC_IAM_ENDPOINTS",
        value_delimiter = ',',
        required = true
    )]
    pub iam_endpoints: Vec<String>,

    /// The hypervisor driver's state: one folder per VM (spec, pid record, console log, data).
    /// Instances on one host share it.
    #[arg(long, env = "PLASMAVMC_DRIVER_ROOT")]
    pub driver_root: PathBuf,

    /// Run each guest in its own UTS, IPC and mount namespaces (needs the privilege to unshare).
    #[arg(long, env = "PLASMAVMC_NAMESPACES")]
    pub namespaces: bool,

    /// How often the reconciler passes over every VM, in ms.
    #[arg(long, env = "PLASMAVMC_RECONCILE_EVERY_MS", default_value_t = 500)]
    pub reconcile_every_ms: u64,

    /// TTL of this instance's ChainFire lease (registration and reconciler election), in ms.
    #[arg(long, env = "PLASMAVMC_LEASE_TTL_MS", default_value_t = 3000)]
    pub lease_ttl_ms: u64,

    /// How long a guest gets between SIGTERM and SIGKILL, in ms.
    #[arg(long, env = "PLASMAVMC_STOP_GRACE_MS", default_value_t = 5000)]
    pub stop_grace_ms: u64,

    /// How often WatchVms' source reads the records, in ms.
    #[arg(long, env = "PLASMAVMC_WATCH_EVERY_MS", default_value_t = 250)]
    pub watch_every_ms: u64,

    /// Log filter (error, warn, info, debug, trace or a tracing directive); RUST_LOG wins.
    #[arg(long, env = "PLASMAVMC_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Append logs to this file instead of stderr.
    #[arg(long, env = "PLASMAVMC_LOG_FILE")]
    pub log_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub addr: String,
    pub instance_id: String,
    pub flaredb_endpoints: Vec<String>,
    pub chainfire_endpoints: Vec<String>,
    pub iam_endpoints: Vec<String>,
    pub driver_root: PathBuf,
    pub namespaces: bool,
    pub reconcile_every: Duration,
    pub lease_ttl: Duration,
    pub stop_grace: Duration,
    pub watch_every: Duration,
    pub log_level: String,
    pub log_file: Option<PathBuf>,
}

impl Args {
    pub fn into_config(self) -> Result<Config, String> {
        if self.addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!("--addr {:?}: expected IP:PORT", self.addr));
        }
        for (flag, list) in [
            ("--flaredb-endpoints", &self.flaredb_endpoints),
            ("--chainfire-endpoints", &self.chainfire_endpoints),
            ("--iam-endpoints", &self.iam_endpoints),
        ] {
            if list.iter().all(|e| e.trim().is_empty()) {
                return Err(format!("{flag}: at least one HOST:PORT"));
            }
        }
        if self.lease_ttl_ms < 300 {
            return Err("--lease-ttl-ms must be at least 300".into());
        }
        if self.reconcile_every_ms == 0 || self.watch_every_ms == 0 {
            return Err("--reconcile-every-ms and --watch-every-ms must be positive".into());
        }
        Ok(Config {
            instance_id: self.instance_id.unwrap_or_else(|| self.addr.clone()),
            addr: self.addr,
            flaredb_endpoints: self.flaredb_endpoints,
            chainfire_endpoints: self.chainfire_endpoints,
            iam_endpoints: self.iam_endpoints,
            driver_root: self.driver_root,
            namespaces: self.namespaces,
            reconcile_every: Duration::from_millis(self.reconcile_every_ms),
            lease_ttl: Duration::from_millis(self.lease_ttl_ms),
            stop_grace: Duration::from_millis(self.stop_grace_ms),
            watch_every: Duration::from_millis(self.watch_every_ms),
            log_level: self.log_level,
            log_file: self.log_file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Config, String> {
        let base = [
            "plasmavmc",
            "--addr",
            "127.0.0.1:7000",
            "--flaredb-endpoints",
            "127.0.0.1:5000",
            "--chainfire-endpoints",
            "127.0.0.1:2379",
            "--iam-endpoints",
            "127.0.0.1:8091",
            "--driver-root",
            "/tmp/x",
        ];
        Args::try_parse_from(base.iter().chain(extra))
            .map_err(|e| e.to_string())?
            .into_config()
    }

    #[test]
    fn defaults_and_refusals() {
        let config = args(&[]).unwrap();
        assert_eq!(config.instance_id, "127.0.0.1:7000");
        assert_eq!(config.lease_ttl, Duration::from_secs(3));
        assert!(
            args(&["--lease-ttl-ms", "10"])
                .unwrap_err()
                .contains("at least 300")
        );
        let mut bad = Args::try_parse_from([
            "plasmavmc",
            "--addr",
            "x",
            "--flaredb-endpoints",
            "a:1",
            "--chainfire-endpoints",
            "b:1",
            "--iam-endpoints",
            "c:1",
            "--driver-root",
            "/tmp/x",
        ])
        .unwrap();
        assert!(
            bad.clone()
                .into_config()
                .unwrap_err()
                .contains("expected IP:PORT")
        );
        bad.addr = "127.0.0.1:1".into();
        bad.iam_endpoints = vec![" ".into()];
        assert!(bad.into_config().unwrap_err().contains("--iam-endpoints"));
    }
}
