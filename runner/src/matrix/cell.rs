//! One cell of the test matrix: a design-note scenario row (S1..S5) crossed with a service,
//! optionally narrowed by a variant, and the status the design note gives it.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The services of the design note's matrix, in the note's column order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    #[serde(rename = "chainfire")]
    ChainFire,
    #[serde(rename = "flaredb")]
    FlareDb,
    #[serde(rename = "plasmavmc")]
    PlasmaVmc,
    Iam,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Service::ChainFire,
        Service::FlareDb,
        Service::PlasmaVmc,
        Service::Iam,
    ];

    /// The spelling used in files and cell ids.
    pub fn key(self) -> &'static str {
        match self {
            Service::ChainFire => "chainfire",
            Service::FlareDb => "flaredb",
            Service::PlasmaVmc => "plasmavmc",
            Service::Iam => "iam",
        }
    }

    /// The spelling of the design note, used in reports.
    pub fn display_name(self) -> &'static str {
        match self {
            Service::ChainFire => "ChainFire",
            Service::FlareDb => "FlareDB",
            Service::PlasmaVmc => "PlasmaVMC",
            Service::Iam => "IAM",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

impl FromStr for Service {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Service::ALL
            .into_iter()
            .find(|svc| svc.key() == s)
            .ok_or_else(|| {
                format!("unknown service `{s}`, expected one of chainfire, flaredb, plasmavmc, iam")
            })
    }
}

/// What the design note's matrix says about a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum CellStatus {
    /// Tested for real: a scenario must cover it and pass.
    #[serde(rename = "TEST")]
    Test,
    /// Not tested in this environment; reported as skipped with the reason.
    #[serde(rename = "SKIP")]
    Skip,
    /// A documented gap: the behaviour is observed (where possible) and reported as skipped
    /// with the gap, the observation and the recommendation.
    #[serde(rename = "DOC-GAP")]
    DocGap,
}

impl fmt::Display for CellStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CellStatus::Test => "TEST",
            CellStatus::Skip => "SKIP",
            CellStatus::DocGap => "DOC-GAP",
        })
    }
}

/// A matrix cell, written `S<n>/<service>` or `S<n>/<service>/<variant>` (e.g. `S1/chainfire`,
/// `S5/chainfire/reconnecting-watch`). The variant lets the project add a cell next to one of
/// the note's cells without changing the note's cell.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CellId {
    /// The design-note scenario number (1 for S1).
    pub row: u32,
    pub service: Service,
    pub variant: Option<String>,
}

impl CellId {
    /// `S1`, `S5`: the design-note scenario this cell belongs to.
    pub fn row_id(&self) -> String {
        format!("S{}", self.row)
    }

    /// The JUnit testcase name: the service as the note spells it, plus the variant.
    pub fn service_label(&self) -> String {
        match &self.variant {
            None => self.service.display_name().to_owned(),
            Some(v) => format!("{} ({v})", self.service.display_name()),
        }
    }
}

impl fmt::Display for CellId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S{}/{}", self.row, self.service)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

const CELL_ID_PATTERN: &str =
    "^S[1-9][0-9]*/(chainfire|flaredb|plasmavmc|iam)(/[a-z0-9][a-z0-9-]*)?$";

impl FromStr for CellId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            format!(
                "bad cell id `{s}`: {why} (expected S<n>/<service>[/<variant>], e.g. S1/chainfire)"
            )
        };
        let mut parts = s.split('/');
        let row = parts.next().unwrap_or_default();
        let row: u32 = row
            .strip_prefix('S')
            .and_then(|n| n.parse().ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| bad("the scenario must be S1, S2, ..."))?;
        let service = parts
            .next()
            .ok_or_else(|| bad("no service"))?
            .parse::<Service>()
            .map_err(|e| bad(&e))?;
        let variant = match parts.next() {
            None => None,
            Some(v) if is_slug(v) => Some(v.to_owned()),
            Some(_) => return Err(bad("a variant is lowercase letters, digits and '-'")),
        };
        if parts.next().is_some() {
            return Err(bad("too many '/'"));
        }
        Ok(CellId {
            row,
            service,
            variant,
        })
    }
}

/// Lowercase letters, digits and '-', starting with a letter or digit: safe in file names,
/// cell ids and JUnit names.
pub fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl<'de> Deserialize<'de> for CellId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for CellId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for CellId {
    fn schema_name() -> Cow<'static, str> {
        "CellId".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": CELL_ID_PATTERN,
            "description": "A matrix cell: S<n>/<service>[/<variant>], e.g. S1/chainfire or S5/chainfire/reconnecting-watch",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_ids_round_trip() {
        for s in ["S1/chainfire", "S3/iam", "S5/chainfire/reconnecting-watch"] {
            let id: CellId = s.parse().unwrap();
            assert_eq!(id.to_string(), s);
        }
        let id: CellId = "S4/flaredb".parse().unwrap();
        assert_eq!(
            id,
            CellId {
                row: 4,
                service: Service::FlareDb,
                variant: None
            }
        );
        assert_eq!(id.service_label(), "FlareDB");
        assert_eq!(id.row_id(), "S4");
    }

    #[test]
    fn bad_cell_ids_say_why() {
        for (s, why) in [
            ("1/chainfire", "S1, S2"),
            ("S0/chainfire", "S1, S2"),
            ("S1/etcd", "unknown service `etcd`"),
            ("S1", "no service"),
            ("S1/chainfire/Bad_Variant", "lowercase"),
            ("S1/chainfire/a/b", "too many"),
        ] {
            let err = s.parse::<CellId>().unwrap_err();
            assert!(err.contains(why), "{s}: {err}");
        }
    }

    #[test]
    fn schema_pattern_accepts_exactly_what_the_parser_accepts() {
        // Editors check files with the schema's pattern; it must agree with the parser.
        let pattern = regex::Regex::new(CELL_ID_PATTERN).unwrap();
        for s in [
            "S1/chainfire",
            "S12/iam",
            "S5/chainfire/reconnecting-watch",
            "S0/chainfire",
            "S1/etcd",
            "S1",
            "S1/chainfire/Bad",
            "S1/chainfire/-x",
            "S1/chainfire/a/b",
            "s1/chainfire",
        ] {
            assert_eq!(pattern.is_match(s), s.parse::<CellId>().is_ok(), "{s}");
        }
    }
}
