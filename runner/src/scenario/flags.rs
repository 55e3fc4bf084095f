//! The server flags a scenario may set (`config.flags`), per service: behaviour only, each
//! with the range its value must be in. Every address, port, path and id a server gets comes
//! from the runner, so no scenario can make a node listen on all interfaces, dial a host outside
//! the run's namespace, write outside the evidence folder or pose as another node; `validate`
//! refuses such a flag (with its position), and the supervisor applies only allowed flags.

/// What a flag's value must look like.
#[derive(Debug, Clone, Copy)]
enum Value {
    /// A whole number in `min..=max` (milliseconds, seconds, counts).
    Whole { min: u64, max: u64 },
    /// A decimal number in `min..=max`.
    Decimal { min: f64, max: f64 },
    /// Log directives: `level` or `target=level`, comma-separated.
    LogFilter,
}

struct Allowed {
    name: &'static str,
    services: &'static [&'static str],
    value: Value,
}

const BOTH: &[&str] = &["chainfire", "flaredb"];
const CHAINFIRE: &[&str] = &["chainfire"];
const FLAREDB: &[&str] = &["flaredb"];
const IAM: &[&str] = &["iam"];
const PLASMAVMC: &[&str] = &["plasmavmc"];
const ALL: &[&str] = &["chainfire", "flaredb", "iam", "plasmavmc"];
/// Ten minutes: no time setting of a scenario's servers needs more (scenarios are bounded too).
const MAX_MS: u64 = 600_000;

const fn ms(min: u64) -> Value {
    Value::Whole { min, max: MAX_MS }
}

const ALLOWED: &[Allowed] = &[
    Allowed {
        name: "heartbeat-interval-ms",
        services: BOTH,
        value: ms(10),
    },
    Allowed {
        name: "election-timeout-ms",
        services: BOTH,
        value: ms(50),
    },
    Allowed {
        name: "retry-max-retries",
        services: BOTH,
        value: Value::Whole { min: 0, max: 20 },
    },
    Allowed {
        name: "retry-initial-delay-ms",
        services: BOTH,
        value: ms(1),
    },
    Allowed {
        name: "retry-multiplier",
        services: BOTH,
        value: Value::Decimal {
            min: 1.0,
            max: 10.0,
        },
    },
    Allowed {
        name: "retry-max-delay-ms",
        services: BOTH,
        value: ms(1),
    },
    Allowed {
        name: "retry-jitter",
        services: BOTH,
        value: Value::Decimal { min: 0.0, max: 1.0 },
    },
    Allowed {
        name: "write-timeout-ms",
        services: BOTH,
        value: ms(1),
    },
    Allowed {
        name: "snapshot-logs",
        services: BOTH,
        value: Value::Whole {
            min: 1,
            max: 10_000_000,
        },
    },
    Allowed {
        name: "snapshot-keep-logs",
        services: BOTH,
        value: Value::Whole {
            min: 0,
            max: 10_000_000,
        },
    },
    Allowed {
        name: "log-level",
        services: ALL,
        value: Value::LogFilter,
    },
    Allowed {
        name: "confirm-every-ms",
        services: IAM,
        value: ms(10),
    },
    Allowed {
        name: "trust-for-ms",
        services: IAM,
        value: ms(20),
    },
    Allowed {
        name: "chainfire-timeout-ms",
        services: IAM,
        value: ms(10),
    },
    Allowed {
        name: "reconcile-every-ms",
        services: PLASMAVMC,
        value: ms(10),
    },
    Allowed {
        name: "lease-ttl-ms",
        services: PLASMAVMC,
        value: ms(300),
    },
    Allowed {
        name: "stop-grace-ms",
        services: PLASMAVMC,
        value: ms(0),
    },
    Allowed {
        name: "watch-every-ms",
        services: PLASMAVMC,
        value: ms(10),
    },
    Allowed {
        name: "lease-check-interval-ms",
        services: CHAINFIRE,
        value: ms(1),
    },
    Allowed {
        name: "watch-history",
        services: CHAINFIRE,
        value: Value::Whole {
            min: 1,
            max: 10_000_000,
        },
    },
    Allowed {
        name: "shutdown-timeout-ms",
        services: CHAINFIRE,
        value: ms(1),
    },
    Allowed {
        name: "pd-reconnect-interval-ms",
        services: FLAREDB,
        value: ms(1),
    },
    Allowed {
        name: "pd-heartbeat-interval-ms",
        services: FLAREDB,
        value: ms(1),
    },
    Allowed {
        name: "pd-lease-ttl-s",
        services: FLAREDB,
        value: Value::Whole { min: 1, max: 3_600 },
    },
    Allowed {
        name: "pd-request-timeout-ms",
        services: FLAREDB,
        value: ms(1),
    },
];

/// Flags the runner sets itself, and why a scenario may not.
const RUNNER_OWNED: &[(&str, &str)] = &[
    ("id", "the node id"),
    ("client-addr", "an address"),
    ("addr", "an address"),
    ("peer-addr", "an address"),
    ("initial-cluster", "addresses"),
    ("cluster-client-addrs", "addresses"),
    ("peers", "addresses"),
    ("pd-endpoints", "addresses"),
    ("grpc-addr", "an address"),
    ("chainfire-endpoints", "addresses"),
    ("bootstrap-key", "the runner's administrator key"),
    ("bootstrap-key-file", "a path"),
    ("region", "what the runner's clients sign for"),
    ("account-id", "what the runner's checks expect in ARNs"),
    ("data-dir", "a path"),
    ("log-file", "a path"),
];

/// The flag's name without leading dashes, as the allow-list spells it.
pub fn bare(name: &str) -> &str {
    name.trim_start_matches('-')
}

/// Whether `--name value` may be passed to a node of `service` ("chainfire", "flaredb", "iam"); the
/// reason when not.
pub fn check(service: &str, name: &str, value: &str) -> Result<(), String> {
    let bare = bare(name);
    if let Some((_, what)) = RUNNER_OWNED.iter().find(|(n, _)| *n == bare) {
        return Err(format!(
            "flag `--{bare}` names {what}, which only the runner sets (every address, port, \
             path and id of a node comes from the run's own namespace and folder)"
        ));
    }
    let Some(allowed) = ALLOWED
        .iter()
        .find(|a| a.name == bare && a.services.contains(&service))
    else {
        let names: Vec<&str> = ALLOWED
            .iter()
            .filter(|a| a.services.contains(&service))
            .map(|a| a.name)
            .collect();
        return Err(format!(
            "flag `--{bare}` is not one a scenario may set for {service}; allowed: {}",
            names.join(", ")
        ));
    };
    let value = value.trim();
    match allowed.value {
        Value::Whole { min, max } => match value.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(()),
            _ => Err(format!(
                "flag `--{bare}`: `{value}` is not a whole number from {min} to {max}"
            )),
        },
        Value::Decimal { min, max } => match value.parse::<f64>() {
            Ok(x) if x.is_finite() && (min..=max).contains(&x) => Ok(()),
            _ => Err(format!(
                "flag `--{bare}`: `{value}` is not a number from {min} to {max}"
            )),
        },
        Value::LogFilter => {
            let levels = ["trace", "debug", "info", "warn", "error", "off"];
            let ok = !value.is_empty()
                && value.split(',').all(|directive| {
                    let (target, level) = directive.rsplit_once('=').unwrap_or(("", directive));
                    levels.contains(&level)
                        && target
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                })
                && value.len() <= 200;
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "flag `--{bare}`: `{value}` is not a log filter (`level` or \
                     `target=level`, comma-separated; levels {})",
                    levels.join(", ")
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_takes_its_own_behaviour_flags_and_never_its_key_or_addresses() {
        assert!(check("iam", "--trust-for-ms", "3000").is_ok());
        assert!(check("iam", "confirm-every-ms", "500").is_ok());
        assert!(check("chainfire", "--trust-for-ms", "3000").is_err());
        assert!(check("iam", "--election-timeout-ms", "500").is_err());
        for owned in [
            "--bootstrap-key",
            "--grpc-addr",
            "--chainfire-endpoints",
            "--region",
        ] {
            let e = check("iam", owned, "x").unwrap_err();
            assert!(e.contains("only the runner sets"), "{owned}: {e}");
        }
    }

    #[test]
    fn behaviour_flags_pass_within_their_range() {
        assert!(check("flaredb", "--pd-lease-ttl-s", "3").is_ok());
        assert!(check("flaredb", "log-level", "debug,openraft=info").is_ok());
        assert!(check("chainfire", "--snapshot-logs", "32").is_ok());
        assert!(check("chainfire", "--retry-multiplier", "2.0").is_ok());
    }

    #[test]
    fn addresses_paths_and_ids_are_the_runners() {
        for (name, value) in [
            ("--data-dir", "/"),
            ("--log-file", "/etc/passwd"),
            ("--client-addr", "0.0.0.0:2379"),
            ("--initial-cluster", "1=10.0.0.1:2380"),
            ("--id", "7"),
        ] {
            let err = check("chainfire", name, value).unwrap_err();
            assert!(err.contains("only the runner sets"), "{name}: {err}");
        }
        for name in ["--pd-endpoints", "--peer-addr", "--addr", "--peers"] {
            let err = check("flaredb", name, "10.0.0.1:1").unwrap_err();
            assert!(err.contains("only the runner sets"), "{name}: {err}");
        }
    }

    #[test]
    fn other_flags_and_bad_values_say_what_is_allowed() {
        let err = check("chainfire", "--pd-lease-ttl-s", "3").unwrap_err();
        assert!(
            err.contains("not one a scenario may set for chainfire"),
            "{err}"
        );
        assert!(err.contains("watch-history"), "{err}");
        let err = check("chainfire", "--rejoin-wiped-member", "true").unwrap_err();
        assert!(err.contains("allowed:"), "{err}");
        let err = check("chainfire", "--election-timeout-ms", "18446744073709551615").unwrap_err();
        assert!(err.contains("from 50 to 600000"), "{err}");
        let err = check("chainfire", "--retry-jitter", "NaN").unwrap_err();
        assert!(err.contains("from 0 to 1"), "{err}");
        let err = check("flaredb", "--log-level", "debug; rm -rf /").unwrap_err();
        assert!(err.contains("not a log filter"), "{err}");
    }
}
