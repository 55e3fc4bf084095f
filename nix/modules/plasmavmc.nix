# NixOS module: one PlasmaVMC instance (`services.plasmavmc`) as a systemd service.
#
# PlasmaVMC is the VM control plane: desired and actual state of every VM live in FlareDB
# (`flaredbEndpoints`), instances register and elect the one reconciler in ChainFire
# (`chainfireEndpoints`), and every call is authenticated and authorised by IAM
# (`iamEndpoints`, IAM's internal gRPC addresses, i.e. its `grpcAddr`). Every `plasmavmc` flag
# is an option; anything else goes through `extraArgs`. The flake's `nixosModules.plasmavmc`
# also sets `package`.
#
# The hypervisor driver keeps its state under `driverRoot` (one folder per VM), inside the
# service's StateDirectory /var/lib/plasmavmc, which persists. Guests are processes that must
# outlive a restart of the service: the unit has KillMode=process (stop and restart kill only
# the main process; the guests run in their own sessions and are re-adopted by the next start)
# and no private /tmp (systemd would remove it under the guests when the unit stops). The
# service runs as root, not as a dynamic user: the hypervisor needs the privilege (to unshare
# namespaces with `namespaces = true`, to reach devices), so the capability, namespace and
# device restrictions of the other services are left out; the file system stays read-only
# except for the state (and log) directory.
#
#   services.plasmavmc = {
#     enable = true;
#     addr = "10.0.3.1:8100";
#     flaredbEndpoints = [ "10.0.1.1:5000" "10.0.1.2:5000" "10.0.1.3:5000" ];
#     chainfireEndpoints = [ "10.0.0.1:2379" "10.0.0.2:2379" "10.0.0.3:2379" ];
#     iamEndpoints = [ "10.0.2.1:8091" "10.0.2.2:8091" ];
#     namespaces = true;
#     openFirewall = true;
#   };
{
  config,
  lib,
  utils,
  ...
}:
let
  cfg = config.services.plasmavmc;
  inherit (lib) mkOption types;
  shared = import ./flags.nix { inherit lib; };

  # The service's StateDirectory (persistent, writable under ProtectSystem=strict) and, when
  # `logFile` is set, its LogsDirectory.
  stateDir = "/var/lib/plasmavmc";
  logsDir = "/var/log/plasmavmc";
  under = dir: path: path == dir || lib.hasPrefix "${dir}/" path;

  args = [
    "--addr"
    cfg.addr
    "--flaredb-endpoints"
    (lib.concatStringsSep "," cfg.flaredbEndpoints)
    "--chainfire-endpoints"
    (lib.concatStringsSep "," cfg.chainfireEndpoints)
    "--iam-endpoints"
    (lib.concatStringsSep "," cfg.iamEndpoints)
    "--driver-root"
    cfg.driverRoot
    "--reconcile-every-ms"
    (toString cfg.reconcileEveryMs)
    "--lease-ttl-ms"
    (toString cfg.leaseTtlMs)
    "--stop-grace-ms"
    (toString cfg.stopGraceMs)
    "--watch-every-ms"
    (toString cfg.watchEveryMs)
    "--log-level"
    cfg.logLevel
  ]
  ++ lib.optionals (cfg.instanceId != null) [
    "--instance-id"
    cfg.instanceId
  ]
  ++ lib.optional cfg.namespaces "--namespaces"
  ++ lib.optionals (cfg.logFile != null) [
    "--log-file"
    cfg.logFile
  ];

  endpointsOption =
    { flag, what, example }:
    mkOption {
      type = types.listOf types.str;
      inherit example;
      description = "${what} (${flag}); at least one.";
    };
in
{
  options.services.plasmavmc = {
    enable = lib.mkEnableOption "a PlasmaVMC instance (the platform's VM control plane: state in FlareDB, SigV4 through IAM, one reconciler elected in ChainFire)";

    package = mkOption {
      type = types.package;
      description = "Package providing bin/plasmavmc.";
    };

    addr = mkOption {
      type = types.str;
      example = "10.0.3.1:8100";
      description = "HOST:PORT the gRPC API (plasmavmc.v1.Vms) listens on (--addr); also the host clients sign their requests for.";
    };

    instanceId = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "plasmavmc-1";
      description = "This instance's name in ChainFire and in VM transitions (--instance-id); `addr` when null.";
    };

    flaredbEndpoints = endpointsOption {
      flag = "--flaredb-endpoints";
      what = "FlareDB store endpoints, HOST:PORT";
      example = [
        "10.0.1.1:5000"
        "10.0.1.2:5000"
        "10.0.1.3:5000"
      ];
    };

    chainfireEndpoints = endpointsOption {
      flag = "--chainfire-endpoints";
      what = "ChainFire client endpoints, HOST:PORT";
      example = [
        "10.0.0.1:2379"
        "10.0.0.2:2379"
        "10.0.0.3:2379"
      ];
    };

    iamEndpoints = endpointsOption {
      flag = "--iam-endpoints";
      what = "IAM instances' internal gRPC addresses (their `grpcAddr`), HOST:PORT";
      example = [
        "10.0.2.1:8091"
        "10.0.2.2:8091"
      ];
    };

    driverRoot = mkOption {
      type = types.str;
      default = "${stateDir}/driver";
      description = "The hypervisor driver's state, one folder per VM (--driver-root). Must be ${stateDir} or below it: that is the service's StateDirectory, which persists across restarts and is the only writable place under ProtectSystem=strict. Instances on one host share it.";
    };

    namespaces = mkOption {
      type = types.bool;
      default = false;
      description = "Run each guest in its own UTS, IPC and mount namespaces (--namespaces). Needs privilege: the service runs as root (never as a dynamic user) and without a namespace restriction.";
    };

    reconcileEveryMs = mkOption {
      type = types.ints.positive;
      default = 500;
      description = "How often the reconciler passes over every VM, in milliseconds (--reconcile-every-ms).";
    };

    leaseTtlMs = mkOption {
      type = types.ints.positive;
      default = 3000;
      description = "TTL of this instance's ChainFire lease (registration and reconciler election), in milliseconds (--lease-ttl-ms).";
    };

    stopGraceMs = mkOption {
      type = types.ints.positive;
      default = 5000;
      description = "How long a guest gets between SIGTERM and SIGKILL when it is stopped, in milliseconds (--stop-grace-ms).";
    };

    watchEveryMs = mkOption {
      type = types.ints.positive;
      default = 250;
      description = "How often WatchVms' source reads the VM records, in milliseconds (--watch-every-ms).";
    };

    logLevel = mkOption {
      type = types.str;
      default = "info";
      description = "Log filter (--log-level).";
    };

    logFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "${logsDir}/plasmavmc.log";
      description = "Append logs to this file instead of stderr (the journal) (--log-file); none when null. Must be under ${logsDir} (the service's LogsDirectory, created when this is set) or ${stateDir}.";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the gRPC API port in the firewall.";
    };

    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "More `plasmavmc` flags, appended to the command line: only flags this module has no option for (a flag given twice is an error, exit 2).";
    };
  };

  config = shared.serviceConfig {
    name = "plasmavmc";
    inherit cfg utils args;
    description = "PlasmaVMC instance on ${cfg.addr}";
    ports = [ cfg.addr ];
    assertions = [
      {
        assertion = cfg.flaredbEndpoints != [ ];
        message = "services.plasmavmc.flaredbEndpoints must name at least one FlareDB endpoint.";
      }
      {
        assertion = cfg.chainfireEndpoints != [ ];
        message = "services.plasmavmc.chainfireEndpoints must name at least one ChainFire endpoint.";
      }
      {
        assertion = cfg.iamEndpoints != [ ];
        message = "services.plasmavmc.iamEndpoints must name at least one IAM gRPC endpoint.";
      }
      {
        assertion = under stateDir cfg.driverRoot;
        message = "services.plasmavmc.driverRoot (${cfg.driverRoot}) must be ${stateDir} or below it (the service's StateDirectory, which persists).";
      }
      {
        assertion = cfg.logFile == null || under logsDir cfg.logFile || under stateDir cfg.logFile;
        message = "services.plasmavmc.logFile must be under ${logsDir} or ${stateDir} (the only writable places of the service).";
      }
    ];
    # Root, not a dynamic user (the hypervisor needs the privilege, e.g. to unshare the guests'
    # namespaces); no capability, namespace or device restriction (guests inherit them); no
    # private /tmp (it would be removed under the guests when the unit stops).
    unhardened = [
      "DynamicUser"
      "CapabilityBoundingSet"
      "RestrictNamespaces"
      "PrivateDevices"
      "PrivateTmp"
    ];
    extraServiceConfig = {
      # Stop and restart kill only the main process: the guests, in their own sessions, keep
      # running and the next start re-adopts them.
      KillMode = "process";
      StateDirectory = "plasmavmc";
      StateDirectoryMode = "0700";
    }
    // lib.optionalAttrs (cfg.logFile != null) {
      LogsDirectory = "plasmavmc";
      LogsDirectoryMode = "0700";
    };
  };
}
