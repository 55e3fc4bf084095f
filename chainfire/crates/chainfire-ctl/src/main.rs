//! `chainfire-ctl`: poke a ChainFire cluster by hand, the way etcdctl pokes etcd.
//!
//! Every command goes through `chainfire-client` (so it follows the leader and retries with
//! the platform's backoff, as any client does). Output is one line per result: readable text,
//! or with `--json` one JSON object per line (a watch prints one per event until Ctrl-C), so it
//! can be piped into `jq`. Exit 0 on success, 1 when the cluster refused or could not answer
//! (the error names the endpoints, attempts and cause), 2 for a bad command line.

use std::process::ExitCode;

use chainfire_client::{
    Client, ClientConfig, EventKind, KeyValue, NodeStatus, RangeOptions, WatchOptions,
};
use chainfire_ctl::{MemberRow, emit, emit_members, emit_statuses, exit, first_answer, text};
use clap::{Parser, Subcommand};
use futures::StreamExt as _;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(
    name = "chainfire-ctl",
    version,
    about = "Poke a ChainFire cluster by hand"
)]
struct Cli {
    /// Client endpoints of the cluster's nodes, comma-separated (`reconnect-runner up` prints
    /// them).
    #[arg(
        long,
        global = true,
        env = "CHAINFIRE_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    endpoints: Vec<String>,
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
    /// Keys from START (inclusive) to END (exclusive), or with --prefix every key starting
    /// with START.
    Range {
        start: String,
        end: Option<String>,
        #[arg(long)]
        prefix: bool,
        /// At most this many keys (0: all).
        #[arg(long, default_value_t = 0)]
        limit: u32,
    },
    /// Print every change of KEY (or, with --prefix, of every key under it) until Ctrl-C,
    /// reconnecting across node failures with no gap or duplicate.
    Watch {
        key: String,
        #[arg(long)]
        prefix: bool,
        /// First revision to deliver (0: changes from now on).
        #[arg(long, default_value_t = 0)]
        from_revision: u64,
    },
    /// Every endpoint's view: node id, role, leader, term, applied index, revision, digest.
    Status,
    /// The cluster's members, as the first node that answers knows them.
    Members,
}

fn kv_json(kv: &KeyValue) -> Value {
    json!({
        "key": text(&kv.key),
        "value": text(&kv.value),
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
        "lease": kv.lease,
    })
}

fn status_json(s: &NodeStatus) -> Value {
    json!({
        "endpoint": s.endpoint,
        "node_id": s.node_id,
        "role": s.role,
        "leader_id": s.leader_id,
        "term": s.term,
        "applied_index": s.applied_index,
        "revision": s.revision,
        "key_count": s.key_count,
        "digest": s.digest,
    })
}

async fn run(cli: Cli) -> Result<(), String> {
    let client = Client::connect(ClientConfig::new(cli.endpoints.clone()))
        .await
        .map_err(|e| e.to_string())?;
    let json = cli.json;
    match cli.command {
        Command::Put { key, value } => {
            let put = client.put(&key, &value).await.map_err(|e| e.to_string())?;
            emit(
                json,
                json!({"key": key, "revision": put.revision, "node": put.info.endpoint}),
                || format!("OK {key} (revision {})", put.revision),
            );
        }
        Command::Get { key } => {
            let got = client.get(&key).await.map_err(|e| e.to_string())?;
            match &got.kv {
                Some(kv) => emit(json, kv_json(kv), || text(&kv.value)),
                None => emit(
                    json,
                    json!({"key": key, "found": false, "revision": got.revision}),
                    || format!("(no key {key} at revision {})", got.revision),
                ),
            }
        }
        Command::Delete { key } => {
            let d = client.delete(&key).await.map_err(|e| e.to_string())?;
            emit(
                json,
                json!({"key": key, "deleted": d.deleted, "revision": d.revision}),
                || {
                    if d.deleted {
                        format!("deleted {key} (revision {})", d.revision)
                    } else {
                        format!("no key {key} (revision {})", d.revision)
                    }
                },
            );
        }
        Command::Range {
            start,
            end,
            prefix,
            limit,
        } => {
            let options = match (prefix, end) {
                (true, _) => RangeOptions::prefix(&start),
                (false, Some(end)) => RangeOptions::range(&start, &end),
                (false, None) => RangeOptions::range(&start, []),
            }
            .with_limit(limit);
            let r = client.range(options).await.map_err(|e| e.to_string())?;
            for kv in &r.kvs {
                emit(json, kv_json(kv), || {
                    format!("{} = {}", text(&kv.key), text(&kv.value))
                });
            }
            if r.more && !json {
                println!("(more keys: raise --limit)");
            }
        }
        Command::Watch {
            key,
            prefix,
            from_revision,
        } => {
            let mut options = if prefix {
                WatchOptions::prefix(&key)
            } else {
                WatchOptions::key(&key)
            };
            options.start_revision = from_revision;
            let mut watch = client.watch(options).await.map_err(|e| e.to_string())?;
            while let Some(event) = watch.next().await {
                let event = event.map_err(|e| e.to_string())?;
                let kind = match event.kind {
                    EventKind::Put => "put",
                    EventKind::Delete => "delete",
                };
                let mut value = kv_json(&event.kv);
                value["event"] = json!(kind);
                emit(json, value, || {
                    format!(
                        "{kind} {} = {} (revision {})",
                        text(&event.kv.key),
                        text(&event.kv.value),
                        event.kv.mod_revision
                    )
                });
            }
        }
        Command::Status => {
            emit_statuses(
                json,
                client.status_all().await,
                "no endpoint answered",
                |endpoint, s| {
                    let line = format!(
                        "{endpoint}: node {} {} (leader {}, term {}), applied {}, revision {}, {} keys, digest {}",
                        s.node_id,
                        s.role,
                        s.leader_id,
                        s.term,
                        s.applied_index,
                        s.revision,
                        s.key_count,
                        &s.digest[..s.digest.len().min(12)]
                    );
                    (status_json(s), line)
                },
            )?;
        }
        Command::Members => {
            let status = first_answer(client.status_all().await, "no endpoint answered")?;
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
    exit("chainfire-ctl", run(Cli::parse()).await)
}
