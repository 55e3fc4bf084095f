# Test script of the multi-VM partition test (nix/tests/partition.nix), run by the NixOS test
# driver. partition.nix prepends PROTO_DIR, CHAINFIRE_MEMBERS and FLAREDB_MEMBERS; the machine
# objects (chainfire1 ... flaredb3), start_all and subtest come from the driver.
#
# Every client operation is one grpcurl call with its own deadline (-max-time), so nothing can
# hang; every verdict is an assertion on what the servers answered.

import base64
import json
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


def run_partition_scenario(service: Service) -> None:
    """The design note's S3 for one service, with the current leader as the cut-off node."""
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

    with subtest(f"{service.name}: {victim.name} powered off, writes fail within {FAILURE_BOUND_S}s"):
        victim.machine.crash()
        for attempt in range(3):
            # Outcome unknown: never counted as acknowledged, never required to be absent.
            service.put_must_fail(f"{service.name}/no-quorum/{attempt}", "x", [survivor, isolated])

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


def dump_logs(services: list[Service]) -> None:
    """Prints the last journal lines of every service on every running VM (also on failure)."""
    for service in services:
        for member in service.members:
            if not member.machine.is_up():
                continue
            _, journal = member.machine.execute(
                f"journalctl -u {service.unit} --no-pager -o short-precise | tail -n 300"
            )
            print(f"----- {member.name}: {service.unit} (last 300 lines) -----\n{journal}")


def wait_for_pd_connections(service: Service, bound_s: int) -> None:
    deadline = time.monotonic() + bound_s
    pd_states: dict[str, str] = {}
    while time.monotonic() < deadline:
        pd_states = {m.name: str(service.status(m).get("pd", {}).get("state", "")) for m in service.members}
        if all(state == "connected" for state in pd_states.values()):
            return
        time.sleep(2)
    raise AssertionError(f"{service.name}: stores not connected to PD within {bound_s}s: {pd_states}")


start_all()
try:
    run_partition_scenario(chainfire)
    run_partition_scenario(flaredb)
    with subtest("flaredb: every store connected to PD (ChainFire) again"):
        wait_for_pd_connections(flaredb, RECOVERY_BOUND_S)
finally:
    dump_logs([chainfire, flaredb])
