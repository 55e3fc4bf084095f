//! The AWS Query API client: what an operator tool or a platform service uses to manage IAM
//! (users, access keys, policies) and to ask who a key belongs to, without an AWS SDK.
//!
//! Every attempt is a fresh `POST /` (form-encoded `Action=..&Version=..&..`) signed by
//! [`iam_sigv4::Signer`], the same SigV4 code the server verifies with, for the instance the
//! attempt goes to (`host` differs per instance, and `x-amz-date` is the attempt's own time).
//! Calls follow the instance list and retry with the platform's
//! [`RetryPolicy`](crate::RetryPolicy) on the shared engine, like [`Client`](crate::Client): a
//! refused connection, no answer in time or a 5xx (IAM unavailable) goes to the next instance
//! after backoff, reported as a retry; an AWS error answer (4xx: `SignatureDoesNotMatch`,
//! `NoSuchEntity`, ...) is final and kept whole in [`QueryError::Refused`].
//!
//! The HTTP answer is mapped onto gRPC codes only so the engine can classify it: 5xx is
//! UNAVAILABLE, `NoSuchEntity` NOT_FOUND, `EntityAlreadyExists` ALREADY_EXISTS, a signature or
//! key error UNAUTHENTICATED, `AccessDenied` PERMISSION_DENIED, any other 4xx INVALID_ARGUMENT.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use chainfire_client::engine::{Call, CallSettings, Engine, GaveUp, Instances, Route};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use iam_sigv4::{AmzDate, Credentials, Payload, Request, Signer, aws_uri_encode};
use quick_xml::Reader;
use quick_xml::events::Event;
use tokio::net::TcpStream;
use tonic::Status;

use crate::{CallInfo, FailedOp};

/// STS actions (signed for service `sts`, API version 2011-06-15); the rest are IAM's.
const STS_ACTIONS: [&str; 1] = ["GetCallerIdentity"];
const STS_VERSION: &str = "2011-06-15";
const IAM_VERSION: &str = "2010-05-08";
const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// How the client reaches the Query API and whom it signs as.
#[derive(Clone)]
pub struct QueryConfig {
    /// IAM instances' Query API addresses, `HOST:PORT` (plain HTTP).
    pub endpoints: Vec<String>,
    pub credentials: Credentials,
    /// The region requests are signed for (the server's `--region`).
    pub region: String,
    /// Retries, timeouts, deadline, observer (the platform's defaults).
    pub call: CallSettings,
}

impl QueryConfig {
    pub fn new<I, S>(endpoints: I, credentials: Credentials) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        QueryConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            credentials,
            region: "us-east-1".into(),
            call: CallSettings::default(),
        }
    }
}

/// An error document IAM answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    pub http_status: u16,
    /// e.g. `SignatureDoesNotMatch`, `NoSuchEntity`, `ServiceUnavailable`.
    pub code: String,
    pub message: String,
}

impl AwsError {
    /// From an answer's status and body (AWS's `<ErrorResponse><Error><Code>..<Message>..`);
    /// a body that is not one keeps its text as the message.
    fn parse(http_status: u16, body: &str) -> AwsError {
        AwsError {
            http_status,
            code: xml_text(body, "Code").unwrap_or_else(|| format!("HTTP{http_status}")),
            message: xml_text(body, "Message").unwrap_or_else(|| body.trim().to_owned()),
        }
    }

    /// The gRPC status the engine classifies this answer by (see the module documentation).
    fn status(&self) -> Status {
        let text = format!("{}: {}", self.code, self.message);
        match (self.http_status, self.code.as_str()) {
            (500.., _) => Status::unavailable(text),
            (_, "NoSuchEntity") => Status::not_found(text),
            (_, "EntityAlreadyExists") => Status::already_exists(text),
            (_, "AccessDenied") => Status::permission_denied(text),
            (
                _,
                "SignatureDoesNotMatch"
                | "InvalidClientTokenId"
                | "IncompleteSignature"
                | "MissingAuthenticationToken"
                | "RequestExpired",
            ) => Status::unauthenticated(text),
            _ => Status::invalid_argument(text),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("invalid IAM Query API client configuration: {0}")]
    InvalidConfig(String),
    /// IAM answered with an error document that retrying cannot change.
    #[error("{action} refused by {} after {} attempt(s): {} {}: {}",
        .op.last_endpoint, .op.attempts, .error.http_status, .error.code, .error.message)]
    Refused {
        action: String,
        error: AwsError,
        op: Box<FailedOp>,
    },
    /// No instance answered, or every answer was "unavailable", on every attempt.
    #[error("{}", .0.exhausted_message())]
    Exhausted(Box<FailedOp>),
}

/// A successful answer: the XML body and where and how it was answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub body: String,
    pub info: CallInfo,
}

impl Answer {
    /// The text of the first `<element>` in the answer.
    pub fn text(&self, element: &str) -> Option<String> {
        xml_text(&self.body, element)
    }

    /// The texts of every `<element>`, in order.
    pub fn texts(&self, element: &str) -> Vec<String> {
        xml_texts(&self.body, element)
    }
}

/// `GetCallerIdentity`'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    pub arn: String,
    pub user_id: String,
    pub account: String,
}

/// See the module documentation.
#[derive(Clone)]
pub struct QueryClient {
    inner: Arc<Inner>,
}

struct Inner {
    instances: Instances<String, crate::RetryTarget>,
    call: CallSettings,
    sts: Signer,
    iam: Signer,
}

impl QueryClient {
    /// Checks the config; connects per attempt (the first call finds an instance).
    pub fn new(config: QueryConfig) -> Result<QueryClient, QueryError> {
        let connect = |endpoint: &str| Ok(endpoint.to_owned());
        let instances = Instances::new(&config.endpoints, Box::new(connect))
            .ok_or_else(|| QueryError::InvalidConfig("no IAM endpoint".into()))?;
        let signer = |service| Signer::new(config.credentials.clone(), &config.region, service);
        Ok(QueryClient {
            inner: Arc::new(Inner {
                instances,
                sts: signer("sts"),
                iam: signer("iam"),
                call: config.call,
            }),
        })
    }

    /// Calls `action` with `params` (name, value) and returns the answer; see the module
    /// documentation for retries and errors.
    pub async fn call(&self, action: &str, params: &[(&str, &str)]) -> Result<Answer, QueryError> {
        let (signer, version) = if STS_ACTIONS.contains(&action) {
            (&self.inner.sts, STS_VERSION)
        } else {
            (&self.inner.iam, IAM_VERSION)
        };
        let body = form_body(action, version, params);
        let call = Call {
            op: "query",
            key: Some(action.as_bytes()),
            route: Route::Any,
            policy: &self.inner.call.retry,
        };
        // The error document of the last answer, so a final one is returned whole.
        let refusal: Mutex<Option<AwsError>> = Mutex::new(None);
        let engine = Engine {
            endpoints: &self.inner.instances,
            settings: &self.inner.call,
        };
        let outcome = engine
            .run(call, |addr: String, _budget| {
                let (body, refusal) = (&body, &refusal);
                async move {
                    let (status, text) = post(signer, &addr, body).await?;
                    if (200..300).contains(&status) {
                        return Ok(tonic::Response::new(text));
                    }
                    let error = AwsError::parse(status, &text);
                    let as_status = error.status();
                    *refusal.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
                    Err(as_status)
                }
            })
            .await;
        match outcome {
            Ok((body, info)) => Ok(Answer { body, info }),
            Err(GaveUp::Exhausted(op)) => Err(QueryError::Exhausted(op)),
            Err(GaveUp::Rejected(op)) => {
                let error = refusal.into_inner().unwrap_or_else(|e| e.into_inner());
                match error {
                    Some(error) => Err(QueryError::Refused {
                        action: action.to_owned(),
                        error,
                        op,
                    }),
                    // Refused before any answer (an unusable endpoint).
                    None => Err(QueryError::Exhausted(op)),
                }
            }
        }
    }

    /// STS `GetCallerIdentity`: whose key signs this client's requests.
    pub async fn get_caller_identity(&self) -> Result<CallerIdentity, QueryError> {
        let answer = self.call("GetCallerIdentity", &[]).await?;
        Ok(CallerIdentity {
            arn: answer.text("Arn").unwrap_or_default(),
            user_id: answer.text("UserId").unwrap_or_default(),
            account: answer.text("Account").unwrap_or_default(),
        })
    }

    pub async fn create_user(&self, user: &str) -> Result<Answer, QueryError> {
        self.call("CreateUser", &[("UserName", user)]).await
    }

    pub async fn delete_user(&self, user: &str) -> Result<Answer, QueryError> {
        self.call("DeleteUser", &[("UserName", user)]).await
    }

    /// A new access key for `user`, with its secret (shown once, as by AWS).
    pub async fn create_access_key(&self, user: &str) -> Result<Credentials, QueryError> {
        let answer = self.call("CreateAccessKey", &[("UserName", user)]).await?;
        Ok(Credentials {
            access_key_id: answer.text("AccessKeyId").unwrap_or_default(),
            secret_access_key: answer.text("SecretAccessKey").unwrap_or_default(),
            session_token: None,
        })
    }

    pub async fn delete_access_key(
        &self,
        user: &str,
        access_key_id: &str,
    ) -> Result<Answer, QueryError> {
        let params = [("UserName", user), ("AccessKeyId", access_key_id)];
        self.call("DeleteAccessKey", &params).await
    }

    /// The ids of `user`'s access keys.
    pub async fn list_access_keys(&self, user: &str) -> Result<Vec<String>, QueryError> {
        let answer = self.call("ListAccessKeys", &[("UserName", user)]).await?;
        Ok(answer.texts("AccessKeyId"))
    }

    /// Attaches (or replaces) `user`'s inline policy `name`, a JSON policy document.
    pub async fn put_user_policy(
        &self,
        user: &str,
        name: &str,
        document: &str,
    ) -> Result<Answer, QueryError> {
        let params = [
            ("UserName", user),
            ("PolicyName", name),
            ("PolicyDocument", document),
        ];
        self.call("PutUserPolicy", &params).await
    }
}

/// `Action=..&Version=..&name=value..`, each part encoded as SigV4 encodes a query (RFC 3986:
/// every byte but the unreserved ones percent-encoded), which is valid form encoding.
fn form_body(action: &str, version: &str, params: &[(&str, &str)]) -> String {
    [("Action", action), ("Version", version)]
        .iter()
        .chain(params)
        .map(|(n, v)| format!("{}={}", aws_uri_encode(n, true), aws_uri_encode(v, true)))
        .collect::<Vec<_>>()
        .join("&")
}

/// One signed `POST /` to `addr` over a fresh HTTP/1.1 connection: the status and the body.
/// A failure on this side of the wire is UNAVAILABLE with its cause as the source, as tonic's
/// own transport errors are, so the engine counts it as a broken connection.
async fn post(signer: &Signer, addr: &str, body: &str) -> Result<(u16, String), Status> {
    let headers = vec![
        ("host".to_owned(), addr.to_owned()),
        ("content-type".to_owned(), FORM.to_owned()),
    ];
    let request = Request {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        payload: Payload::Bytes(body.as_bytes()),
    };
    let signed = signer.sign_headers(&request, AmzDate::from_system_time(SystemTime::now()));

    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| transport(format!("tcp connect to {addr}"), e))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| transport(format!("HTTP handshake with {addr}"), e))?;
    // Ends when the answer is read and `sender` dropped.
    tokio::spawn(connection);
    let mut builder = hyper::Request::post("/");
    for (name, value) in headers.iter().chain(&signed) {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let http_request = builder
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .map_err(|e| Status::internal(format!("building the request: {e}")))?;
    let response = sender
        .send_request(http_request)
        .await
        .map_err(|e| transport(format!("HTTP request to {addr}"), e))?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| transport(format!("reading the answer from {addr}"), e))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

fn transport(what: String, error: impl std::error::Error + Send + Sync + 'static) -> Status {
    let mut status = Status::unavailable(format!("{what}: {error}"));
    status.set_source(Arc::new(error));
    status
}

fn xml_text(xml: &str, element: &str) -> Option<String> {
    xml_texts(xml, element).into_iter().next()
}

/// The text content of every `<element>` (by local name) in `xml`, unescaped.
fn xml_texts(xml: &str, element: &str) -> Vec<String> {
    let mut reader = Reader::from_str(xml);
    let mut found = Vec::new();
    let mut inside: Option<String> = None;
    loop {
        match reader.read_event() {
            Ok(Event::Start(start)) if start.local_name().as_ref() == element.as_bytes() => {
                inside = Some(String::new());
            }
            Ok(Event::Text(text)) => {
                if let (Some(buffer), Ok(text)) = (inside.as_mut(), text.decode()) {
                    buffer.push_str(&text);
                }
            }
            Ok(Event::GeneralRef(reference)) => {
                if let (Some(buffer), Ok(name)) = (inside.as_mut(), reference.decode()) {
                    let entity = format!("&{name};");
                    if let Ok(text) = quick_xml::escape::unescape(&entity) {
                        buffer.push_str(&text);
                    }
                }
            }
            Ok(Event::End(end)) if end.local_name().as_ref() == element.as_bytes() => {
                found.extend(inside.take());
            }
            Ok(Event::Eof) | Err(_) => return found,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_body_encodes_every_reserved_byte() {
        let body = form_body(
            "PutUserPolicy",
            IAM_VERSION,
            &[("PolicyDocument", r#"{"a": "b/c*"}"#), ("UserName", "ü")],
        );
        assert_eq!(
            body,
            "Action=PutUserPolicy&Version=2010-05-08\
             &PolicyDocument=%7B%22a%22%3A%20%22b%2Fc%2A%22%7D&UserName=%C3%BC"
        );
    }

    #[test]
    fn error_documents_are_read_and_classified() {
        let body = r#"<?xml version="1.0"?><ErrorResponse xmlns="x"><Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>user &quot;bob&quot; &lt;none&gt;</Message></Error><RequestId>r</RequestId></ErrorResponse>"#;
        let error = AwsError::parse(404, body);
        assert_eq!(error.code, "NoSuchEntity");
        assert_eq!(error.message, r#"user "bob" <none>"#);
        assert_eq!(error.status().code(), tonic::Code::NotFound);

        let unavailable = AwsError::parse(
            503,
            "<ErrorResponse><Error><Code>ServiceUnavailable</Code><Message>IAM unavailable</Message></Error></ErrorResponse>",
        );
        assert_eq!(unavailable.status().code(), tonic::Code::Unavailable);
        let signature = AwsError::parse(403, "<Error><Code>SignatureDoesNotMatch</Code></Error>");
        assert_eq!(signature.status().code(), tonic::Code::Unauthenticated);
        // Not an error document: the text survives as the message.
        let plain = AwsError::parse(400, "bad request\n");
        assert_eq!(
            (plain.code.as_str(), plain.message.as_str()),
            ("HTTP400", "bad request")
        );
        assert_eq!(plain.status().code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn every_element_text_is_found_in_order() {
        let body = "<R><Member><AccessKeyId>AK1</AccessKeyId></Member><Member><AccessKeyId>AK2</AccessKeyId></Member></R>";
        assert_eq!(xml_texts(body, "AccessKeyId"), ["AK1", "AK2"]);
        assert_eq!(xml_text(body, "Missing"), None);
    }
}
