//! The `plasmavmc.v1.Vms` service: each call authenticated and authorised (see [`auth`]), then
//! a read or a change of the VM's record in FlareDB. The API only records desired state; the
//! reconciler makes it so. A mutating call is applied at most once per request id: a repeat is
//! answered with the record as it is, `replayed` set.
//!
//! [`auth`]: crate::auth

use std::pin::Pin;

use futures::Stream;
use plasmavmc_client::{paths, pb};
use tokio::sync::broadcast;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tonic::{Request, Response, Status};

use crate::auth::Auth;
use crate::driver::{VmSpec, valid_name};
use crate::record::{Desired, VmRecord};
use crate::store::{Change, Store};

pub struct VmsApi {
    pub auth: Auth,
    pub store: Store,
    pub events: broadcast::Sender<pb::VmEvent>,
}

fn check_name(name: &str) -> Result<(), Status> {
    valid_name(name).map_err(|e| Status::invalid_argument(e.to_string()))
}

fn reply(record: &VmRecord, replayed: bool) -> Response<pb::VmReply> {
    Response::new(pb::VmReply {
        vm: Some(record.to_pb()),
        replayed,
    })
}

impl VmsApi {
    /// StartVm, StopVm, DeleteVm: set the desired state of an existing VM.
    async fn set_desired(
        &self,
        request: Request<pb::VmRequest>,
        path: &str,
        action: &str,
        desired: Desired,
    ) -> Result<Response<pb::VmReply>, Status> {
        let caller = self
            .auth
            .check(
                path,
                request.metadata(),
                request.get_ref(),
                action,
                &request.get_ref().name,
            )
            .await?;
        let r = request.into_inner();
        check_name(&r.name)?;
        let (record, replayed) = self
            .store
            .update(&r.name, |current| {
                let Some(current) = current else {
                    return Err(Status::not_found(format!("no VM {:?}", r.name)));
                };
                if current.has_applied(&r.request_id) {
                    return Ok(Change::Keep((current.clone(), true)));
                }
                if current.desired == Desired::Deleted {
                    return Err(Status::failed_precondition(format!(
                        "VM {:?} is being deleted",
                        r.name
                    )));
                }
                let mut next = current.clone();
                next.set_desired(desired, &r.request_id);
                Ok(Change::Write(next.clone(), (next, false)))
            })
            .await?;
        tracing::info!(vm = %r.name, desired = desired.as_str(), caller = %caller.arn, replayed, "desired state set");
        Ok(reply(&record, replayed))
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::VmEvent, Status>> + Send>>;

#[tonic::async_trait]
impl pb::vms_server::Vms for VmsApi {
    async fn create_vm(
        &self,
        request: Request<pb::CreateVmRequest>,
    ) -> Result<Response<pb::VmReply>, Status> {
        let caller = self
            .auth
            .check(
                paths::CREATE_VM,
                request.metadata(),
                request.get_ref(),
                "CreateVm",
                &request.get_ref().name,
            )
            .await?;
        let r = request.into_inner();
        check_name(&r.name)?;
        if r.command.is_empty() || r.command[0].is_empty() {
            return Err(Status::invalid_argument("a VM needs a command"));
        }
        let spec = VmSpec {
            command: r.command.clone(),
            env: r
                .env
                .iter()
                .map(|e| (e.name.clone(), e.value.clone()))
                .collect(),
        };
        let desired = if r.start {
            Desired::Running
        } else {
            Desired::Stopped
        };
        let (record, replayed) = self
            .store
            .update(&r.name, |current| match current {
                Some(existing) if existing.has_applied(&r.request_id) => {
                    Ok(Change::Keep((existing.clone(), true)))
                }
                Some(_) => Err(Status::already_exists(format!("VM {:?} exists", r.name))),
                None => {
                    let record = VmRecord::new(&r.name, spec.clone(), desired, &r.request_id);
                    Ok(Change::Write(record.clone(), (record, false)))
                }
            })
            .await?;
        tracing::info!(vm = %r.name, caller = %caller.arn, replayed, "VM created");
        Ok(reply(&record, replayed))
    }

    async fn start_vm(
        &self,
        request: Request<pb::VmRequest>,
    ) -> Result<Response<pb::VmReply>, Status> {
        self.set_desired(request, paths::START_VM, "StartVm", Desired::Running)
            .await
    }

    async fn stop_vm(
        &self,
        request: Request<pb::VmRequest>,
    ) -> Result<Response<pb::VmReply>, Status> {
        self.set_desired(request, paths::STOP_VM, "StopVm", Desired::Stopped)
            .await
    }

    async fn delete_vm(
        &self,
        request: Request<pb::VmRequest>,
    ) -> Result<Response<pb::VmReply>, Status> {
        // A repeat of the delete that was applied is a replay even after the record is gone.
        self.set_desired(request, paths::DELETE_VM, "DeleteVm", Desired::Deleted)
            .await
    }

    async fn get_vm(
        &self,
        request: Request<pb::GetVmRequest>,
    ) -> Result<Response<pb::VmReply>, Status> {
        self.auth
            .check(
                paths::GET_VM,
                request.metadata(),
                request.get_ref(),
                "GetVm",
                &request.get_ref().name,
            )
            .await?;
        let name = request.into_inner().name;
        check_name(&name)?;
        match self.store.get(&name).await? {
            Some(record) => Ok(reply(&record, false)),
            None => Err(Status::not_found(format!("no VM {name:?}"))),
        }
    }

    async fn list_vms(
        &self,
        request: Request<pb::ListVmsRequest>,
    ) -> Result<Response<pb::ListVmsReply>, Status> {
        self.auth
            .check(
                paths::LIST_VMS,
                request.metadata(),
                request.get_ref(),
                "ListVms",
                "*",
            )
            .await?;
        let vms = self
            .store
            .list()
            .await?
            .iter()
            .map(VmRecord::to_pb)
            .collect();
        Ok(Response::new(pb::ListVmsReply { vms }))
    }

    type WatchVmsStream = EventStream;

    async fn watch_vms(
        &self,
        request: Request<pb::WatchVmsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        self.auth
            .check(
                paths::WATCH_VMS,
                request.metadata(),
                request.get_ref(),
                "WatchVms",
                "*",
            )
            .await?;
        let stream = BroadcastStream::new(self.events.subscribe()).map(|event| {
            // A watcher too slow for the event rate learns it lost events, rather than
            // silently missing them.
            event.map_err(|e| {
                Status::data_loss(format!("watch fell behind: {e}; list the VMs again"))
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
