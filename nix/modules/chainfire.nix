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

  inherit (import ./flags.nix { inherit lib; }) memberList portOf number;

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
  ]
  ++ lib.optionals (cfg.clusterClientAddrs != { }) [
    "--cluster-client-addrs"
    (memberList cfg.clusterClientAddrs)
  ]
  ++ cfg.extraArgs;
in
{
  options.services.chainfire = {
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

    dataDir = mkOption {
      type = types.str;
      default = "/var/lib/chainfire";
      description = "Database directory (--data-dir). Must be under /var/lib: the service runs with DynamicUser and gets it as its StateDirectory.";
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

    heartbeatIntervalMs = mkOption {
      type = types.ints.positive;
      default = 100;
      description = "Raft heartbeat interval in milliseconds (--heartbeat-interval-ms).";
    };

    electionTimeoutMs = mkOption {
      type = types.ints.positive;
      default = 1000;
      description = "Minimum Raft election timeout in milliseconds (--election-timeout-ms).";
    };

    retry = {
      maxRetries = mkOption {
        type = types.ints.unsigned;
        default = 3;
        description = "Retries of a failed Raft RPC to a peer (--retry-max-retries).";
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

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the client and peer ports in the firewall.";
    };

    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [
        "--write-timeout-ms"
        "3000"
      ];
      description = "More `chainfire` flags, appended to the command line.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.initialCluster ? ${toString cfg.nodeId};
        message = "services.chainfire.initialCluster has no entry for nodeId ${toString cfg.nodeId}.";
      }
      {
        assertion = lib.hasPrefix "/var/lib/" cfg.dataDir;
        message = "services.chainfire.dataDir (${cfg.dataDir}) must be under /var/lib/ (it is the service's StateDirectory).";
      }
    ];

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [
      (portOf cfg.clientAddr)
      (portOf peerAddr)
    ];

    systemd.services.chainfire = {
      description = "ChainFire node ${toString cfg.nodeId}";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      # Restart after a crash however often it takes (a node that crash-loops while, say, its
      # address is not up yet must not end in systemd's start-limit "failed" state).
      unitConfig.StartLimitIntervalSec = 0;
      serviceConfig = {
        ExecStart = utils.escapeSystemdExecArgs ([ (lib.getExe' cfg.package "chainfire") ] ++ args);
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
