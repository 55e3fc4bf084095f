# Test script of the multi-VM partition test (nix/tests/partition.nix), run by the NixOS test
# driver. partition.nix prepends PROTO_DIR, CHAINFIRE_MEMBERS, FLAREDB_MEMBERS, IAM_MEMBERS (the
# IAM instance on each ChainFire VM), IAM_REGION, the bootstrap administrator's
# IAM_ADMIN_KEY_ID and IAM_ADMIN_SECRET_FILE, and PLASMAVMC_INSTANCES (machine, instance id,
# address, port of the PlasmaVMC instances on flaredb2 and flaredb3); the machine objects
# (chainfire1 ... flaredb3), start_all and subtest come from the driver.
#
# ChainFire and FlareDB each go through the partition scenario; IAM is checked along ChainFire's
# phases (IAM keeps its state in ChainFire): serving, then with ChainFire cut in two (the
# majority's instances answer, the cut-off node's fails closed), without a ChainFire quorum
# (every running instance fails closed: 503 ServiceUnavailable, never an allow) and healed.
#
# PlasmaVMC last, with everything healed. No CLI signs PlasmaVMC calls, so no VM is created;
# what is checked is what can be observed: the units run and serve (an unsigned ListVms is
# refused Unauthenticated by IAM, never served), "plasmavmc ready" and "elected reconciler" in
# their journals, exactly one instance elected (and holding the reconciler key in ChainFire),
# and, with the elected instance's VM cut off from every other VM, the other one elected.
#
# Every client operation is one call with its own deadline (grpcurl -max-time; `iam call` under
# timeout(1)), so nothing can hang; every verdict is an assertion on what the servers answered.

import base64
import html
import json
import re
import shlex
import time
from typing import Any, Callable

# Deadline of one gRPC call, in seconds (grpcurl -max-time).
CALL_DEADLINE_S = 10
# How long a majority may take to (re-)elect a leader and serve a write again. Generous: VMs on
# a loaded CI machine are slow, and a slow machine must not fail the test.
RECOVERY_BOUND_S = 180
# A write without a quorum must fail (not hang) within this bound: the call deadline plus
# margin for the VM's own slowness.
FAILURE_BOUND_S = 60
# gRPC codes a write without a quorum may fail with: the server's "no quorum" (UNAVAILABLE),
# "not leader" with no leader known (FAILED_PRECONDITION), or the client deadline.
NO_QUORUM_CODES = ("Unavailable", "FailedPrecondition", "DeadlineExceeded")

# IAM (iam/crates/iam-server): the unit; the bootstrap administrator is user "admin" of the
# account in every ARN (iam's --account-id, default 000000000000); the user this test creates.
IAM_UNIT = "iam.service"
IAM_ACCOUNT = "000000000000"
IAM_ADMIN_ARN = f"arn:aws:iam::{IAM_ACCOUNT}:user/admin"
IAM_TEST_USER = "vm-test-user"
IAM_TEST_USER_ARN = f"arn:aws:iam::{IAM_ACCOUNT}:user/{IAM_TEST_USER}"
# Deadline of one `iam call` (timeout(1)), its own retries of 5xx answers included: 4 attempts
# at most, 0.5 s, 1 s and 2 s apart, each bounded by the server (which answers from its copy of
# the directory, or after at most --chainfire-timeout-ms, 5 s, for a write to ChainFire).
IAM_CALL_DEADLINE_S = 60
# What an instance answers while ChainFire has not confirmed its copy of the directory for
# --trust-for-ms (default 5 s): 503 with this code ("IAM unavailable: ..."), never an allow.
IAM_UNAVAILABLE_CODE = "ServiceUnavailable"
# How many more times a closed instance is asked, each time to refuse again.
IAM_CLOSED_ASKS = 3

# PlasmaVMC (plasmavmc/crates/plasmavmc-server): the unit; the ChainFire key the elected
# reconciler creates under its lease, holding its instance id (election.rs LEADER_KEY); the
# lines it logs once its port serves and when it wins the election.
PLASMAVMC_UNIT = "plasmavmc.service"
PLASMAVMC_LEADER_KEY = "/plasmavmc/reconciler"
PLASMAVMC_READY = "plasmavmc ready"
PLASMAVMC_ELECTED = "elected reconciler"
# How long the election must stay as it is to count as settled: five lease TTLs (3 s, the
# module's default), so an instance that campaigns while the other holds the key has had many
# chances to be wrongly elected.
PLASMAVMC_SETTLE_S = 15


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unb64(text: str) -> str:
    return base64.b64decode(text).decode()


class Member:
    """One node of a service: its VM, Raft id, address and client port."""

    def __init__(self, machine: Any, node_id: int, ip: str, port: int) -> None:
        self.machine = machine
        self.node_id = node_id
        self.ip = ip
        self.port = port
        self.endpoint = f"{ip}:{port}"

    @property
    def name(self) -> str:
        return str(self.machine.name)


class CallResult:
    def __init__(self, ok: bool, output: str, elapsed: float) -> None:
        self.ok = ok
        self.output = output
        self.elapsed = elapsed

    def json(self) -> dict:
        return json.loads(self.output) if self.output.strip() else {}

    def code(self) -> str:
        """The gRPC status code grpcurl printed for a failed call ("" if none)."""
        for line in self.output.splitlines():
            line = line.strip()
            if line.startswith("Code:"):
                return line.split(":", 1)[1].strip()
        return ""


class Service:
    """ChainFire or FlareDB as seen by grpcurl from a client VM."""

    def __init__(
        self,
        name: str,
        unit: str,
        proto: str,
        grpc_service: str,
        members: list[Member],
        client: Any,
        value_of: Callable[[dict], str | None],
    ) -> None:
        self.name = name
        self.unit = unit
        self.proto = proto
        self.grpc_service = grpc_service
        self.members = members
        self.client = client
        # Reads the value out of a Get response (the two APIs shape it differently).
        self.value_of = value_of

    def call(self, member: Member, method: str, request: dict) -> CallResult:
        command = " ".join(
            [
                "grpcurl -plaintext",
                f"-max-time {CALL_DEADLINE_S}",
                f"-import-path {PROTO_DIR} -proto {self.proto}",
                "-d",
                shlex.quote(json.dumps(request)),
                member.endpoint,
                f"{self.grpc_service}/{method}",
                "2>&1",
            ]
        )
        started = time.monotonic()
        status, output = self.client.execute(command, timeout=CALL_DEADLINE_S + 30)
        return CallResult(status == 0, output, time.monotonic() - started)

    def status(self, member: Member) -> dict:
        result = self.call(member, "Status", {})
        return result.json() if result.ok else {}

    def role(self, member: Member) -> str:
        return str(self.status(member).get("role", ""))

    def put_request(self, key: str, value: str, request_id: str) -> dict:
        return {"key": b64(key), "value": b64(value), "requestId": request_id}

    def put_until_acked(self, key: str, value: str, order: list[Member], bound_s: int) -> Member:
        """Puts once (one request id, reused on every attempt) until a node acknowledges it."""
        request = self.put_request(key, value, f"vm-test-{key}")
        deadline = time.monotonic() + bound_s
        errors: list[str] = []
        while time.monotonic() < deadline:
            for member in order:
                result = self.call(member, "Put", request)
                if result.ok:
                    return member
                errors.append(f"{member.name}: {result.code() or result.output.strip()[:200]}")
            time.sleep(1)
        raise AssertionError(f"{self.name}: put {key!r} not acknowledged within {bound_s}s; last errors: {errors[-6:]}")

    def put_must_fail(self, key: str, value: str, order: list[Member]) -> None:
        """Every reachable node must refuse the write with a gRPC error, within the bound."""
        request = self.put_request(key, value, f"vm-test-{key}")
        for member in order:
            result = self.call(member, "Put", request)
            assert not result.ok, f"{self.name}: put {key!r} on {member.name} succeeded without a quorum: {result.output}"
            code = result.code()
            assert code in NO_QUORUM_CODES, (
                f"{self.name}: put {key!r} on {member.name} failed with an unexpected error (code {code!r}): {result.output}"
            )
            assert result.elapsed <= FAILURE_BOUND_S, (
                f"{self.name}: put {key!r} on {member.name} took {result.elapsed:.1f}s to fail (bound {FAILURE_BOUND_S}s)"
            )
            log.info(f"{self.name}: put {key!r} on {member.name} refused after {result.elapsed:.1f}s: {code}: {result.output.strip()[:300]}")

    def get_linearizable(self, key: str, order: list[Member], bound_s: int) -> str | None:
        """Reads through whichever node currently serves linearizable reads (the leader)."""
        deadline = time.monotonic() + bound_s
        last = ""
        while time.monotonic() < deadline:
            for member in order:
                result = self.call(member, "Get", {"key": b64(key)})
                if result.ok:
                    return self.value_of(result.json())
                last = f"{member.name}: {result.output.strip()[:200]}"
            time.sleep(1)
        raise AssertionError(f"{self.name}: get {key!r} not served within {bound_s}s; last error: {last}")

    def wait_for_leader(self, candidates: list[Member], bound_s: int) -> Member:
        deadline = time.monotonic() + bound_s
        while time.monotonic() < deadline:
            for member in candidates:
                if self.role(member) == "leader":
                    return member
            time.sleep(1)
        raise AssertionError(f"{self.name}: no leader among {[m.name for m in candidates]} within {bound_s}s")

    def wait_for_convergence(self, bound_s: int) -> str:
        """Waits until every member reports the same state digest at the same applied index."""
        deadline = time.monotonic() + bound_s
        seen: dict[str, tuple[str, str]] = {}
        while time.monotonic() < deadline:
            seen = {}
            for member in self.members:
                status = self.status(member)
                seen[member.name] = (str(status.get("digest", "")), str(status.get("appliedIndex", "")))
            indexes = {index for (_, index) in seen.values()}
            digests = {digest for (digest, _) in seen.values()}
            if len(indexes) == 1 and "" not in indexes and "" not in digests:
                # Same log prefix applied everywhere: the states must be identical now.
                assert len(digests) == 1, f"{self.name}: replicas diverged at the same applied index: {seen}"
                return digests.pop()
            time.sleep(2)
        raise AssertionError(f"{self.name}: replicas did not converge within {bound_s}s: {seen}")


class AccessKey:
    """An IAM access key as the client VM holds it: the id, and a root-only file with the secret."""

    def __init__(self, access_key_id: str, secret_file: str) -> None:
        self.access_key_id = access_key_id
        self.secret_file = secret_file


class IamResult:
    """One `iam call`: its exit status (0: a 2xx answer; 1: an AWS error answer, printed as
    `CODE: message` on stderr, or no answer at all; 2: bad usage; 124: timeout(1) ended it),
    stdout (the response XML) and stderr."""

    def __init__(self, status: int, stdout: str, stderr: str, elapsed: float) -> None:
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
        self.elapsed = elapsed

    @property
    def ok(self) -> bool:
        return self.status == 0

    def field(self, tag: str) -> str | None:
        """The text of the first <tag> in the response XML (unescaped), None if there is none."""
        match = re.search(rf"<{tag}>([^<]*)</{tag}>", self.stdout)
        return html.unescape(match.group(1)) if match else None

    def code(self) -> str:
        """The AWS error code `iam call` printed: the first stderr line of the form `CODE:
        message` ("" if none; its own lines, such as retries, start `iam call:`)."""
        for line in self.stderr.splitlines():
            match = re.match(r"([A-Z][A-Za-z0-9.]*): ", line)
            if match:
                return match.group(1)
        return ""

    def describe(self) -> str:
        if self.ok:
            return f"exit 0 after {self.elapsed:.1f}s: {self.stdout.strip()[:300]}"
        return f"exit {self.status} after {self.elapsed:.1f}s: {self.stderr.strip()[-300:]}"


class Iam:
    """The IAM instances (one on each ChainFire VM) as seen by `iam call` from a client VM."""

    def __init__(self, members: list[Member], client: Any, admin: AccessKey) -> None:
        self.members = members
        self.client = client
        self.admin = admin
        # The access key this test creates for IAM_TEST_USER (set by create_test_user).
        self.test_key: AccessKey | None = None

    def on(self, node: Member) -> Member:
        """The instance on the VM of `node` (a ChainFire member)."""
        for member in self.members:
            if member.name == node.name:
                return member
        raise AssertionError(f"iam: no instance on {node.name}")

    def keys(self) -> list[AccessKey]:
        return [self.admin] + ([self.test_key] if self.test_key else [])

    def call(self, member: Member, key: AccessKey, action: str, params: dict[str, str] | None = None) -> IamResult:
        """One signed request to one instance (no other endpoint to move on to)."""
        stderr_file = "/tmp/iam-call.stderr"
        command = " ".join(
            [
                f"timeout --kill-after=5 {IAM_CALL_DEADLINE_S}",
                "iam call",
                f"--endpoints {member.endpoint}",
                f"--access-key-id {shlex.quote(key.access_key_id)}",
                f"--secret-access-key-file {shlex.quote(key.secret_file)}",
                f"--region {shlex.quote(IAM_REGION)}",
                shlex.quote(action),
                *[shlex.quote(f"{name}={value}") for name, value in (params or {}).items()],
                f"2>{stderr_file}",
            ]
        )
        started = time.monotonic()
        status, stdout = self.client.execute(command, timeout=IAM_CALL_DEADLINE_S + 30)
        elapsed = time.monotonic() - started
        _, stderr = self.client.execute(f"cat {stderr_file}; rm -f {stderr_file}", timeout=30)
        return IamResult(status, stdout, stderr, elapsed)

    def caller_identity(self, member: Member, key: AccessKey) -> IamResult:
        return self.call(member, key, "GetCallerIdentity")

    def call_until_ok(
        self,
        member: Member,
        key: AccessKey,
        action: str,
        params: dict[str, str],
        bound_s: int,
        done_codes: tuple[str, ...] = (),
    ) -> IamResult:
        """Calls until the instance answers 2xx (or an error in `done_codes`), within the bound."""
        deadline = time.monotonic() + bound_s
        errors: list[str] = []
        while time.monotonic() < deadline:
            result = self.call(member, key, action, params)
            if result.ok or result.code() in done_codes:
                return result
            errors.append(f"{member.name}: {result.describe()}")
            time.sleep(1)
        raise AssertionError(f"iam: {action} {params} not answered by {member.name} within {bound_s}s; last errors: {errors[-4:]}")

    def wait_until_identified(self, member: Member, key: AccessKey, arn: str, bound_s: int) -> None:
        """The instance answers GetCallerIdentity for `key` with `arn` within the bound; an answer
        with another ARN fails at once."""
        result = self.call_until_ok(member, key, "GetCallerIdentity", {}, bound_s)
        answered = result.field("Arn")
        assert answered == arn, f"iam: {member.name} identified {key.access_key_id} as {answered!r}, not {arn!r}: {result.stdout}"
        log.info(f"iam: {member.name} identified {key.access_key_id} as {arn} ({result.elapsed:.1f}s)")

    def all_answer(self, instances: list[Member], bound_s: int) -> None:
        """Every instance named identifies every key this test has with its user's ARN."""
        for member in instances:
            self.wait_until_identified(member, self.admin, IAM_ADMIN_ARN, bound_s)
            if self.test_key:
                self.wait_until_identified(member, self.test_key, IAM_TEST_USER_ARN, bound_s)

    def assert_refused(self, member: Member, result: IamResult, what: str) -> None:
        assert not result.ok, f"iam: {member.name} allowed {what} while it must fail closed: {result.stdout}"
        assert result.code() == IAM_UNAVAILABLE_CODE, (
            f"iam: {member.name} refused {what}, but not with {IAM_UNAVAILABLE_CODE} (exit {result.status}, code {result.code()!r}): {result.stderr.strip()[-500:]}"
        )
        assert result.elapsed <= FAILURE_BOUND_S, (
            f"iam: {member.name} took {result.elapsed:.1f}s to refuse {what} (bound {FAILURE_BOUND_S}s)"
        )

    def fails_closed(self, member: Member, bound_s: int) -> None:
        """Within the bound the instance stops answering (it may answer from its copy of the
        directory until --trust-for-ms after ChainFire last confirmed it); from its first
        refusal on, every key is refused, ServiceUnavailable, never allowed."""
        deadline = time.monotonic() + bound_s
        started = time.monotonic()
        allowed = 0
        while True:
            result = self.caller_identity(member, self.admin)
            if not result.ok:
                break
            allowed += 1
            assert time.monotonic() < deadline, (
                f"iam: {member.name} still allows after {bound_s}s ({allowed} answers): {result.stdout.strip()[:300]}"
            )
            time.sleep(1)
        self.assert_refused(member, result, "GetCallerIdentity")
        log.info(
            f"iam: {member.name} closed {time.monotonic() - started:.1f}s after the first ask ({allowed} answers before): {result.stderr.strip()[-300:]}"
        )
        for _ in range(IAM_CLOSED_ASKS):
            for key in self.keys():
                self.assert_refused(
                    member, self.caller_identity(member, key), f"GetCallerIdentity for {key.access_key_id} after closing"
                )

    def create_test_user(self, member: Member, bound_s: int) -> AccessKey:
        """Creates IAM_TEST_USER and an access key through one instance (the administrator's
        policy may reach the instance's copy after its key: refusals are retried within the
        bound). Its secret goes to a root-only file on the client."""
        self.call_until_ok(member, self.admin, "CreateUser", {"UserName": IAM_TEST_USER}, bound_s, ("EntityAlreadyExists",))
        result = self.call_until_ok(member, self.admin, "CreateAccessKey", {"UserName": IAM_TEST_USER}, bound_s)
        access_key_id, secret = result.field("AccessKeyId"), result.field("SecretAccessKey")
        assert result.field("UserName") == IAM_TEST_USER and access_key_id and secret, (
            f"iam: CreateAccessKey on {member.name} answered without the key of {IAM_TEST_USER}: {result.stdout}"
        )
        secret_file = f"/root/iam-{access_key_id}.secret"
        self.client.succeed(f"umask 077; printf %s {shlex.quote(secret)} > {secret_file}")
        log.info(f"iam: {IAM_TEST_USER} and access key {access_key_id} created through {member.name}")
        return AccessKey(access_key_id, secret_file)


class PhaseChecks:
    """Checks of a service that depends on the one under test, run after each phase of that
    service's scenario (this base class checks nothing)."""

    def serving(self) -> None:
        pass

    def partitioned(self, isolated: Member, majority: list[Member]) -> None:
        pass

    def no_quorum(self, isolated: Member, survivor: Member) -> None:
        pass

    def healed(self, restarted: Member) -> None:
        pass


class IamChecks(PhaseChecks):
    """IAM along ChainFire's scenario: the members passed in are ChainFire's; the instance on
    the same VM is checked."""

    def __init__(self, iam: Iam) -> None:
        self.iam = iam

    def serving(self) -> None:
        iam = self.iam
        with subtest("iam: every instance answers GetCallerIdentity; a user created at one is known at the others"):
            for member in iam.members:
                member.machine.wait_for_unit(IAM_UNIT)
                member.machine.wait_for_open_port(member.port, addr=member.ip)
            iam.all_answer(iam.members, RECOVERY_BOUND_S)
            creator, others = iam.members[0], iam.members[1:]
            iam.test_key = iam.create_test_user(creator, RECOVERY_BOUND_S)
            # The state is ChainFire's: the new key is known at the instances it was not created at.
            for member in others:
                iam.wait_until_identified(member, iam.test_key, IAM_TEST_USER_ARN, RECOVERY_BOUND_S)

    def partitioned(self, isolated: Member, majority: list[Member]) -> None:
        iam = self.iam
        with subtest(f"iam: ChainFire cut in two: the majority's instances answer, {isolated.name}'s fails closed"):
            iam.all_answer([iam.on(m) for m in majority], RECOVERY_BOUND_S)
            iam.fails_closed(iam.on(isolated), FAILURE_BOUND_S)

    def no_quorum(self, isolated: Member, survivor: Member) -> None:
        iam = self.iam
        with subtest(f"iam: ChainFire without quorum: every running instance fails closed within {FAILURE_BOUND_S}s"):
            for member in [survivor, isolated]:
                iam.fails_closed(iam.on(member), FAILURE_BOUND_S)

    def healed(self, restarted: Member) -> None:
        iam = self.iam
        with subtest(f"iam: healed: every instance answers again within {RECOVERY_BOUND_S}s"):
            restarted.machine.wait_for_unit(IAM_UNIT)
            iam.all_answer(iam.members, RECOVERY_BOUND_S)


def chainfire_value(get_response: dict) -> str | None:
    """chainfire.v1.GetResponse: the value sits in `kv`, which is absent for a missing key."""
    kv = get_response.get("kv")
    return unb64(kv["value"]) if kv and "value" in kv else None


def flaredb_value(get_response: dict) -> str | None:
    """flaredb.v1.GetResponse: `value` is absent for a missing key."""
    return unb64(get_response["value"]) if "value" in get_response else None


def partition(isolated: Member, peers: list[Member]) -> None:
    for peer in peers:
        isolated.machine.succeed(
            f"iptables -I INPUT 1 -s {peer.ip} -j DROP",
            f"iptables -I OUTPUT 1 -d {peer.ip} -j DROP",
        )


def heal(isolated: Member, peers: list[Member]) -> None:
    for peer in peers:
        isolated.machine.succeed(
            f"iptables -D INPUT -s {peer.ip} -j DROP",
            f"iptables -D OUTPUT -d {peer.ip} -j DROP",
        )


def members(spec: list[tuple[Any, int, str, int]]) -> list[Member]:
    return [Member(machine, node_id, ip, port) for (machine, node_id, ip, port) in spec]


def run_partition_scenario(service: Service, dependents: tuple[PhaseChecks, ...] = ()) -> None:
    """The design note's S3 for one service, with the current leader as the cut-off node; the
    checks of the services depending on it after each phase."""
    acked: dict[str, str] = {}

    with subtest(f"{service.name}: all nodes serving, a leader elected"):
        for member in service.members:
            member.machine.wait_for_unit(service.unit)
            member.machine.wait_for_open_port(member.port, addr=member.ip)
        leader = service.wait_for_leader(service.members, RECOVERY_BOUND_S)
        for i in range(5):
            key, value = f"{service.name}/before/{i}", f"v{i}"
            service.put_until_acked(key, value, [leader] + service.members, RECOVERY_BOUND_S)
            acked[key] = value
    for checks in dependents:
        checks.serving()

    isolated = leader
    others = [m for m in service.members if m is not isolated]
    victim, survivor = others[0], others[1]

    with subtest(f"{service.name}: {isolated.name} cut off by iptables, writes succeed with 2 of 3"):
        partition(isolated, others)
        for i in range(5):
            key, value = f"{service.name}/partitioned/{i}", f"p{i}"
            service.put_until_acked(key, value, [survivor, victim, isolated], RECOVERY_BOUND_S)
            acked[key] = value
        new_leader = service.wait_for_leader(others, RECOVERY_BOUND_S)
        log.info(f"{service.name}: majority leader after the partition: {new_leader.name}")
    for checks in dependents:
        checks.partitioned(isolated, others)

    with subtest(f"{service.name}: {victim.name} powered off, writes fail within {FAILURE_BOUND_S}s"):
        victim.machine.crash()
        for attempt in range(3):
            # Outcome unknown: never counted as acknowledged, never required to be absent.
            service.put_must_fail(f"{service.name}/no-quorum/{attempt}", "x", [survivor, isolated])
    for checks in dependents:
        checks.no_quorum(isolated, survivor)

    with subtest(f"{service.name}: healed and restarted, writes resume, no acknowledged write lost"):
        heal(isolated, others)
        victim.machine.start()
        victim.machine.wait_for_unit(service.unit)
        for i in range(5):
            key, value = f"{service.name}/after/{i}", f"a{i}"
            service.put_until_acked(key, value, service.members, RECOVERY_BOUND_S)
            acked[key] = value
        for key, value in acked.items():
            read = service.get_linearizable(key, service.members, RECOVERY_BOUND_S)
            assert read == value, f"{service.name}: acknowledged write {key!r}={value!r} reads back as {read!r}"
        digest = service.wait_for_convergence(RECOVERY_BOUND_S)
        log.info(f"{service.name}: {len(acked)} acknowledged writes read back; replicas converged on digest {digest}")
    for checks in dependents:
        checks.healed(victim)


# The client of each service runs on a VM of the other service, never on a node under test.
chainfire = Service(
    "chainfire",
    "chainfire.service",
    "chainfire.proto",
    "chainfire.v1.KV",
    members(CHAINFIRE_MEMBERS),
    client=flaredb1,
    value_of=chainfire_value,
)
flaredb = Service(
    "flaredb",
    "flaredb.service",
    "flaredb.proto",
    "flaredb.v1.FlareDb",
    members(FLAREDB_MEMBERS),
    client=chainfire1,
    value_of=flaredb_value,
)
# IAM's client runs on a FlareDB VM too (never on a ChainFire VM, which may be the cut-off one).
iam = Iam(members(IAM_MEMBERS), client=flaredb1, admin=AccessKey(IAM_ADMIN_KEY_ID, IAM_ADMIN_SECRET_FILE))


class PlasmaVmcInstance:
    """One PlasmaVMC instance: its VM, instance id and API address, and the second of the VM's
    clock from which its journal counts (set when the test starts it)."""

    def __init__(self, machine: Any, instance_id: str, ip: str, port: int, index: int) -> None:
        self.instance_id = instance_id
        self.member = Member(machine, index, ip, port)
        self.since: int | None = None

    @property
    def name(self) -> str:
        return self.member.name

    @property
    def machine(self) -> Any:
        return self.member.machine

    def journal(self) -> str:
        """The unit's journal since `since` (the messages only)."""
        assert self.since is not None, f"plasmavmc: {self.name} was not started by the test"
        return str(self.machine.succeed(f"journalctl -u {PLASMAVMC_UNIT} --since @{self.since} --no-pager -o cat"))

    def logged(self, text: str) -> int:
        """How many journal lines since `since` hold `text`."""
        return sum(1 for line in self.journal().splitlines() if text in line)


class PlasmaVmc:
    """The PlasmaVMC instances, their API through grpcurl from a client VM (unsigned: no CLI
    signs PlasmaVMC calls) and the reconciler key through ChainFire's client."""

    def __init__(self, instances: list[PlasmaVmcInstance], client: Any, chainfire: Service) -> None:
        self.instances = instances
        self.chainfire = chainfire
        self.api = Service(
            "plasmavmc",
            PLASMAVMC_UNIT,
            "plasmavmc.proto",
            "plasmavmc.v1.Vms",
            [instance.member for instance in instances],
            client=client,
            value_of=lambda _: None,
        )

    def leader_key(self) -> str | None:
        """The instance id in the reconciler key (a linearizable ChainFire read; None while no
        instance holds it)."""
        return self.chainfire.get_linearizable(PLASMAVMC_LEADER_KEY, self.chainfire.members, RECOVERY_BOUND_S)

    def refuses_unsigned(self, instance: PlasmaVmcInstance, bound_s: int) -> None:
        """An unsigned ListVms is answered UNAUTHENTICATED (IAM reached, no signature) within
        the bound; other refusals (UNAVAILABLE while IAM cannot decide yet) are asked again; an
        answer that serves the call fails at once."""
        deadline = time.monotonic() + bound_s
        last = ""
        while time.monotonic() < deadline:
            result = self.api.call(instance.member, "ListVms", {})
            assert not result.ok, f"plasmavmc: {instance.name} served an unsigned ListVms: {result.output}"
            if result.code() == "Unauthenticated":
                log.info(f"plasmavmc: {instance.name} refused an unsigned ListVms: {result.output.strip()[:300]}")
                return
            last = f"code {result.code()!r}: {result.output.strip()[:300]}"
            time.sleep(1)
        raise AssertionError(
            f"plasmavmc: {instance.name}: no UNAUTHENTICATED for an unsigned ListVms within {bound_s}s; last: {last}"
        )

    def restart(self) -> None:
        """Stops both instances, waits until the reconciler key has expired with its holder's
        lease, then starts both; their journals count from then on."""
        for instance in self.instances:
            instance.machine.succeed(f"systemctl stop {PLASMAVMC_UNIT}")
        deadline = time.monotonic() + RECOVERY_BOUND_S
        holder = self.leader_key()
        while holder is not None:
            assert time.monotonic() < deadline, (
                f"plasmavmc: the reconciler key still names {holder!r} {RECOVERY_BOUND_S}s after every instance stopped"
            )
            time.sleep(1)
            holder = self.leader_key()
        for instance in self.instances:
            instance.since = int(instance.machine.succeed("date +%s").strip())
        for instance in self.instances:
            instance.machine.succeed(f"systemctl start {PLASMAVMC_UNIT}")

    def wait_for_elected(self, candidates: list[PlasmaVmcInstance], bound_s: int) -> PlasmaVmcInstance:
        """The one of `candidates` whose journal says it was elected, within the bound (two at
        once fail); the reconciler key must then name it."""
        deadline = time.monotonic() + bound_s
        while time.monotonic() < deadline:
            elected = [instance for instance in candidates if instance.logged(PLASMAVMC_ELECTED) > 0]
            if elected:
                assert len(elected) == 1, f"plasmavmc: more than one instance elected: {[i.name for i in elected]}"
                winner = elected[0]
                holder = self.leader_key()
                assert holder == winner.instance_id, (
                    f"plasmavmc: {winner.name} logged {PLASMAVMC_ELECTED!r}, but the reconciler key names {holder!r}"
                )
                log.info(f"plasmavmc: {winner.instance_id} elected reconciler")
                return winner
            time.sleep(1)
        raise AssertionError(
            f"plasmavmc: none of {[i.name for i in candidates]} logged {PLASMAVMC_ELECTED!r} within {bound_s}s"
        )

    def stays_elected(self, leader: PlasmaVmcInstance, elections: dict[str, int]) -> None:
        """For PLASMAVMC_SETTLE_S: the key names `leader` and each instance has logged exactly
        elections[instance id] elections. Every journal read must show the instance's ready
        line, so an unreadable journal cannot pass for "not elected"."""
        deadline = time.monotonic() + PLASMAVMC_SETTLE_S
        while True:
            for instance in self.instances:
                journal = instance.journal()
                assert PLASMAVMC_READY in journal, (
                    f"plasmavmc: {instance.name}'s journal since the restart lacks {PLASMAVMC_READY!r}: {journal[-500:]}"
                )
                count = sum(1 for line in journal.splitlines() if PLASMAVMC_ELECTED in line)
                wanted = elections[instance.instance_id]
                assert count == wanted, (
                    f"plasmavmc: {instance.name} logged {PLASMAVMC_ELECTED!r} {count} time(s), not {wanted}, while {leader.instance_id} should hold the key"
                )
            holder = self.leader_key()
            assert holder == leader.instance_id, f"plasmavmc: the reconciler key names {holder!r}, not {leader.instance_id!r}"
            if time.monotonic() >= deadline:
                return
            time.sleep(2)


def run_plasmavmc_checks(plasmavmc: PlasmaVmc, every_vm: list[Member]) -> None:
    """PlasmaVMC with everything healed: serving; restarted, exactly one reconciler; its VM cut
    off from every other VM (ChainFire, FlareDB and IAM with it), the other one elected."""
    with subtest("plasmavmc: both units run and serve (an unsigned ListVms is refused UNAUTHENTICATED by IAM)"):
        for instance in plasmavmc.instances:
            instance.machine.wait_for_unit(PLASMAVMC_UNIT)
            instance.machine.wait_for_open_port(instance.member.port, addr=instance.member.ip)
            plasmavmc.refuses_unsigned(instance, RECOVERY_BOUND_S)

    with subtest("plasmavmc: both restarted, both log ready, exactly one elected reconciler and holding the key"):
        plasmavmc.restart()
        for instance in plasmavmc.instances:
            instance.machine.wait_for_unit(PLASMAVMC_UNIT)
            instance.machine.wait_for_open_port(instance.member.port, addr=instance.member.ip)
            instance.machine.wait_until_succeeds(
                f"journalctl -u {PLASMAVMC_UNIT} --since @{instance.since} --no-pager -o cat | grep -qF {shlex.quote(PLASMAVMC_READY)}",
                timeout=RECOVERY_BOUND_S,
            )
        leader = plasmavmc.wait_for_elected(plasmavmc.instances, RECOVERY_BOUND_S)
        plasmavmc.stays_elected(leader, {i.instance_id: int(i is leader) for i in plasmavmc.instances})

    [other] = [instance for instance in plasmavmc.instances if instance is not leader]
    peers = [member for member in every_vm if member.machine is not leader.machine]
    with subtest(f"plasmavmc: {leader.name} cut off from every other VM by iptables, {other.name} elected reconciler"):
        partition(leader.member, peers)
        plasmavmc.wait_for_elected([other], RECOVERY_BOUND_S)

    with subtest(f"plasmavmc: healed, {other.name} stays the one reconciler, {leader.name} serves again"):
        heal(leader.member, peers)
        plasmavmc.stays_elected(other, {leader.instance_id: 1, other.instance_id: 1})
        plasmavmc.refuses_unsigned(leader, RECOVERY_BOUND_S)


def dump_logs(units: list[tuple[str, list[Member]]]) -> None:
    """Prints the last journal lines of every unit on every running VM of its members (also on
    failure)."""
    for unit, unit_members in units:
        for member in unit_members:
            if not member.machine.is_up():
                continue
            _, journal = member.machine.execute(
                f"journalctl -u {unit} --no-pager -o short-precise | tail -n 300"
            )
            print(f"----- {member.name}: {unit} (last 300 lines) -----\n{journal}")


def wait_for_pd_connections(service: Service, bound_s: int) -> None:
    deadline = time.monotonic() + bound_s
    pd_states: dict[str, str] = {}
    while time.monotonic() < deadline:
        pd_states = {m.name: str(service.status(m).get("pd", {}).get("state", "")) for m in service.members}
        if all(state == "connected" for state in pd_states.values()):
            return
        time.sleep(2)
    raise AssertionError(f"{service.name}: stores not connected to PD within {bound_s}s: {pd_states}")


# PlasmaVMC's client is flaredb1, which runs no instance (so it is never the cut-off VM).
plasmavmc = PlasmaVmc(
    [PlasmaVmcInstance(*spec, index) for index, spec in enumerate(PLASMAVMC_INSTANCES, 1)],
    client=flaredb1,
    chainfire=chainfire,
)

start_all()
try:
    run_partition_scenario(chainfire, dependents=(IamChecks(iam),))
    run_partition_scenario(flaredb)
    with subtest("flaredb: every store connected to PD (ChainFire) again"):
        wait_for_pd_connections(flaredb, RECOVERY_BOUND_S)
    run_plasmavmc_checks(plasmavmc, chainfire.members + flaredb.members)
finally:
    dump_logs(
        [
            (chainfire.unit, chainfire.members),
            (IAM_UNIT, iam.members),
            (flaredb.unit, flaredb.members),
            (PLASMAVMC_UNIT, plasmavmc.api.members),
        ]
    )
