//! IAM's internal gRPC API (`iam.v1.Iam`) for the platform's other services: `Authenticate`
//! verifies a request the caller received, with the same verifier and directory as the Query
//! API, from its parts and the body's SHA-256; `Authorize` evaluates the user's policies.
//! Errors: UNAUTHENTICATED "<AWS code>: <message>" for a request that does not verify,
//! UNAVAILABLE "IAM unavailable: ..." when IAM cannot decide (retry; never an allow).

use std::sync::Arc;

use iam_client::pb;
use iam_sigv4::Payload;
use tonic::{Request, Response, Status};

use crate::api::{Api, ApiError};

pub struct Internal {
    pub api: Arc<Api>,
}

fn status(e: ApiError) -> Status {
    let message = format!("{}: {}", e.code, e.message);
    if e.status.is_server_error() {
        Status::unavailable(message)
    } else {
        Status::unauthenticated(message)
    }
}

#[tonic::async_trait]
impl pb::iam_server::Iam for Internal {
    async fn authenticate(
        &self,
        request: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        let r = request.into_inner();
        let hash = r.payload_sha256.to_ascii_lowercase();
        if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Status::invalid_argument(
                "payload_sha256 must be the body's SHA-256 in hex (64 digits)",
            ));
        }
        let headers: Vec<(String, String)> =
            r.headers.into_iter().map(|h| (h.name, h.value)).collect();
        let signed = iam_sigv4::Request {
            method: &r.method,
            path: &r.path,
            query: &r.query,
            headers: &headers,
            payload: Payload::Hash(&hash),
        };
        let (user, access_key_id) = self
            .api
            .authenticate(&signed, &self.api.services_verifier)
            .map_err(status)?;
        Ok(Response::new(pb::AuthenticateResponse {
            principal: Some(pb::Principal {
                user: user.name,
                user_id: user.id,
                arn: user.arn,
                access_key_id,
                account: self.api.account.clone(),
            }),
        }))
    }

    async fn authorize(
        &self,
        request: Request<pb::AuthorizeRequest>,
    ) -> Result<Response<pb::AuthorizeResponse>, Status> {
        let r = request.into_inner();
        if r.user.is_empty() || r.action.is_empty() || r.resource.is_empty() {
            return Err(Status::invalid_argument(
                "user, action and resource are required",
            ));
        }
        let decision = self
            .api
            .decide(&r.user, &r.action, &r.resource)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        tracing::debug!(user = %r.user, action = %r.action, resource = %r.resource, allowed = decision.allowed, "authorize");
        Ok(Response::new(pb::AuthorizeResponse {
            allowed: decision.allowed,
            statement: decision.statement.unwrap_or_default(),
        }))
    }
}
