# What the server modules share: the rendering of option values into command-line flags, the
# options ChainFire and FlareDB take alike (Raft timing, retry policy, data directory,
# firewall, extra flags), and the hardened systemd service that runs any of the binaries
# (ChainFire, FlareDB, the stateless IAM, which has no data directory, and PlasmaVMC, which
# runs as root with part of the hardening left out).
{ lib }:
let
  inherit (lib) mkOption types;

  # { "1" = "HOST:PORT"; ... } -> "1=HOST:PORT,..." in id order (--initial-cluster, --peers).
  memberList = members: lib.concatStringsSep "," (lib.mapAttrsToList (id: addr: "${id}=${addr}") members);

  # "HOST:PORT" -> PORT, for the firewall.
  portOf = addr: lib.toInt (lib.last (lib.splitString ":" addr));

  # Numbers as a person would write them: 2.0 -> "2.0", 0.2 -> "0.2" (toString gives "2.000000").
  number =
    x:
    let
      text = toString x;
      parts = builtins.match "(-?[0-9]+)\\.([0-9]*[1-9])?0*" text;
    in
    if !(builtins.isFloat x) || parts == null then
      text
    else
      "${builtins.elemAt parts 0}.${
        if builtins.elemAt parts 1 == null then "0" else builtins.elemAt parts 1
      }";
in
{
  inherit memberList portOf number;

  # The options of `services.<name>` both servers take alike. `retried` says which failed calls
  # the retry policy applies to; `extraArgsExample` is a flag of that server.
  commonOptions =
    {
      name,
      retried,
      extraArgsExample,
    }:
    {
      dataDir = mkOption {
        type = types.str;
        default = "/var/lib/${name}";
        description = "Database directory (--data-dir). Must be under /var/lib: the service runs with DynamicUser and gets it as its StateDirectory.";
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
          description = "Retries ${retried} (--retry-max-retries).";
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
        example = extraArgsExample;
        description = "More `${name}` flags, appended to the command line.";
      };
    };

  # The flags for the options both servers take alike (and `logLevel`), in command-line order.
  commonArgs = cfg: [
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
  ];

  # The module's `config`: when `cfg.enable`, the assertions (the server's own, then that
  # dataDir is under /var/lib/), the firewall opening for `ports` (HOST:PORT addresses) and the
  # systemd service `name` running `bin/<name>` with `args` and then `cfg.extraArgs`.
  # A service that cannot run under the full hardening (PlasmaVMC, whose guests are processes
  # that need root and outlive the service) names the serviceConfig keys to leave out in
  # `unhardened` and adds its own in `extraServiceConfig` (they win over the shared ones).
  serviceConfig =
    {
      name,
      cfg,
      utils,
      description,
      args,
      ports,
      assertions,
      unhardened ? [ ],
      extraServiceConfig ? { },
    }:
    lib.mkIf cfg.enable {
      # A stateless service (IAM) has no dataDir and gets no state directory.
      assertions =
        assertions
        ++ lib.optional (cfg ? dataDir) {
          assertion = lib.hasPrefix "/var/lib/" cfg.dataDir;
          message = "services.${name}.dataDir (${cfg.dataDir}) must be under /var/lib/ (it is the service's StateDirectory).";
        };

      networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall (map portOf ports);

      systemd.services.${name} = {
        inherit description;
        wantedBy = [ "multi-user.target" ];
        wants = [ "network-online.target" ];
        after = [ "network-online.target" ];
        # Restart after a crash however often it takes (a node that crash-loops while, say, its
        # address is not up yet must not end in systemd's start-limit "failed" state).
        unitConfig.StartLimitIntervalSec = 0;
        serviceConfig =
          builtins.removeAttrs (
            {
              ExecStart = utils.escapeSystemdExecArgs (
                [ (lib.getExe' cfg.package name) ] ++ args ++ cfg.extraArgs
              );
              Type = "exec";
              DynamicUser = true;
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
            }
            // lib.optionalAttrs (cfg ? dataDir) {
              StateDirectory = lib.removePrefix "/var/lib/" cfg.dataDir;
              StateDirectoryMode = "0700";
            }
          ) unhardened
          // extraServiceConfig;
      };
    };
}
