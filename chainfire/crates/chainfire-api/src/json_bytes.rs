//! Byte strings inside JSON as base64 strings, fast enough for 1 MiB values in a debug build.
//!
//! Both services' log entries (and so the AppendEntries they replicate), FlareDB's snapshots
//! and ChainFire's snapshots are JSON. serde writes a `Vec<u8>` there as an array of numbers,
//! about 3.6 bytes per byte and slow to write and parse; hex is 2 bytes per byte and its decoder
//! is slow unoptimized (100 ms per MiB measured in a debug build, which alone overran the 100 ms
//! AppendEntries deadline). Base64 is 4 bytes per 3, and the `base64` crate does a MiB in under
//! 10 ms even unoptimized.
//!
//! Writing goes through [`serde_json::value::RawValue`]: a base64 string never needs JSON
//! escaping, and serde_json's escaping loop over a plain string costs more than the encoding
//! itself. So these functions are for serde_json only (what the log store, the snapshots and the
//! peer transport use). Reading also accepts the array of numbers serde writes by default, so
//! data written before this encoding (FlareDB's log) still reads.
//!
//! Use as `#[serde(with = "chainfire_api::json_bytes")]` on a `Vec<u8>` field, or
//! `chainfire_api::json_bytes::option` on an `Option<Vec<u8>>`.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// The bytes as a base64 JSON string.
pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    let mut json = String::with_capacity(bytes.len().div_ceil(3) * 4 + 2);
    json.push('"');
    STANDARD.encode_string(bytes, &mut json);
    json.push('"');
    let raw = RawValue::from_string(json).map_err(serde::ser::Error::custom)?;
    raw.serialize(serializer)
}

/// Bytes from a base64 string or (data written before) an array of numbers.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    deserializer.deserialize_any(BytesVisitor)
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a base64 string or an array of bytes")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<u8>, E> {
        STANDARD.decode(text).map_err(|e| {
            E::custom(format_args!(
                "invalid base64 in a {}-character byte string: {e}",
                text.len()
            ))
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(byte) = seq.next_element::<u8>()? {
            bytes.push(byte);
        }
        Ok(bytes)
    }
}

/// The same for `Option<Vec<u8>>`: `null` or the bytes.
pub mod option {
    use serde::{Deserialize, Deserializer, Serializer};

    /// `None` as `null`, bytes as a base64 string.
    pub fn serialize<S: Serializer>(
        bytes: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => super::serialize(bytes, serializer),
            None => serializer.serialize_none(),
        }
    }

    /// `null`, a base64 string or an array of numbers.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        struct Bytes(#[serde(with = "super")] Vec<u8>);
        Ok(Option::<Bytes>::deserialize(deserializer)?.map(|b| b.0))
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Record {
        #[serde(with = "crate::json_bytes")]
        value: Vec<u8>,
        #[serde(with = "crate::json_bytes::option", default)]
        prev: Option<Vec<u8>>,
    }

    #[test]
    fn bytes_are_base64_strings_and_round_trip() {
        let record = Record {
            value: vec![0, 1, 2, 250, 255],
            prev: Some(b"hi".to_vec()),
        };
        let json = serde_json::to_string(&record).unwrap();
        assert_eq!(json, r#"{"value":"AAEC+v8=","prev":"aGk="}"#);
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), record);
        let none = Record {
            value: Vec::new(),
            prev: None,
        };
        let json = serde_json::to_string(&none).unwrap();
        assert_eq!(json, r#"{"value":"","prev":null}"#);
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), none);
    }

    #[test]
    fn arrays_of_numbers_written_before_still_read() {
        let old: Record = serde_json::from_str(r#"{"value":[0,255],"prev":[104,105]}"#).unwrap();
        assert_eq!(old.value, vec![0, 255]);
        assert_eq!(old.prev, Some(b"hi".to_vec()));
        let missing: Record = serde_json::from_str(r#"{"value":[]}"#).unwrap();
        assert_eq!(missing.prev, None);
    }

    #[test]
    fn bad_input_names_the_problem() {
        let err = serde_json::from_str::<Record>(r#"{"value":"@@@@"}"#).unwrap_err();
        assert!(err.to_string().contains("invalid base64"), "{err}");
        assert!(serde_json::from_str::<Record>(r#"{"value":[256]}"#).is_err());
    }

    #[test]
    fn a_mebibyte_is_a_third_larger_not_three_times() {
        let record = Record {
            value: vec![0xa5; 1 << 20],
            prev: None,
        };
        let json = serde_json::to_vec(&record).unwrap();
        assert!(json.len() < (1 << 20) * 4 / 3 + 64, "{}", json.len());
        assert_eq!(serde_json::from_slice::<Record>(&json).unwrap(), record);
    }
}
