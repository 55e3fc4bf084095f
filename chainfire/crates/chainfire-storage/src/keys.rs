//! Key ranges over byte-string keys, as both state machines scan them: a prefix becomes the
//! half-open range up to the first key after every key with that prefix.

use std::ops::Bound;

/// The smallest key greater than every key starting with `prefix`; `None` when there is none
/// (an empty prefix, or only 0xff bytes): the range is then unbounded above.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// `[start, end)` as owned bounds (`end: None`: up to the last key).
pub fn range_bounds(start: &[u8], end: Option<&[u8]>) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    (
        Bound::Included(start.to_vec()),
        end.map_or(Bound::Unbounded, |e| Bound::Excluded(e.to_vec())),
    )
}

/// Every key starting with `prefix`, as owned bounds.
pub fn prefix_bounds(prefix: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    range_bounds(prefix, prefix_end(prefix).as_deref())
}

/// Borrows owned bounds for a redb range scan.
pub fn as_slices(bounds: &(Bound<Vec<u8>>, Bound<Vec<u8>>)) -> (Bound<&[u8]>, Bound<&[u8]>) {
    (borrow(&bounds.0), borrow(&bounds.1))
}

fn borrow(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte_below_ff() {
        assert_eq!(prefix_end(b"abc"), Some(b"abd".to_vec()));
        assert_eq!(prefix_end(&[b'a', 0xff]), Some(b"b".to_vec()));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn prefix_bounds_cover_exactly_the_prefix() {
        let bounds = prefix_bounds(b"b/");
        let (lo, hi) = as_slices(&bounds);
        assert_eq!(lo, Bound::Included(&b"b/"[..]));
        assert_eq!(hi, Bound::Excluded(&b"b0"[..]));
        assert_eq!(prefix_bounds(b"").1, Bound::Unbounded);
        assert_eq!(range_bounds(b"a", None).1, Bound::Unbounded);
    }
}
