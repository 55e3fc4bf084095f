# The design note's scenario 3 (network partition) across real VMs, which the note deferred to
# production: 3 ChainFire VMs + 3 FlareDB VMs on one virtual LAN, run by the NixOS test driver
# (needs KVM; `nix build .#vm-tests -L`). Each ChainFire VM also runs
# an IAM instance (nixosModules.iam, state in the three ChainFire nodes), so IAM is covered too.
#
# For each service: elect a leader and write; cut the leader off from its peers with iptables on
# its own VM (INPUT and OUTPUT DROP for the peers' addresses); writes still succeed with 2 of 3;
# power-cut another node (QEMU quit); writes now fail with a gRPC error within a bound, never
# hang; heal and boot the node again: writes succeed, every acknowledged write reads back, all
# replicas report the same state digest. Finally every FlareDB store is connected to PD
# (ChainFire) again. The client is grpcurl with the packaged .proto files, run on a VM of the
# other service, so the client never sits on the cut-off node.
#
# IAM along the ChainFire phases: every instance answers a signed GetCallerIdentity with the
# bootstrap administrator's ARN, and a user and access key created through one instance are
# known at the others; with ChainFire cut in two, the majority's instances answer and the cut-off
# node's fails closed; without a ChainFire quorum every running instance fails closed (503
# ServiceUnavailable, never an allow); after the heal every instance answers again. The client
# is `iam call` (SigV4-signed AWS Query API requests), run on a FlareDB VM.
#
# PlasmaVMC (nixosModules.plasmavmc) on two FlareDB VMs, flaredb2 and flaredb3, with the
# cluster's FlareDB, ChainFire and IAM (internal gRPC API) as its back ends; it takes no
# credentials of its own (it checks its callers' signatures through IAM). There is no PlasmaVMC
# CLI that signs CreateVm/GetVm, so no VM is created; after the other scenarios: each unit runs
# and serves (an unsigned ListVms is refused Unauthenticated by IAM, never served); both are
# restarted, both log "plasmavmc ready", exactly one logs "elected reconciler" and holds the
# reconciler key in ChainFire; its VM is cut off from every other VM (iptables, as above) and
# the other instance logs "elected reconciler" and takes the key; after the heal it keeps it.
#
# The test logic is ./partition.py; this file declares the machines and passes the addresses.
{
  lib,
  testers,
  grpcurl,
  iptables,
  workspace,
  nixosModules,
}:
let
  chainfireNames = [
    "chainfire1"
    "chainfire2"
    "chainfire3"
  ];
  flaredbNames = [
    "flaredb1"
    "flaredb2"
    "flaredb3"
  ];

  # The design note's ports.
  chainfireClientPort = 2379;
  chainfirePeerPort = 2380;
  flaredbClientPort = 5000;
  flaredbPeerPort = 5001;
  # IAM's Query API and internal gRPC API, on each ChainFire VM.
  iamPort = 8090;
  iamGrpcPort = 8091;
  iamRegion = "us-east-1";
  # PlasmaVMC's gRPC API, on two of the FlareDB VMs (flaredb1 stays its checks' client).
  plasmavmcNames = [
    "flaredb2"
    "flaredb3"
  ];
  plasmavmcPort = 8100;
  plasmavmcInstanceId = name: "plasmavmc-${name}";

  # The bootstrap administrator's access key (test values: iam wants an id of 16 or more
  # letters and digits and a secret of 16 or more characters). The IAM VMs get it as
  # ACCESS_KEY_ID:SECRET_ACCESS_KEY in /etc/iam-bootstrap for the module's bootstrapKeyFile
  # (which hands it to the service as a systemd credential); the client VMs get the secret
  # alone in /etc/iam-admin-secret for `iam call --secret-access-key-file`. Both are root-only
  # copies (mode 0400), not store symlinks; their text is in the store, fine for a test.
  iamAdmin = {
    accessKeyId = "AKIDVMTEST000000";
    secretAccessKey = "vm-test-secret-key";
  };
  iamBootstrapEtc = "iam-bootstrap";
  iamAdminSecretEtc = "iam-admin-secret";

  ipOf = nodes: name: nodes.${name}.networking.primaryIPAddress;
  addrOf = nodes: name: port: "${ipOf nodes name}:${toString port}";
  # { "1" = "IP:PORT"; ... } with ids in name order.
  membersOf =
    nodes: names: port:
    lib.listToAttrs (
      lib.imap1 (id: name: {
        name = toString id;
        value = addrOf nodes name port;
      }) names
    );

  clientTools = {
    environment.systemPackages = [
      grpcurl
      iptables
    ];
  };

  # A VM running node `id` of service `name` (its NixOS module, with debug logs and open ports)
  # and the client tools; `addresses nodes id` gives that service's address options.
  serviceNode =
    name: addresses: id:
    { nodes, ... }:
    {
      imports = [
        nixosModules.${name}
        clientTools
      ];
      services.${name} = {
        enable = true;
        nodeId = id;
        logLevel = "debug";
        openFirewall = true;
      }
      // addresses nodes id;
    };

  chainfireNode = serviceNode "chainfire" (
    nodes: id: {
      clientAddr = addrOf nodes "chainfire${toString id}" chainfireClientPort;
      initialCluster = membersOf nodes chainfireNames chainfirePeerPort;
      clusterClientAddrs = membersOf nodes chainfireNames chainfireClientPort;
    }
  );

  flaredbNode = serviceNode "flaredb" (
    nodes: id: {
      addr = addrOf nodes "flaredb${toString id}" flaredbClientPort;
      peers = membersOf nodes flaredbNames flaredbPeerPort;
      pdEndpoints = map (name: addrOf nodes name chainfireClientPort) chainfireNames;
      # A fast PD reconnect cycle: the test waits for reconnection after the ChainFire phase.
      pdReconnectIntervalMs = 2000;
    }
  );

  # The IAM instance on ChainFire VM `id`: both APIs on the VM's address, the three ChainFire
  # nodes as its store, the bootstrap administrator from /etc.
  iamNode =
    id:
    { nodes, ... }:
    let
      name = "chainfire${toString id}";
    in
    {
      imports = [ nixosModules.iam ];
      environment.etc.${iamBootstrapEtc} = {
        text = "${iamAdmin.accessKeyId}:${iamAdmin.secretAccessKey}";
        mode = "0400";
      };
      services.iam = {
        enable = true;
        addr = addrOf nodes name iamPort;
        grpcAddr = addrOf nodes name iamGrpcPort;
        chainfireEndpoints = map (peer: addrOf nodes peer chainfireClientPort) chainfireNames;
        region = iamRegion;
        bootstrapKeyFile = "/etc/${iamBootstrapEtc}";
        logLevel = "debug";
        openFirewall = true;
      };
    };

  # The IAM checks' client on a FlareDB VM: `iam call` from the package the IAM module runs
  # (the flake's packages.<system>.iam; the module is imported for its package only, no
  # instance runs here) and the administrator's secret.
  iamClient =
    { config, ... }:
    {
      imports = [ nixosModules.iam ];
      environment.systemPackages = [ config.services.iam.package ];
      environment.etc.${iamAdminSecretEtc} = {
        text = iamAdmin.secretAccessKey;
        mode = "0400";
      };
    };

  # The PlasmaVMC instance on FlareDB VM `name`: its API on the VM's address, the three FlareDB
  # stores for the VMs' state, the three ChainFire nodes for registration and the reconciler
  # election, the three IAM instances' internal gRPC API for authentication. No credentials:
  # plasmavmc has no flag for any (it verifies its callers' signatures through IAM).
  plasmavmcNode =
    name:
    { nodes, ... }:
    {
      imports = [ nixosModules.plasmavmc ];
      services.plasmavmc = {
        enable = true;
        addr = addrOf nodes name plasmavmcPort;
        instanceId = plasmavmcInstanceId name;
        flaredbEndpoints = map (peer: addrOf nodes peer flaredbClientPort) flaredbNames;
        chainfireEndpoints = map (peer: addrOf nodes peer chainfireClientPort) chainfireNames;
        iamEndpoints = map (peer: addrOf nodes peer iamGrpcPort) chainfireNames;
        logLevel = "debug";
        openFirewall = true;
      };
    };

  # A ChainFire VM also runs IAM; a FlareDB VM is also IAM's client, and two of them run
  # PlasmaVMC.
  chainfireVm = id: {
    imports = [
      (chainfireNode id)
      (iamNode id)
    ];
  };
  flaredbVm =
    id:
    let
      name = "flaredb${toString id}";
    in
    {
      imports = [
        (flaredbNode id)
        iamClient
      ]
      ++ lib.optional (lib.elem name plasmavmcNames) (plasmavmcNode name);
    };

  # { NAME = node ID; ... } for one service's machines, ids in name order.
  machines =
    names: node:
    lib.listToAttrs (
      lib.imap1 (id: name: {
        inherit name;
        value = node id;
      }) names
    );

  # Python literals for the members of one service: (machine, id, ip, client port).
  membersPython =
    nodes: names: port:
    lib.concatStringsSep ", " (
      lib.imap1 (id: name: ''(${name}, ${toString id}, "${ipOf nodes name}", ${toString port})'') names
    );

  # Python literals for the PlasmaVMC instances: (machine, instance id, ip, port).
  plasmavmcPython =
    nodes:
    lib.concatMapStringsSep ", " (
      name: ''(${name}, "${plasmavmcInstanceId name}", "${ipOf nodes name}", ${toString plasmavmcPort})''
    ) plasmavmcNames;
in
testers.runNixOSTest {
  name = "reconnect-partition";

  nodes = machines chainfireNames chainfireVm // machines flaredbNames flaredbVm;

  testScript =
    { nodes, ... }:
    ''
      # --- generated by nix/tests/partition.nix
      PROTO_DIR = "${workspace}/share/reconnect-tests/proto"
      CHAINFIRE_MEMBERS = [${membersPython nodes chainfireNames chainfireClientPort}]
      FLAREDB_MEMBERS = [${membersPython nodes flaredbNames flaredbClientPort}]
      IAM_MEMBERS = [${membersPython nodes chainfireNames iamPort}]
      IAM_REGION = "${iamRegion}"
      IAM_ADMIN_KEY_ID = "${iamAdmin.accessKeyId}"
      IAM_ADMIN_SECRET_FILE = "/etc/${iamAdminSecretEtc}"
      PLASMAVMC_INSTANCES = [${plasmavmcPython nodes}]
      # --- nix/tests/partition.py
    ''
    + builtins.readFile ./partition.py;
}
