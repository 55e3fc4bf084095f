//! The bulk data of the catch-up tests: what a node that is down misses (64 MiB of values up to
//! 1 MiB), the same in ChainFire's and FlareDB's tests.

/// `n`-th value of `len` bytes: distinct per key and not all one byte, so a mix-up shows.
pub fn bulk_value(n: u64, len: usize) -> Vec<u8> {
    let mut state = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// The writes made while a node is down, as (key, value length): 56 values of 1 MiB and 128 of
/// 64 KiB (64 MiB).
pub fn catch_up_writes() -> Vec<(String, usize)> {
    let writes: Vec<(String, usize)> = (0..184u64)
        .map(|i| {
            let len = if i % 23 < 7 { 1 << 20 } else { 64 << 10 };
            (format!("big/{i:03}"), len)
        })
        .collect();
    let mib = writes.iter().map(|(_, len)| len).sum::<usize>() >> 20;
    assert!(mib >= 64, "only {mib} MiB");
    writes
}
