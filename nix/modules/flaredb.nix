# NixOS module: one FlareDB store (`services.flaredb`) as a systemd service.
#
# FlareDB replicates through its own Raft group (`peers`) and registers with ChainFire, its
# placement driver (`pdEndpoints`). The flags the platform relies on are options; anything else
# goes through `extraArgs`. The flake's `nixosModules.flaredb` also sets `package`.
#
#   services.flaredb = {
#     enable = true;
#     nodeId = 1;
#     addr = "10.0.1.1:5000";
#     peers = { "1" = "10.0.1.1:5001"; "2" = "10.0.1.2:5001"; "3" = "10.0.1.3:5001"; };
#     pdEndpoints = [ "10.0.0.1:2379" "10.0.0.2:2379" "10.0.0.3:2379" ];
#     openFirewall = true;
#   };
{
  config,
  lib,
  utils,
  ...
}:
let
  cfg = config.services.flaredb;
  inherit (lib) mkOption types;

  shared = import ./flags.nix { inherit lib; };
  inherit (shared) memberList;

  # flaredb requires --peer-addr to equal this store's entry in --peers.
  peerAddr =
    cfg.peers.${toString cfg.nodeId}
      or (throw "services.flaredb.peers has no entry for nodeId ${toString cfg.nodeId}.");

  args = [
    "--id"
    (toString cfg.nodeId)
    "--addr"
    cfg.addr
    "--peer-addr"
    peerAddr
    "--peers"
    (memberList cfg.peers)
    "--pd-endpoints"
    (lib.concatStringsSep "," cfg.pdEndpoints)
  ]
  ++ shared.commonArgs cfg
  ++ [
    "--pd-reconnect-interval-ms"
    (toString cfg.pdReconnectIntervalMs)
    "--pd-heartbeat-interval-ms"
    (toString cfg.pdHeartbeatIntervalMs)
  ];
in
{
  options.services.flaredb =
    shared.commonOptions {
      name = "flaredb";
      retried = "after a failed Raft peer RPC or PD call";
      extraArgsExample = [
        "--pd-lease-ttl-s"
        "10"
      ];
    }
    // {
      enable = lib.mkEnableOption "a FlareDB store (replicated key-value store using ChainFire as placement driver)";

      package = mkOption {
        type = types.package;
        description = "Package providing bin/flaredb.";
      };

      nodeId = mkOption {
        type = types.ints.positive;
        example = 1;
        description = "This store's id (--id); must be a key of peers.";
      };

      addr = mkOption {
        type = types.str;
        example = "10.0.1.1:5000";
        description = "HOST:PORT the client gRPC API listens on (--addr).";
      };

      peers = mkOption {
        type = types.attrsOf types.str;
        example = {
          "1" = "10.0.1.1:5001";
          "2" = "10.0.1.2:5001";
          "3" = "10.0.1.3:5001";
        };
        description = "Every store's id and Raft peer address (--peers), identical on all stores. This store's entry is also its --peer-addr.";
      };

      pdEndpoints = mkOption {
        type = types.listOf types.str;
        example = [
          "10.0.0.1:2379"
          "10.0.0.2:2379"
          "10.0.0.3:2379"
        ];
        description = "ChainFire client endpoints, the placement driver (--pd-endpoints).";
      };

      logLevel = mkOption {
        type = types.str;
        default = "info";
        example = "debug";
        description = "Log filter (--log-level): a level or a tracing directive; `debug` logs PD connects, heartbeats, losses and reconnections.";
      };

      pdReconnectIntervalMs = mkOption {
        type = types.ints.positive;
        default = 10000;
        description = "PD reconnect cycle in milliseconds (--pd-reconnect-interval-ms); the design note's 10 s.";
      };

      pdHeartbeatIntervalMs = mkOption {
        type = types.ints.positive;
        default = 1000;
        description = "Interval between PD heartbeats (lease keep-alives) in milliseconds (--pd-heartbeat-interval-ms).";
      };
    };

  config = shared.serviceConfig {
    name = "flaredb";
    inherit cfg utils args;
    description = "FlareDB store ${toString cfg.nodeId}";
    ports = [
      cfg.addr
      peerAddr
    ];
    assertions = [
      {
        assertion = cfg.peers ? ${toString cfg.nodeId};
        message = "services.flaredb.peers has no entry for nodeId ${toString cfg.nodeId}.";
      }
      {
        assertion = cfg.pdEndpoints != [ ];
        message = "services.flaredb.pdEndpoints must name at least one ChainFire endpoint.";
      }
    ];
  };
}
