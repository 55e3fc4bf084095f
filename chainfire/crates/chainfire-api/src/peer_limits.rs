//! How big a peer message may be, and the openraft settings that keep every message under it.
//!
//! One constant, [`PEER_MESSAGE_LIMIT`], bounds every message of the Raft peer transport on
//! both ends (the client's and the server's encoding and decoding limits; tonic's default is
//! 4 MiB for decoding, which a snapshot chunk or a batch of large values overflowed, issue 9).
//! The settings below are derived so nothing the transport sends can exceed it:
//!
//! - an InstallSnapshot chunk carries at most [`SNAPSHOT_CHUNK_BYTES`] of snapshot data
//!   (openraft's `snapshot_max_chunk_size`);
//! - an AppendEntries carries at most [`MAX_PAYLOAD_ENTRIES`] entries (openraft's
//!   `max_payload_entries`), and the sender cuts a batch once its entries pass
//!   [`APPEND_BATCH_BYTES`] (see `raft_client`); a batch is never empty, so the largest one is
//!   a single entry of [`MAX_ENTRY_BYTES`], the largest a client request can produce.
//!
//! The byte budget also bounds time: openraft gives an AppendEntries one heartbeat interval
//! (100 ms by default) to be sent, stored durably by the follower and answered, and a batch of
//! 300 entries of 1 MiB cannot make that on two loaded cores, let alone in a debug build.

/// One mebibyte.
const MIB: usize = 1 << 20;

/// The largest request either service's client API accepts: tonic's default decoding limit,
/// which both servers keep. Every log entry comes from one such request, or from several
/// folded together up to [`crate::batcher::BatchLimits::max_bytes`], which is smaller.
pub const CLIENT_MESSAGE_LIMIT: usize = 4 * MIB;

/// The largest log entry on the wire: a client request's bytes as base64 (4 characters per 3
/// bytes, see [`crate::json_bytes`]) plus the entry's JSON framing.
pub const MAX_ENTRY_BYTES: usize = CLIENT_MESSAGE_LIMIT.div_ceil(3) * 4 + 64 * 1024;

/// Entry bytes one AppendEntries aims for: the sender stops adding entries to a batch before
/// it passes this (unless the batch would be empty). Sized so that a batch is sent, fsynced and
/// answered well inside the 100 ms heartbeat interval on a slow machine.
pub const APPEND_BATCH_BYTES: usize = MIB;

/// The most entries openraft puts in one AppendEntries (its default); the byte budget above
/// cuts batches of large entries much shorter.
pub const MAX_PAYLOAD_ENTRIES: u64 = 300;

/// Snapshot bytes per InstallSnapshot chunk.
pub const SNAPSHOT_CHUNK_BYTES: usize = 4 * MIB;

/// Room for everything in a message besides entries or chunk data: vote, log ids, the snapshot
/// meta (with the membership), JSON and protobuf framing.
const HEADER_ROOM: usize = MIB;

/// The limit on every peer message, both directions, both ends.
pub const PEER_MESSAGE_LIMIT: usize = 8 * MIB;

const _: () = {
    assert!(crate::batcher::BatchLimits::PLATFORM.max_bytes <= CLIENT_MESSAGE_LIMIT);
    // 4 MiB of client bytes are 5.33 MiB of base64.
    assert!(MAX_ENTRY_BYTES > CLIENT_MESSAGE_LIMIT * 4 / 3);
    assert!(MAX_ENTRY_BYTES + HEADER_ROOM <= PEER_MESSAGE_LIMIT);
    assert!(APPEND_BATCH_BYTES + HEADER_ROOM <= PEER_MESSAGE_LIMIT);
    assert!(SNAPSHOT_CHUNK_BYTES + HEADER_ROOM <= PEER_MESSAGE_LIMIT);
};

/// Sets openraft's `snapshot_max_chunk_size` and `max_payload_entries` to the values above; both
/// servers build their openraft config through this.
pub fn configure(config: openraft::Config) -> openraft::Config {
    openraft::Config {
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES as u64,
        max_payload_entries: MAX_PAYLOAD_ENTRIES,
        ..config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openraft_gets_the_chunk_size_and_batch_length() {
        let config = configure(openraft::Config::default());
        assert_eq!(config.snapshot_max_chunk_size, 4 << 20);
        assert_eq!(config.max_payload_entries, 300);
    }
}
