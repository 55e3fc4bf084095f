//! PlasmaVMC's wire contract and the platform's client for it.
//!
//! - [`pb`]: `plasmavmc.v1` (`Vms`: CreateVm, StartVm, StopVm, DeleteVm, GetVm, ListVms,
//!   WatchVms), generated from `proto/plasmavmc.proto`.
//! - [`Client`]: every call signed with SigV4 (iam-client's [`grpc_sigv4`] mapping, signed anew
//!   per attempt for the instance it goes to), following the instance list (PlasmaVMC instances
//!   all serve the API), retried with the platform's [`RetryPolicy`] (3 retries, x2.0, 500 ms to
//!   30 s) on chainfire-client's engine, every retry logged (target `plasmavmc_client::retry`)
//!   and handed to the observer. A mutating call carries one request id on every attempt, so a
//!   retry of a call that was applied is answered with the first outcome (`replayed`), never
//!   applied twice. The final error names the operation, the VM, the instances, the attempts
//!   and the cause.

/// Generated types and services (`plasmavmc.v1`).
pub mod pb {
    tonic::include_proto!("plasmavmc.v1");
}

use std::sync::Arc;

use chainfire_client::engine::{Call, CallSettings, Engine, Instances, Route, lazy_channel};
pub use chainfire_client::{CallInfo, FailedOp, RetryEvent, RetryObserver, RetryPolicy};
use iam_client::grpc_sigv4;
pub use iam_sigv4::Credentials;
use iam_sigv4::Signer;
use prost::Message;
use tonic::transport::Channel;

use pb::vms_client::VmsClient;

chainfire_client::retry_log!(pub(crate) RetryTarget => "plasmavmc_client::retry");

/// The service name calls are signed for.
pub const SIGNING_SERVICE: &str = "plasmavmc";

/// The gRPC paths, as signed (the server authenticates with the same ones).
pub mod paths {
    pub const CREATE_VM: &str = "/plasmavmc.v1.Vms/CreateVm";
    pub const START_VM: &str = "/plasmavmc.v1.Vms/StartVm";
    pub const STOP_VM: &str = "/plasmavmc.v1.Vms/StopVm";
    pub const DELETE_VM: &str = "/plasmavmc.v1.Vms/DeleteVm";
    pub const GET_VM: &str = "/plasmavmc.v1.Vms/GetVm";
    pub const LIST_VMS: &str = "/plasmavmc.v1.Vms/ListVms";
    pub const WATCH_VMS: &str = "/plasmavmc.v1.Vms/WatchVms";
}

/// How the client reaches PlasmaVMC and whom it signs as. `call.address_map` maps an
/// instance's own address (in `endpoints`, what calls are signed for) to the address it is
/// dialled at from here.
#[derive(Clone)]
pub struct ClientConfig {
    /// PlasmaVMC instances' addresses, `HOST:PORT`.
    pub endpoints: Vec<String>,
    pub credentials: Credentials,
    /// The region calls are signed for (IAM's `--region`).
    pub region: String,
    /// Retries, timeouts, deadline, observer (the platform's defaults).
    pub call: CallSettings,
}

impl ClientConfig {
    pub fn new<I, S>(endpoints: I, credentials: Credentials) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            credentials,
            region: "us-east-1".into(),
            call: CallSettings::default(),
        }
    }

    chainfire_client::call_settings_builders!();
}

/// What a call can end in: `Rejected` when PlasmaVMC answered no (not found, not allowed,
/// invalid, ...), `Exhausted` when it could not be reached or could not complete the call on
/// any attempt; for a mutating call the outcome is then unknown when
/// [`FailedOp::maybe_applied`]: repeat it with the same request id
/// ([`Client::create_vm_with_id`], [`Client::vm_action`]) to learn it.
pub use chainfire_client::engine::ServiceError as ClientError;

/// One instance: its client and the address it was dialled at (what calls are signed for).
#[derive(Clone)]
struct Instance {
    client: VmsClient<Channel>,
    authority: String,
}

/// See the crate documentation.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    instances: Instances<Instance, RetryTarget>,
    signer: Signer,
    call: CallSettings,
}

/// A fresh request id (128 random bits, hex).
pub fn new_request_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

impl Client {
    /// Checks the config; connects lazily (the first call finds an instance).
    pub fn new(config: ClientConfig) -> Result<Client, ClientError> {
        let (connect_timeout, from) = (config.call.connect_timeout, config.call.local_address);
        let address_map = config.call.address_map.clone();
        // Signed for the instance's own address (the host it checks), dialled where the
        // address map says it is reached from here (a proxy, a translation).
        let connect = move |endpoint: &str| {
            let dial = address_map.translate(endpoint);
            Ok(Instance {
                client: VmsClient::new(lazy_channel(&dial, connect_timeout, from)?),
                authority: endpoint.to_owned(),
            })
        };
        let instances = Instances::new(&config.endpoints, Box::new(connect))
            .ok_or_else(|| ClientError::InvalidConfig("PlasmaVMC: no endpoint".into()))?;
        Ok(Client {
            inner: Arc::new(Inner {
                instances,
                signer: Signer::new(config.credentials, &config.region, SIGNING_SERVICE),
                call: config.call,
            }),
        })
    }

    /// Runs one call of `path` with `message` (signed per attempt), retried by the engine.
    async fn run<M, R, F, Fut>(
        &self,
        op: &'static str,
        key: &str,
        path: &'static str,
        message: M,
        rpc: F,
    ) -> Result<(R, CallInfo), ClientError>
    where
        M: Message + Clone,
        F: Fn(VmsClient<Channel>, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let encoded = message.encode_to_vec();
        let call = Call {
            op,
            key: Some(key.as_bytes()),
            route: Route::Any,
            policy: &self.inner.call.retry,
        };
        let engine = Engine {
            endpoints: &self.inner.instances,
            settings: &self.inner.call,
        };
        let outcome = engine
            .run(call, |instance: Instance, _budget| {
                let mut request = tonic::Request::new(message.clone());
                let signed = grpc_sigv4::sign_call(
                    &self.inner.signer,
                    &instance.authority,
                    path,
                    &encoded,
                    request.metadata_mut(),
                );
                let sent = signed.map(|()| rpc(instance.client, request));
                async move {
                    match sent {
                        Ok(answer) => answer.await,
                        Err(e) => Err(tonic::Status::invalid_argument(format!("signing: {e}"))),
                    }
                }
            })
            .await?;
        Ok(outcome)
    }

    /// Creates `name` running `command` (desired state running when `start`), with a fresh
    /// request id.
    pub async fn create_vm(
        &self,
        name: &str,
        command: &[&str],
        env: &[(&str, &str)],
        start: bool,
    ) -> Result<pb::VmReply, ClientError> {
        self.create_vm_with_id(name, command, env, start, &new_request_id())
            .await
    }

    /// [`create_vm`](Self::create_vm) with the caller's request id (to repeat a call whose
    /// outcome is unknown).
    pub async fn create_vm_with_id(
        &self,
        name: &str,
        command: &[&str],
        env: &[(&str, &str)],
        start: bool,
        request_id: &str,
    ) -> Result<pb::VmReply, ClientError> {
        self.create_vm_with_info(name, command, env, start, request_id)
            .await
            .map(|(reply, _)| reply)
    }

    /// [`create_vm_with_id`](Self::create_vm_with_id), with how the call went (the instance
    /// that answered, attempts, retries).
    pub async fn create_vm_with_info(
        &self,
        name: &str,
        command: &[&str],
        env: &[(&str, &str)],
        start: bool,
        request_id: &str,
    ) -> Result<(pb::VmReply, CallInfo), ClientError> {
        let request = pb::CreateVmRequest {
            name: name.into(),
            command: command.iter().map(|c| (*c).to_owned()).collect(),
            env: env
                .iter()
                .map(|(n, v)| pb::EnvVar {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
            start,
            request_id: request_id.into(),
        };
        self.run(
            "create_vm",
            name,
            paths::CREATE_VM,
            request,
            |mut c, r| async move { c.create_vm(r).await },
        )
        .await
    }

    /// Desired state running.
    pub async fn start_vm(&self, name: &str) -> Result<pb::VmReply, ClientError> {
        self.vm_action("start_vm", name, &new_request_id()).await
    }

    /// Desired state stopped.
    pub async fn stop_vm(&self, name: &str) -> Result<pb::VmReply, ClientError> {
        self.vm_action("stop_vm", name, &new_request_id()).await
    }

    /// Desired state deleted: the reconciler stops the guest and removes the record.
    pub async fn delete_vm(&self, name: &str) -> Result<pb::VmReply, ClientError> {
        self.vm_action("delete_vm", name, &new_request_id()).await
    }

    /// `start_vm`, `stop_vm` or `delete_vm` (as `op`) with the caller's request id.
    pub async fn vm_action(
        &self,
        op: &'static str,
        name: &str,
        request_id: &str,
    ) -> Result<pb::VmReply, ClientError> {
        self.vm_action_with_info(op, name, request_id)
            .await
            .map(|(reply, _)| reply)
    }

    /// [`vm_action`](Self::vm_action), with how the call went (the instance that answered,
    /// attempts, retries).
    pub async fn vm_action_with_info(
        &self,
        op: &'static str,
        name: &str,
        request_id: &str,
    ) -> Result<(pb::VmReply, CallInfo), ClientError> {
        let request = pb::VmRequest {
            name: name.into(),
            request_id: request_id.into(),
        };
        match op {
            "start_vm" => {
                self.run(op, name, paths::START_VM, request, |mut c, r| async move {
                    c.start_vm(r).await
                })
                .await
            }
            "stop_vm" => {
                self.run(op, name, paths::STOP_VM, request, |mut c, r| async move {
                    c.stop_vm(r).await
                })
                .await
            }
            "delete_vm" => {
                self.run(op, name, paths::DELETE_VM, request, |mut c, r| async move {
                    c.delete_vm(r).await
                })
                .await
            }
            other => Err(ClientError::InvalidConfig(format!(
                "{other:?} is not start_vm, stop_vm or delete_vm"
            ))),
        }
    }

    pub async fn get_vm(&self, name: &str) -> Result<pb::Vm, ClientError> {
        let request = pb::GetVmRequest { name: name.into() };
        let (reply, _) = self
            .run(
                "get_vm",
                name,
                paths::GET_VM,
                request,
                |mut c, r| async move { c.get_vm(r).await },
            )
            .await?;
        Ok(reply.vm.unwrap_or_default())
    }

    pub async fn list_vms(&self) -> Result<Vec<pb::Vm>, ClientError> {
        let (reply, _) = self
            .run(
                "list_vms",
                "",
                paths::LIST_VMS,
                pb::ListVmsRequest {},
                |mut c, r| async move { c.list_vms(r).await },
            )
            .await?;
        Ok(reply.vms)
    }

    /// Every change of any VM from now on, from one instance (the stream is opened with
    /// retries; when it breaks, open a new one and re-read with [`list_vms`](Self::list_vms)).
    pub async fn watch_vms(&self) -> Result<tonic::Streaming<pb::VmEvent>, ClientError> {
        let (stream, _) = self
            .run(
                "watch_vms",
                "",
                paths::WATCH_VMS,
                pb::WatchVmsRequest {},
                |mut c, r| async move { c.watch_vms(r).await },
            )
            .await?;
        Ok(stream)
    }
}
