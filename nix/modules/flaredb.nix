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

  inherit (import ./flags.nix { inherit lib; }) memberList portOf number;

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
    "--data-dir"
    cfg.dataDir
    "--log-level"
    cfg.logLevel
    "--heartbeat-interval-ms"
    (toString cfg.heartbeatIntervalMs)
    "--election-timeout-ms"
    (toString cfg.electionTimeoutMs)
    "--retry-max-retries"
    (toString cfg.retry.maxRetries)
    "--retry-initial-delay-ms"
    (toString cfg.retry.initialDelayMs)
    "--retry-multiplier"
    (number cfg.retry.multiplier)
    "--retry-max-delay-ms"
    (toString cfg.retry.maxDelayMs)
    "--retry-jitter"
    (number cfg.retry.jitter)
    "--pd-reconnect-interval-ms"
    (toString cfg.pdReconnectIntervalMs)
    "--pd-heartbeat-interval-ms"
    (toString cfg.pdHeartbeatIntervalMs)
  ]
  ++ cfg.extraArgs;
in
{
  options.services.flaredb = {
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

    dataDir = mkOption {
      type = types.str;
      default = "/var/lib/flaredb";
      description = "Database directory (--data-dir). Must be under /var/lib: the service runs with DynamicUser and gets it as its StateDirectory.";
    };

    logLevel = mkOption {
      type = types.str;
      default = "info";
      example = "debug";
      description = "Log filter (--log-level): a level or a tracing directive; `debug` logs PD connects, heartbeats, losses and reconnections.";
    };

    heartbeatIntervalMs = mkOption {
      type = types.ints.positive;
      default = 100;
      description = "Raft heartbeat interval in milliseconds (--heartbeat-interval-ms).";
    };

    electionTimeoutMs = mkOption {
      type = types.ints.positive;
      default = 1000;
      description = "Raft election timeout in milliseconds (--election-timeout-ms).";
    };

    retry = {
      maxRetries = mkOption {
        type = types.ints.unsigned;
        default = 3;
        description = "Retries after a failed Raft peer RPC or PD call (--retry-max-retries).";
      };
      initialDelayMs = mkOption {
        type = types.ints.positive;
        default = 500;
        description = "Delay before the first retry, in milliseconds (--retry-initial-delay-ms).";
      };
      multiplier = mkOption {
        type = types.number;
        default = 2.0;
        description = "Growth factor between retry delays (--retry-multiplier).";
      };
      maxDelayMs = mkOption {
        type = types.ints.positive;
        default = 30000;
        description = "Cap on any retry delay, in milliseconds (--retry-max-delay-ms).";
      };
      jitter = mkOption {
        type = types.number;
        default = 0.2;
        description = "Symmetric jitter as a fraction of each delay (--retry-jitter).";
      };
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

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the client and peer ports in the firewall.";
    };

    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [
        "--pd-lease-ttl-s"
        "10"
      ];
      description = "More `flaredb` flags, appended to the command line.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.peers ? ${toString cfg.nodeId};
        message = "services.flaredb.peers has no entry for nodeId ${toString cfg.nodeId}.";
      }
      {
        assertion = cfg.pdEndpoints != [ ];
        message = "services.flaredb.pdEndpoints must name at least one ChainFire endpoint.";
      }
      {
        assertion = lib.hasPrefix "/var/lib/" cfg.dataDir;
        message = "services.flaredb.dataDir (${cfg.dataDir}) must be under /var/lib/ (it is the service's StateDirectory).";
      }
    ];

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [
      (portOf cfg.addr)
      (portOf peerAddr)
    ];

    systemd.services.flaredb = {
      description = "FlareDB store ${toString cfg.nodeId}";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      # Restart after a crash however often it takes (a node that crash-loops while, say, its
      # address is not up yet must not end in systemd's start-limit "failed" state).
      unitConfig.StartLimitIntervalSec = 0;
      serviceConfig = {
        ExecStart = utils.escapeSystemdExecArgs ([ (lib.getExe' cfg.package "flaredb") ] ++ args);
        Type = "exec";
        DynamicUser = true;
        StateDirectory = lib.removePrefix "/var/lib/" cfg.dataDir;
        StateDirectoryMode = "0700";
        # SIGTERM is the graceful stop (stop accepting, flush, exit 0).
        KillSignal = "SIGTERM";
        TimeoutStopSec = 30;
        Restart = "on-failure";
        RestartSec = 2;
        LimitNOFILE = 65536;
        NoNewPrivileges = true;
        PrivateTmp = true;
        PrivateDevices = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectControlGroups = true;
        RestrictAddressFamilies = [
          "AF_INET"
          "AF_INET6"
          "AF_UNIX"
        ];
        RestrictNamespaces = true;
        LockPersonality = true;
        SystemCallArchitectures = "native";
        CapabilityBoundingSet = "";
      };
    };
  };
}
