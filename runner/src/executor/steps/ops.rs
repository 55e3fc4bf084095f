//! Client operations (`put`, `get`, `delete`): one call through the step's client, judged
//! against the step's `expect`, the record kept for later steps when the step is named.

use std::collections::BTreeMap;
use std::time::Duration;

use super::super::judge::{ReadExpectation, judge_op, op_numbers};
use super::{Handled, Runner};
use crate::history::OpKind;
use crate::history::OpRecord;
use crate::scenario::{AuthorizeStep, DeleteStep, Expect, GetStep, PutStep, VmOp, VmStep};
use crate::verdict::Verdict;

impl Runner<'_> {
    pub(super) async fn put(&mut self, s: &PutStep, start_ms: f64, bound: Duration) -> Handled {
        let driver = self
            .client_for_op(s.service, s.node.as_ref(), s.client_retry.as_ref(), &s.name)
            .await?;
        let record = driver.put(&s.key, &s.value).await;
        let read = ReadExpectation::default();
        Ok(self.op_result(s.name.as_deref(), start_ms, record, &s.expect, bound, read))
    }

    pub(super) async fn get(&mut self, s: &GetStep, start_ms: f64, bound: Duration) -> Handled {
        let driver = self
            .client_for_op(s.service, s.node.as_ref(), s.client_retry.as_ref(), &s.name)
            .await?;
        let record = driver.get(&s.key).await;
        let read = ReadExpectation {
            value: s.value.as_deref(),
            absent: s.absent,
        };
        Ok(self.op_result(s.name.as_deref(), start_ms, record, &s.expect, bound, read))
    }

    pub(super) async fn authorize(
        &mut self,
        s: &AuthorizeStep,
        start_ms: f64,
        bound: Duration,
    ) -> Handled {
        // A decision is IAM's whatever else the scenario starts.
        let service = Some(s.service.unwrap_or(crate::matrix::Service::Iam));
        let driver = self
            .client_for_op(service, None, s.client_retry.as_ref(), &s.name)
            .await?;
        let user = s
            .user
            .as_deref()
            .unwrap_or(crate::supervisor::IAM_ADMIN_USER);
        let record = driver.authorize(user, &s.action, &s.resource).await;
        let read = ReadExpectation {
            value: s.value.as_deref(),
            absent: false,
        };
        Ok(self.op_result(s.name.as_deref(), start_ms, record, &s.expect, bound, read))
    }

    pub(super) async fn vm(&mut self, s: &VmStep, start_ms: f64, bound: Duration) -> Handled {
        let service = Some(crate::matrix::Service::PlasmaVmc);
        let driver = self
            .client_for_op(service, None, s.client_retry.as_ref(), &s.name)
            .await?;
        let op = match s.op {
            VmOp::Create => OpKind::CreateVm,
            VmOp::Start => OpKind::StartVm,
            VmOp::Stop => OpKind::StopVm,
            VmOp::Delete => OpKind::DeleteVm,
        };
        let record = driver.vm(op, &s.vm, s.request_id.as_deref()).await;
        let read = ReadExpectation {
            value: s.replayed.map(|replayed| {
                if replayed {
                    crate::driver::VM_REPLAYED
                } else {
                    crate::driver::VM_APPLIED
                }
            }),
            absent: false,
        };
        Ok(self.op_result(s.name.as_deref(), start_ms, record, &s.expect, bound, read))
    }

    pub(super) async fn delete(
        &mut self,
        s: &DeleteStep,
        start_ms: f64,
        bound: Duration,
    ) -> Handled {
        let driver = self.client_for(s.service, s.node.as_ref()).await?;
        let record = driver.delete(&s.key).await;
        let read = ReadExpectation::default();
        Ok(self.op_result(s.name.as_deref(), start_ms, record, &s.expect, bound, read))
    }

    /// Judges an operation's record and remembers it under the step's name.
    fn op_result(
        &mut self,
        name: Option<&str>,
        start_ms: f64,
        record: OpRecord,
        expect: &Expect,
        bound: Duration,
        read: ReadExpectation<'_>,
    ) -> Verdict {
        let verdict = judge_op(&record, expect, bound.as_millis() as u64, read);
        // Only named operations contribute numbers: they are the ones a reader looks for.
        let numbers = match name {
            Some(n) => op_numbers(n, &record),
            None => BTreeMap::new(),
        };
        self.remember(name, start_ms, Some(record), None);
        verdict.with_numbers(numbers)
    }
}
