//! The AWS Query API over HTTP, as real AWS clients call it with `--endpoint-url`: a form body
//! (or query) with `Action` and its parameters, signed with SigV4, answered in AWS's XML.
//!
//! Every request goes the same way: the directory must be trusted (else 503 "IAM
//! unavailable"), the signature must verify (`iam_sigv4::Verifier`, service `iam` or `sts`),
//! the key must be active, the caller's policies must allow the action on its resource (an
//! explicit Deny wins; nothing matching is a deny), and only then is the action carried out in
//! ChainFire. Actions: STS `GetCallerIdentity`; IAM `CreateUser`, `DeleteUser`,
//! `CreateAccessKey`, `DeleteAccessKey`, `ListAccessKeys`, `PutUserPolicy`, `DeleteUserPolicy`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use iam_sigv4::{Payload, Verifier, VerifyError};

use crate::directory::{Directory, Unavailable};
use crate::model::{self, AccessKey, SECRET_CHARS, UPPER_ALNUM, User, UserPolicy};
use crate::policy::{self, Policy};
use crate::store::{Store, StoreError};
use crate::xml::{self, IAM_NS, Node, STS_NS};

/// The largest request body taken (AWS's Query API caps policies far below this).
const MAX_BODY: usize = 1 << 20;
/// Access keys a user may have, as in AWS.
const MAX_KEYS_PER_USER: usize = 2;

/// What every request needs.
pub struct Api {
    pub directory: Arc<Directory>,
    pub store: Store,
    /// The Query API's: requests signed for `iam` or `sts`.
    pub verifier: Verifier,
    /// The internal `Authenticate`'s: requests the platform's services received, signed for
    /// their own service names too.
    pub services_verifier: Verifier,
    /// The 12-digit account id in every ARN.
    pub account: String,
}

/// An error answered in AWS's shape.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn validation(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "ValidationError", message)
    }

    fn no_such_entity(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NoSuchEntity", message)
    }
}

impl From<Unavailable> for ApiError {
    fn from(e: Unavailable) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            e.to_string(),
        )
    }
}

impl From<VerifyError> for ApiError {
    fn from(e: VerifyError) -> ApiError {
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::FORBIDDEN);
        let message = match &e {
            // AWS's own wording, then what this side computed, so the client can diff.
            VerifyError::Mismatch {
                canonical_request,
                string_to_sign,
            } => format!(
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.\n\nThe Canonical String for this request should have been\n'{canonical_request}'\n\nThe String-to-Sign should have been\n'{string_to_sign}'\n"
            ),
            other => other.message(),
        };
        ApiError::new(status, e.code(), message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                e.to_string(),
            ),
            StoreError::Exists(_) => {
                ApiError::new(StatusCode::CONFLICT, "EntityAlreadyExists", e.to_string())
            }
            StoreError::Missing(_) => ApiError::no_such_entity(e.to_string()),
            StoreError::Corrupt(..) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceFailure",
                e.to_string(),
            ),
        }
    }
}

/// The namespace of the answer: STS's for its action, IAM's for the rest.
fn namespace(action: &str) -> &'static str {
    if action == "GetCallerIdentity" {
        STS_NS
    } else {
        IAM_NS
    }
}

/// The request's parameters: the query's, then a form body's.
fn parameters(query: &str, headers: &[(String, String)], body: &[u8]) -> BTreeMap<String, String> {
    let mut params: BTreeMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let form = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("content-type")
            && v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
    });
    if form {
        params.extend(form_urlencoded::parse(body).into_owned());
    }
    params
}

/// Answers one HTTP request (the router's only handler).
pub async fn handle(State(api): State<Arc<Api>>, request: Request) -> Response {
    let request_id = model::random_id("", 32, b"0123456789abcdef");
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, MAX_BODY).await else {
        let e = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "the request body is over 1 MiB",
        );
        return reply_error(IAM_NS, &e, &request_id);
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let query = parts.uri.query().unwrap_or("");
    let params = parameters(query, &headers, &body);
    let action = params.get("Action").cloned().unwrap_or_default();
    let signed = iam_sigv4::Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query,
        headers: &headers,
        payload: Payload::Bytes(&body),
    };
    let answer = api.serve(&signed, &action, &params, &request_id).await;
    match answer {
        Ok(xml) => (StatusCode::OK, [(header::CONTENT_TYPE, "text/xml")], xml).into_response(),
        Err(e) => {
            tracing::info!(
                action,
                code = e.code,
                status = e.status.as_u16(),
                "refused: {}",
                e.message.lines().next().unwrap_or("")
            );
            reply_error(namespace(&action), &e, &request_id)
        }
    }
}

fn reply_error(namespace: &str, e: &ApiError, request_id: &str) -> Response {
    let body = xml::error(
        namespace,
        !e.status.is_server_error(),
        e.code,
        &e.message,
        request_id,
    );
    (e.status, [(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

/// The caller, once its signature verified.
struct Caller {
    user: User,
}

impl Api {
    fn user_arn(&self, name: &str) -> String {
        format!("arn:aws:iam::{}:user/{name}", self.account)
    }

    async fn serve(
        &self,
        request: &iam_sigv4::Request<'_>,
        action: &str,
        params: &BTreeMap<String, String>,
        request_id: &str,
    ) -> Result<String, ApiError> {
        let (user, _) = self.authenticate(request, &self.verifier)?;
        let caller = Caller { user };
        let param = |name: &str| -> Result<&str, ApiError> {
            params
                .get(name)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| ApiError::validation(format!("1 validation error detected: Value null at '{name}' failed to satisfy constraint: Member must not be null")))
        };
        // The user an access-key action is about: the one named, else the caller.
        let subject = params
            .get("UserName")
            .cloned()
            .unwrap_or_else(|| caller.user.name.clone());
        let result = match action {
            "GetCallerIdentity" => Some(vec![
                Node::text("Arn", caller.user.arn.clone()),
                Node::text("UserId", caller.user.id.clone()),
                Node::text("Account", self.account.clone()),
            ]),
            "CreateUser" => {
                let name = param("UserName")?;
                self.authorize(&caller, "iam:CreateUser", &self.user_arn(name))?;
                check_name(name, 64, "userName")?;
                let user = User {
                    name: name.to_owned(),
                    id: model::random_id("AIDA", 17, UPPER_ALNUM),
                    arn: self.user_arn(name),
                    created: now_rfc3339(),
                };
                self.store.create_user(&user).await?;
                Some(vec![user_node(&user)])
            }
            "DeleteUser" => {
                let name = param("UserName")?;
                self.authorize(&caller, "iam:DeleteUser", &self.user_arn(name))?;
                self.existing_user(name).await?;
                let keys = self.store.access_keys_of(name).await?.len();
                let policies = self.store.policy_count(name).await?;
                if keys + policies > 0 {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "DeleteConflict",
                        format!(
                            "Cannot delete entity, must delete access keys and policies first ({keys} keys, {policies} policies)."
                        ),
                    ));
                }
                self.store.delete_user(name).await?;
                None
            }
            "CreateAccessKey" => {
                self.authorize(&caller, "iam:CreateAccessKey", &self.user_arn(&subject))?;
                self.existing_user(&subject).await?;
                if self.store.access_keys_of(&subject).await?.len() >= MAX_KEYS_PER_USER {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "LimitExceeded",
                        format!("Cannot exceed quota for AccessKeysPerUser: {MAX_KEYS_PER_USER}"),
                    ));
                }
                let key = AccessKey {
                    access_key_id: model::random_id("AKIA", 16, UPPER_ALNUM),
                    secret_access_key: model::random_id("", 40, SECRET_CHARS),
                    user: subject.clone(),
                    status: "Active".into(),
                    created: now_rfc3339(),
                };
                self.store.create_access_key(&key).await?;
                Some(vec![Node::Element(
                    "AccessKey",
                    vec![
                        Node::text("UserName", key.user.clone()),
                        Node::text("AccessKeyId", key.access_key_id.clone()),
                        Node::text("Status", key.status.clone()),
                        Node::text("SecretAccessKey", key.secret_access_key.clone()),
                        Node::text("CreateDate", key.created.clone()),
                    ],
                )])
            }
            "DeleteAccessKey" => {
                let id = param("AccessKeyId")?;
                self.authorize(&caller, "iam:DeleteAccessKey", &self.user_arn(&subject))?;
                match self.store.access_key(id).await? {
                    Some(k) if k.user == subject => self.store.delete_access_key(id).await?,
                    _ => {
                        return Err(ApiError::no_such_entity(format!(
                            "The Access Key with id {id} cannot be found for user {subject}."
                        )));
                    }
                }
                None
            }
            "ListAccessKeys" => {
                self.authorize(&caller, "iam:ListAccessKeys", &self.user_arn(&subject))?;
                self.existing_user(&subject).await?;
                let keys = self.store.access_keys_of(&subject).await?;
                Some(vec![
                    Node::Element(
                        "AccessKeyMetadata",
                        keys.iter()
                            .map(|k| {
                                Node::Element(
                                    "member",
                                    vec![
                                        Node::text("UserName", k.user.clone()),
                                        Node::text("AccessKeyId", k.access_key_id.clone()),
                                        Node::text("Status", k.status.clone()),
                                        Node::text("CreateDate", k.created.clone()),
                                    ],
                                )
                            })
                            .collect(),
                    ),
                    Node::text("IsTruncated", "false"),
                ])
            }
            "PutUserPolicy" => {
                let name = param("UserName")?;
                let policy_name = param("PolicyName")?;
                let document = param("PolicyDocument")?;
                self.authorize(&caller, "iam:PutUserPolicy", &self.user_arn(name))?;
                check_name(policy_name, 128, "policyName")?;
                Policy::parse(document).map_err(|e| {
                    ApiError::new(StatusCode::BAD_REQUEST, "MalformedPolicyDocument", e)
                })?;
                self.existing_user(name).await?;
                self.store
                    .put_policy(&UserPolicy {
                        user: name.to_owned(),
                        name: policy_name.to_owned(),
                        document: document.to_owned(),
                    })
                    .await?;
                None
            }
            "DeleteUserPolicy" => {
                let name = param("UserName")?;
                let policy_name = param("PolicyName")?;
                self.authorize(&caller, "iam:DeleteUserPolicy", &self.user_arn(name))?;
                self.store
                    .delete_policy(name, policy_name)
                    .await
                    .map_err(|e| match e {
                        StoreError::Missing(_) => ApiError::no_such_entity(format!(
                            "The user policy with name {policy_name} cannot be found."
                        )),
                        other => other.into(),
                    })?;
                None
            }
            "" => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "MissingAction",
                    "the request has no Action",
                ));
            }
            other => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidAction",
                    format!(
                        "Could not find operation {other} for version {}",
                        params.get("Version").map_or("", String::as_str)
                    ),
                ));
            }
        };
        tracing::debug!(action, caller = %caller.user.name, "done");
        Ok(xml::response(namespace(action), action, result, request_id))
    }

    /// Who signed `request` (checked by `verifier`): its verified signature's active key, and
    /// that key's user.
    pub fn authenticate(
        &self,
        request: &iam_sigv4::Request<'_>,
        verifier: &Verifier,
    ) -> Result<(User, String), ApiError> {
        self.directory.trusted()?;
        let directory = &self.directory;
        let secrets = |id: &str| {
            directory
                .access_key(id)
                .ok()
                .flatten()
                .filter(|k| k.status == "Active")
                .map(|k| k.secret_access_key)
        };
        let who = verifier.verify(request, SystemTime::now(), &secrets)?;
        let key = directory.access_key(&who.access_key_id)?.ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "InvalidClientTokenId",
                "the access key was deleted",
            )
        })?;
        let user = directory.user(&key.user)?.ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "InvalidClientTokenId",
                format!("the key's user {} does not exist", key.user),
            )
        })?;
        Ok((user, who.access_key_id))
    }

    /// May `user` do `action` on `resource`, by the user's policies (an unknown user has none).
    pub fn decide(
        &self,
        user: &str,
        action: &str,
        resource: &str,
    ) -> Result<policy::Decision, Unavailable> {
        let policies = self.directory.policies_of(user)?;
        Ok(policy::evaluate(
            policies.iter().map(|(n, p)| (n.as_str(), p)),
            action,
            resource,
        ))
    }

    async fn existing_user(&self, name: &str) -> Result<User, ApiError> {
        self.store.user(name).await?.ok_or_else(|| {
            ApiError::no_such_entity(format!("The user with name {name} cannot be found."))
        })
    }

    /// The caller's policies must allow `action` on `resource`.
    fn authorize(&self, caller: &Caller, action: &str, resource: &str) -> Result<(), ApiError> {
        let decision = self.decide(&caller.user.name, action, resource)?;
        if decision.allowed {
            return Ok(());
        }
        let why = match decision.statement {
            Some(s) => format!("with an explicit deny in an identity-based policy ({s})"),
            None => format!("because no identity-based policy allows the {action} action"),
        };
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            format!(
                "User: {} is not authorized to perform: {action} on resource: {resource} {why}",
                caller.user.arn
            ),
        ))
    }
}

fn check_name(name: &str, max: usize, what: &str) -> Result<(), ApiError> {
    if model::valid_name(name, max) {
        Ok(())
    } else {
        Err(ApiError::validation(format!(
            "1 validation error detected: Value '{name}' at '{what}' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+ and have length at most {max}"
        )))
    }
}

fn user_node(user: &User) -> Node {
    Node::Element(
        "User",
        vec![
            Node::text("Path", "/"),
            Node::text("UserName", user.name.clone()),
            Node::text("UserId", user.id.clone()),
            Node::text("Arn", user.arn.clone()),
            Node::text("CreateDate", user.created.clone()),
        ],
    )
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_come_from_the_query_and_a_form_body_with_plus_as_space() {
        let form = vec![(
            "Content-Type".to_owned(),
            "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
        )];
        let p = parameters(
            "Version=2010-05-08",
            &form,
            b"Action=CreateUser&UserName=a+b%2Bc",
        );
        assert_eq!(p["Action"], "CreateUser");
        assert_eq!(p["UserName"], "a b+c");
        assert_eq!(p["Version"], "2010-05-08");
        // A body that is not a form is not read as parameters.
        let p = parameters("", &[], b"Action=CreateUser");
        assert!(p.is_empty());
        assert_eq!(namespace("GetCallerIdentity"), STS_NS);
        assert_eq!(namespace("CreateUser"), IAM_NS);
    }
}
