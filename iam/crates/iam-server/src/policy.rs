//! IAM policy documents and their evaluation, as AWS evaluates identity policies: a request is
//! allowed when some statement allows its action on its resource and none denies it; an
//! explicit Deny wins over any Allow, and with no matching statement the answer is deny.
//! `Action` and `Resource` are a string or a list; `*` matches any run of characters and `?`
//! one character; actions compare case-insensitively (`iam:CreateUser` = `IAM:createuser`),
//! resources exactly. `NotAction` / `NotResource` / `Condition` are refused when the policy is
//! put, rather than silently ignored.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// One statement, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// `Sid`, when it has one.
    pub sid: Option<String>,
    pub effect: Effect,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
}

/// A parsed policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub statements: Vec<Statement>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(rename = "Version")]
    version: Option<String>,
    #[serde(rename = "Id")]
    _id: Option<String>,
    #[serde(rename = "Statement")]
    statement: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatement {
    #[serde(rename = "Sid")]
    sid: Option<String>,
    #[serde(rename = "Effect")]
    effect: String,
    #[serde(rename = "Action")]
    action: Value,
    #[serde(rename = "Resource")]
    resource: Value,
}

fn strings(value: &Value, field: &str) -> Result<Vec<String>, String> {
    let list = match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{field} must be a string or a list of strings"))
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(format!("{field} must be a string or a list of strings")),
    };
    if list.is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    Ok(list)
}

impl Policy {
    /// Parses a policy document; the error says what AWS's `MalformedPolicyDocument` would.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let doc: Document = serde_json::from_str(text).map_err(|e| format!("{e}"))?;
        if let Some(v) = &doc.version
            && v != "2012-10-17"
            && v != "2008-10-17"
        {
            return Err(format!("Version {v:?} is not 2012-10-17"));
        }
        let raw: Vec<RawStatement> = match doc.statement {
            Value::Array(items) => items
                .into_iter()
                .map(serde_json::from_value)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("Statement: {e}"))?,
            one @ Value::Object(_) => {
                vec![serde_json::from_value(one).map_err(|e| format!("Statement: {e}"))?]
            }
            _ => return Err("Statement must be an object or a list of objects".into()),
        };
        let statements = raw
            .into_iter()
            .map(|s| {
                Ok(Statement {
                    sid: s.sid,
                    effect: match s.effect.as_str() {
                        "Allow" => Effect::Allow,
                        "Deny" => Effect::Deny,
                        other => return Err(format!("Effect {other:?} is not Allow or Deny")),
                    },
                    actions: strings(&s.action, "Action")?,
                    resources: strings(&s.resource, "Resource")?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Policy { statements })
    }
}

/// `*` matches any run (also empty), `?` one character.
pub fn wildcard_match(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = if ignore_case {
        (
            pattern.to_lowercase().chars().collect(),
            text.to_lowercase().chars().collect(),
        )
    } else {
        (pattern.chars().collect(), text.chars().collect())
    };
    // Iterative matching with one backtrack point: linear in practice, never exponential.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The answer to "may this principal do `action` on `resource`?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The statement that decided (`policy name`, its index, its Sid), `None` for the implicit
    /// deny.
    pub statement: Option<String>,
}

/// Evaluates `policies` (name, policy) for `action` on `resource`.
pub fn evaluate<'a>(
    policies: impl IntoIterator<Item = (&'a str, &'a Policy)>,
    action: &str,
    resource: &str,
) -> Decision {
    let mut allow: Option<String> = None;
    for (name, policy) in policies {
        for (i, s) in policy.statements.iter().enumerate() {
            let matches = s.actions.iter().any(|a| wildcard_match(a, action, true))
                && s.resources
                    .iter()
                    .any(|r| wildcard_match(r, resource, false));
            if !matches {
                continue;
            }
            let which = match &s.sid {
                Some(sid) => format!("{name} statement {i} ({sid})"),
                None => format!("{name} statement {i}"),
            };
            match s.effect {
                Effect::Deny => {
                    return Decision {
                        allowed: false,
                        statement: Some(which),
                    };
                }
                Effect::Allow => {
                    allow.get_or_insert(which);
                }
            }
        }
    }
    Decision {
        allowed: allow.is_some(),
        statement: allow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_runs_and_single_characters() {
        assert!(wildcard_match("*", "", false));
        assert!(wildcard_match("iam:*", "iam:CreateUser", true));
        assert!(wildcard_match("iam:*User", "IAM:createuser", true));
        assert!(!wildcard_match("iam:*User", "iam:CreateUsers", true));
        assert!(wildcard_match("iam:Get?ser", "iam:GetUser", true));
        assert!(!wildcard_match("iam:Get?ser", "iam:Getser", true));
        assert!(wildcard_match(
            "arn:aws:iam::*:user/a*",
            "arn:aws:iam::1:user/alice",
            false
        ));
        assert!(!wildcard_match(
            "arn:aws:iam::*:user/A*",
            "arn:aws:iam::1:user/alice",
            false
        ));
        assert!(wildcard_match("a*b*c", "aXXbYYbc", false));
        // Many stars do not blow up: one backtrack point, not one per star.
        assert!(wildcard_match(&"a*".repeat(30), &"a".repeat(40), false));
        assert!(!wildcard_match(
            &format!("{}b", "a*".repeat(30)),
            &"a".repeat(4000),
            false
        ));
    }

    #[test]
    fn an_explicit_deny_wins_and_nothing_matching_is_a_deny() {
        let allow_all = Policy::parse(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
        )
        .unwrap();
        let deny_delete = Policy::parse(
            r#"{"Statement":{"Sid":"nodelete","Effect":"Deny","Action":["iam:Delete*"],"Resource":["arn:aws:iam::*:user/admin"]}}"#,
        )
        .unwrap();
        let both = [("all", &allow_all), ("guard", &deny_delete)];
        let d = evaluate(both, "iam:CreateUser", "arn:aws:iam::0:user/bob");
        assert!(d.allowed);
        assert_eq!(d.statement.as_deref(), Some("all statement 0"));
        let d = evaluate(both, "iam:DeleteUser", "arn:aws:iam::0:user/admin");
        assert!(!d.allowed);
        assert_eq!(d.statement.as_deref(), Some("guard statement 0 (nodelete)"));
        let d = evaluate([("guard", &deny_delete)], "iam:CreateUser", "x");
        assert_eq!(
            d,
            Decision {
                allowed: false,
                statement: None
            }
        );
    }

    #[test]
    fn malformed_documents_are_refused_with_the_reason() {
        for (doc, why) in [
            ("{", "EOF"),
            (
                r#"{"Statement":[{"Effect":"Maybe","Action":"*","Resource":"*"}]}"#,
                "Effect",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Action":[],"Resource":"*"}]}"#,
                "Action must not be empty",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","NotAction":"*","Resource":"*"}]}"#,
                "NotAction",
            ),
            (r#"{"Version":"2020-01-01","Statement":[]}"#, "Version"),
        ] {
            let e = Policy::parse(doc).unwrap_err();
            assert!(e.contains(why), "{doc}: {e}");
        }
    }
}
