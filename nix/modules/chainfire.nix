# NixOS module: one ChainFire node (`services.chainfire`) as a systemd service.
#
# Every `chainfire` flag the platform relies on is an option; anything else goes through
# `extraArgs`. The flake's `nixosModules.chainfire` also sets `package` to the flake's build.
#
#   services.chainfire = {
#     enable = true;
#     nodeId = 1;
#     clientAddr = "10.0.0.1:2379";
#     initialCluster = { "1" = "10.0.0.1:2380"; "2" = "10.0.0.2:2380"; "3" = "10.0.0.3:2380"; };
#     openFirewall = true;
#   };
{
  config,
  lib,
  utils,
  ...
}:
let
  cfg = config.services.chainfire;
  inherit (lib) mkOption types;

  shared = import ./flags.nix { inherit lib; };
  inherit (shared) memberList;

  ownEntry =
    cfg.initialCluster.${toString cfg.nodeId}
      or (throw "services.chainfire.initialCluster has no entry for nodeId ${toString cfg.nodeId}.");
  peerAddr = if cfg.peerAddr != null then cfg.peerAddr else ownEntry;

  args = [
    "--id"
    (toString cfg.nodeId)
    "--client-addr"
    cfg.clientAddr
    "--peer-addr"
    peerAddr
    "--initial-cluster"
    (memberList cfg.initialCluster)
  ]
  ++ shared.commonArgs cfg
  ++ lib.optionals (cfg.clusterClientAddrs != { }) [
    "--cluster-client-addrs"
    (memberList cfg.clusterClientAddrs)
  ];
in
{
  options.services.chainfire =
    shared.commonOptions {
      name = "chainfire";
      retried = "of a failed Raft RPC to a peer";
      extraArgsExample = [
        "--write-timeout-ms"
        "3000"
      ];
    }
    // {
      enable = lib.mkEnableOption "a ChainFire node (Raft-replicated key-value store)";

      package = mkOption {
        type = types.package;
        description = "Package providing bin/chainfire.";
      };

      nodeId = mkOption {
        type = types.ints.positive;
        example = 1;
        description = "This node's id (--id); must be a key of initialCluster.";
      };

      clientAddr = mkOption {
        type = types.str;
        example = "10.0.0.1:2379";
        description = "HOST:PORT the client gRPC API listens on (--client-addr); clients and FlareDB's PD client connect here.";
      };

      peerAddr = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "10.0.0.1:2380";
        description = "HOST:PORT the Raft peer transport listens on (--peer-addr). Default: this node's entry in initialCluster.";
      };

      initialCluster = mkOption {
        type = types.attrsOf types.str;
        example = {
          "1" = "10.0.0.1:2380";
          "2" = "10.0.0.2:2380";
          "3" = "10.0.0.3:2380";
        };
        description = "Every member's id and peer address (--initial-cluster), identical on all nodes.";
      };

      clusterClientAddrs = mkOption {
        type = types.attrsOf types.str;
        default = { };
        example = {
          "1" = "10.0.0.1:2379";
          "2" = "10.0.0.2:2379";
          "3" = "10.0.0.3:2379";
        };
        description = "Every member's client address (--cluster-client-addrs), so a follower's \"not leader\" error names the leader's client address.";
      };

      logLevel = mkOption {
        type = types.enum [
          "error"
          "warn"
          "info"
          "debug"
          "trace"
        ];
        default = "info";
        description = "Log level (--log-level); `debug` logs elections, leader changes, retries and reconnections. Logs go to the journal.";
      };
    };

  config = shared.serviceConfig {
    name = "chainfire";
    inherit cfg utils args;
    description = "ChainFire node ${toString cfg.nodeId}";
    ports = [
      cfg.clientAddr
      peerAddr
    ];
    assertions = [
      {
        assertion = cfg.initialCluster ? ${toString cfg.nodeId};
        message = "services.chainfire.initialCluster has no entry for nodeId ${toString cfg.nodeId}.";
      }
    ];
  };
}
