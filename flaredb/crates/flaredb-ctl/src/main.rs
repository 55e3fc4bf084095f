//! `flaredb-ctl`: poke a FlareDB cluster by hand.
//!
//! Through `flaredb-client` (its connection pool, leader routing and retries, as any client):
//! the stores are named with `--endpoints`, or found in ChainFire with `--pd-endpoints` (PD),
//! the way the servers find each other. Text, or with `--json` one JSON object per line; exit
//! 0, 1 when the cluster refused or could not answer (the error says why), 2 for a bad command
//! line. FlareDB has no watch API and keeps no revisions (the design note's S5 gap).

use std::process::ExitCode;

use chainfire_ctl::{MemberRow, emit, emit_members, emit_statuses, exit, first_answer, text};
use clap::{Parser, Subcommand};
use flaredb_client::{Client, ClientConfig, ScanOptions};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(
    name = "flaredb-ctl",
    version,
    about = "Poke a FlareDB cluster by hand"
)]
struct Cli {
    /// Client addresses of the stores, comma-separated (`reconnect-runner up` prints them).
    #[arg(long, global = true, env = "FLAREDB_ENDPOINTS", value_delimiter = ',')]
    endpoints: Vec<String>,
    /// ChainFire (PD) endpoints, comma-separated: the stores are read from PD's registry.
    #[arg(
        long,
        global = true,
        env = "FLAREDB_PD_ENDPOINTS",
        value_delimiter = ','
    )]
    pd_endpoints: Vec<String>,
    /// One JSON object per line instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write KEY = VALUE.
    Put { key: String, value: String },
    /// Read KEY (linearizable: through the leader).
    Get { key: String },
    /// Delete KEY.
    Delete { key: String },
    /// Keys from START (inclusive) to END (exclusive; default: the last key), or with --prefix
    /// every key starting with START.
    Scan {
        start: String,
        end: Option<String>,
        #[arg(long)]
        prefix: bool,
        /// At most this many keys (0: all).
        #[arg(long, default_value_t = 0)]
        limit: u32,
    },
    /// Every store's view: id, role, leader, term, applied index, digest, PD session.
    Status,
    /// The group's members, as the first store that answers knows them.
    Members,
}

async fn run(cli: Cli) -> Result<(), String> {
    if cli.endpoints.is_empty() && cli.pd_endpoints.is_empty() {
        return Err("name the stores with --endpoints or PD with --pd-endpoints".into());
    }
    let config =
        ClientConfig::new(cli.endpoints.clone()).with_pd_endpoints(cli.pd_endpoints.clone());
    let client = Client::connect(config).await.map_err(|e| e.to_string())?;
    let json = cli.json;
    match cli.command {
        Command::Put { key, value } => {
            let put = client.put(&key, &value).await.map_err(|e| e.to_string())?;
            emit(json, json!({"key": key, "index": put.index}), || {
                format!("OK {key} (log index {})", put.index)
            });
        }
        Command::Get { key } => {
            let got = client.get(&key).await.map_err(|e| e.to_string())?;
            match &got.value {
                Some(v) => emit(json, json!({"key": key, "value": text(v)}), || text(v)),
                None => emit(json, json!({"key": key, "found": false}), || {
                    format!("(no key {key})")
                }),
            }
        }
        Command::Delete { key } => {
            let d = client.delete(&key).await.map_err(|e| e.to_string())?;
            emit(
                json,
                json!({"key": key, "deleted": d.deleted, "index": d.index}),
                || {
                    if d.deleted {
                        format!("deleted {key}")
                    } else {
                        format!("no key {key}")
                    }
                },
            );
        }
        Command::Scan {
            start,
            end,
            prefix,
            limit,
        } => {
            let options = match (prefix, end) {
                (true, _) => ScanOptions::prefix(&start),
                (false, end) => ScanOptions::range(&start, end.unwrap_or_default()),
            }
            .with_limit(limit);
            let r = client.scan(options).await.map_err(|e| e.to_string())?;
            for (k, v) in &r.kvs {
                emit(json, json!({"key": text(k), "value": text(v)}), || {
                    format!("{} = {}", text(k), text(v))
                });
            }
            if r.more && !json {
                println!("(more keys: raise --limit)");
            }
        }
        Command::Status => {
            emit_statuses(
                json,
                client.status_all().await,
                "no store answered",
                |endpoint, s| {
                    let pd = s.pd.clone().unwrap_or_default();
                    let line = format!(
                        "{endpoint}: store {} {} (leader {}, term {}), applied {}, {} keys, digest {}, PD {} {}",
                        s.id,
                        s.role,
                        s.leader_id,
                        s.term,
                        s.applied_index,
                        s.key_count,
                        &s.digest[..s.digest.len().min(12)],
                        pd.state,
                        pd.endpoint
                    );
                    let value = json!({
                        "endpoint": endpoint, "id": s.id, "role": s.role,
                        "leader_id": s.leader_id, "term": s.term,
                        "applied_index": s.applied_index, "key_count": s.key_count,
                        "digest": s.digest, "pd_state": pd.state, "pd_endpoint": pd.endpoint,
                    });
                    (value, line)
                },
            )?;
        }
        Command::Members => {
            let status = first_answer(client.status_all().await, "no store answered")?;
            let rows = status.members.iter().map(|m| MemberRow {
                id: m.id,
                client_addr: &m.client_addr,
                peer_addr: &m.peer_addr,
            });
            emit_members(json, rows, status.leader_id);
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    exit("flaredb-ctl", run(Cli::parse()).await)
}
