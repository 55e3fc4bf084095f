//! Which node a step acts on: chosen by role (`leader`, `follower`, `any`), by node id (`2`),
//! or by a name an earlier step saved (`$victim`).

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// A node selector. Roles are resolved when the step runs (the leader is asked for, not
/// assumed); a saved name refers to the node an earlier step chose with `as: name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeRef {
    /// The node every running node reports as leader; for PlasmaVMC, the instance that holds
    /// the reconciler lease.
    Leader,
    /// A running node that is not the leader (chosen with the run's seed); for PlasmaVMC, a
    /// standby instance.
    Follower,
    /// Any running node (chosen with the run's seed).
    Any,
    /// A node id, 1-based as in `chainfire --id N`.
    Id(u32),
    /// A node saved by an earlier step (`as: victim` there, `$victim` here).
    Saved(String),
}

impl fmt::Display for NodeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeRef::Leader => f.write_str("leader"),
            NodeRef::Follower => f.write_str("follower"),
            NodeRef::Any => f.write_str("any"),
            NodeRef::Id(id) => write!(f, "node {id}"),
            NodeRef::Saved(name) => write!(f, "${name}"),
        }
    }
}

impl NodeRef {
    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "leader" => Ok(NodeRef::Leader),
            "follower" => Ok(NodeRef::Follower),
            "any" => Ok(NodeRef::Any),
            _ => {
                if let Some(name) = s.strip_prefix('$') {
                    if is_name(name) {
                        return Ok(NodeRef::Saved(name.to_owned()));
                    }
                    return Err(format!(
                        "bad saved node name `{s}`: use letters, digits, '_' and '-'"
                    ));
                }
                match s.parse::<u32>() {
                    Ok(0) => Err("node ids start at 1".to_owned()),
                    Ok(id) => Ok(NodeRef::Id(id)),
                    Err(_) => Err(format!(
                        "unknown node `{s}`, expected leader, follower, any, a node id (1, 2, ...) or $name"
                    )),
                }
            }
        }
    }
}

/// Names for saved nodes, steps, watches and loads: letters, digits, '_' and '-'.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl<'de> Deserialize<'de> for NodeRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NodeRefVisitor;
        impl Visitor<'_> for NodeRefVisitor {
            type Value = NodeRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("leader, follower, any, a node id (1, 2, ...) or $name")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NodeRef, E> {
                match u32::try_from(v) {
                    Ok(0) => Err(E::custom("node ids start at 1")),
                    Ok(id) => Ok(NodeRef::Id(id)),
                    Err(_) => Err(E::custom(format!("node id {v} is too large"))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NodeRef, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom("node ids start at 1")),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NodeRef, E> {
                NodeRef::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(NodeRefVisitor)
    }
}

impl JsonSchema for NodeRef {
    fn schema_name() -> Cow<'static, str> {
        "NodeRef".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "leader, follower, any, a node id (1-based), or $name saved by an earlier step's `as`",
            "oneOf": [
                { "type": "integer", "minimum": 1 },
                { "type": "string", "pattern": "^(leader|follower|any|[1-9][0-9]*|\\$[A-Za-z0-9_-]+)$" }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Holder {
        node: NodeRef,
    }

    fn parse(yaml: &str) -> Result<NodeRef, String> {
        serde_saphyr::from_str::<Holder>(yaml)
            .map(|h| h.node)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn roles_ids_and_saved_names_parse() {
        assert_eq!(parse("node: leader").unwrap(), NodeRef::Leader);
        assert_eq!(parse("node: follower").unwrap(), NodeRef::Follower);
        assert_eq!(parse("node: any").unwrap(), NodeRef::Any);
        assert_eq!(parse("node: 2").unwrap(), NodeRef::Id(2));
        assert_eq!(parse("node: '3'").unwrap(), NodeRef::Id(3));
        assert_eq!(
            parse("node: $old_leader").unwrap(),
            NodeRef::Saved("old_leader".into())
        );
    }

    #[test]
    fn bad_selectors_are_rejected_with_reasons() {
        assert!(parse("node: 0").unwrap_err().contains("start at 1"));
        assert!(parse("node: -1").unwrap_err().contains("start at 1"));
        assert!(
            parse("node: leeder")
                .unwrap_err()
                .contains("unknown node `leeder`")
        );
        assert!(
            parse("node: $")
                .unwrap_err()
                .contains("bad saved node name")
        );
    }
}
