//! The JSON Schema of scenario files, derived with schemars from the same types serde parses
//! into, and committed as `scenarios/scenario.schema.json` so editors can complete and check
//! files. A test fails when the committed copy differs from what the code generates.

use super::model::Scenario;

/// The schema as pretty-printed JSON with a trailing newline (the committed file's exact bytes).
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(Scenario);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema is always valid JSON");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMITTED: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/scenario.schema.json"
    );

    /// With `UPDATE_SCHEMA=1` the test rewrites the committed file instead of failing.
    #[test]
    fn committed_schema_is_up_to_date() {
        let generated = schema_json();
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::write(COMMITTED, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
        assert!(
            committed == generated,
            "scenarios/scenario.schema.json is out of date: regenerate it with\n  \
             cargo run -p reconnect-runner -- schema > scenarios/scenario.schema.json\n\
             or UPDATE_SCHEMA=1 cargo test -p reconnect-runner committed_schema"
        );
    }

    #[test]
    fn schema_rejects_unknown_fields_and_lists_every_step_kind() {
        let schema: serde_json::Value = serde_json::from_str(&schema_json()).unwrap();
        assert_eq!(
            schema["additionalProperties"],
            serde_json::Value::Bool(false)
        );
        let steps = schema["$defs"]["Step"]["oneOf"]
            .as_array()
            .expect("Step is a oneOf");
        let kinds: Vec<&str> = steps
            .iter()
            .filter_map(|v| v["required"][0].as_str())
            .collect();
        for kind in [
            "put",
            "kill",
            "partition",
            "heal",
            "wait_for_leader",
            "check_watch",
        ] {
            assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
        }
        assert_eq!(
            kinds.len(),
            steps.len(),
            "every step kind is a one-key object"
        );
    }
}
