//! Every call authenticated with SigV4 through IAM and authorised per action and VM, by
//! iam-client (retries across IAM instances, a bounded cache of allows): the call's signature
//! is checked by IAM's `Authenticate` (iam-client's gRPC mapping, with this instance's own
//! address as `host`), then `Authorize` decides `plasmavmc:<Action>` on
//! `arn:aws:plasmavmc::<account>:vm/<name>`. IAM unreachable or undecided is UNAVAILABLE,
//! never an allow.

use iam_client::{ClientError, grpc_sigv4};
use prost::Message;
use tonic::Status;
use tonic::metadata::MetadataMap;

/// Who made a call that was allowed.
#[derive(Debug, Clone)]
pub struct Caller {
    pub arn: String,
}

pub struct Auth {
    iam: iam_client::Client,
    /// This instance's address as clients dial it (the signed `host`).
    own_addr: String,
}

fn iam_failure(what: &str, e: ClientError) -> Status {
    match e {
        ClientError::Rejected(op) if op.code == Some(tonic::Code::Unauthenticated) => {
            Status::unauthenticated(op.last_cause.clone())
        }
        ClientError::Rejected(op) => {
            Status::permission_denied(format!("{what}: {}", op.last_cause))
        }
        other => Status::unavailable(format!("IAM unavailable: {what}: {other}")),
    }
}

impl Auth {
    pub fn new(iam: iam_client::Client, own_addr: String) -> Auth {
        Auth { iam, own_addr }
    }

    /// Authenticates the call of `path` (`metadata`, `message`) and authorises `action` on the
    /// VM `vm` (`*` for every VM).
    pub async fn check<M: Message>(
        &self,
        path: &str,
        metadata: &MetadataMap,
        message: &M,
        action: &str,
        vm: &str,
    ) -> Result<Caller, Status> {
        let request = grpc_sigv4::authenticate_request(
            &self.own_addr,
            path,
            metadata,
            &message.encode_to_vec(),
        );
        let (principal, _) = self
            .iam
            .authenticate(request)
            .await
            .map_err(|e| iam_failure("authenticate", e))?;
        let action = format!("plasmavmc:{action}");
        let resource = format!("arn:aws:plasmavmc::{}:vm/{vm}", principal.account);
        let decision = self
            .iam
            .authorize(&principal.user, &action, &resource)
            .await
            .map_err(|e| iam_failure("authorize", e))?;
        if !decision.allowed {
            return Err(Status::permission_denied(format!(
                "{} is not allowed {action} on {resource}{}",
                principal.arn,
                if decision.statement.is_empty() {
                    " (no policy allows it)".to_owned()
                } else {
                    format!(" ({})", decision.statement)
                }
            )));
        }
        Ok(Caller { arn: principal.arn })
    }
}
