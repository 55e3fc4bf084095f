# NixOS module: one IAM instance (`services.iam`) as a systemd service.
#
# IAM is stateless: users, access keys and policies live in ChainFire (`chainfireEndpoints`), so
# run one instance per machine you like. The first administrator's key comes from a file
# (`bootstrapKeyFile`, ACCESS_KEY_ID:SECRET_ACCESS_KEY, handed over as a systemd credential so the
# service's dynamic user can read it); anything else goes through `extraArgs`. The flake's
# `nixosModules.iam` also sets `package`.
#
#   services.iam = {
#     enable = true;
#     addr = "10.0.2.1:8090";
#     grpcAddr = "10.0.2.1:8091";
#     chainfireEndpoints = [ "10.0.0.1:2379" "10.0.0.2:2379" "10.0.0.3:2379" ];
#     bootstrapKeyFile = "/run/keys/iam-bootstrap";
#     openFirewall = true;
#   };
{
  config,
  lib,
  utils,
  ...
}:
let
  cfg = config.services.iam;
  inherit (lib) mkOption types;
  shared = import ./flags.nix { inherit lib; };

  args = [
    "--addr"
    cfg.addr
    "--chainfire-endpoints"
    (lib.concatStringsSep "," cfg.chainfireEndpoints)
    "--region"
    cfg.region
    "--log-level"
    cfg.logLevel
  ]
  ++ lib.optionals (cfg.grpcAddr != null) [
    "--grpc-addr"
    cfg.grpcAddr
  ];
in
{
  options.services.iam = {
    enable = lib.mkEnableOption "an IAM instance (the platform's SigV4 identity service, state in ChainFire)";

    package = mkOption {
      type = types.package;
      description = "Package providing bin/iam.";
    };

    addr = mkOption {
      type = types.str;
      example = "10.0.2.1:8090";
      description = "HOST:PORT the AWS Query API listens on (--addr).";
    };

    grpcAddr = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "10.0.2.1:8091";
      description = "HOST:PORT the internal gRPC API (Authenticate, Authorize) listens on (--grpc-addr); none when null.";
    };

    chainfireEndpoints = mkOption {
      type = types.listOf types.str;
      example = [
        "10.0.0.1:2379"
        "10.0.0.2:2379"
        "10.0.0.3:2379"
      ];
      description = "ChainFire client endpoints (--chainfire-endpoints).";
    };

    region = mkOption {
      type = types.str;
      default = "us-east-1";
      description = "The region requests must be signed for (--region).";
    };

    bootstrapKeyFile = mkOption {
      # A string, not a path: a path value would copy the secret into the world-readable store.
      type = types.nullOr types.str;
      default = null;
      example = "/run/keys/iam-bootstrap";
      description = "Absolute path of a file (outside the Nix store: it is a secret) holding the first administrator's ACCESS_KEY_ID:SECRET_ACCESS_KEY (--bootstrap-key-file), passed to the service as a systemd credential.";
    };

    logLevel = mkOption {
      type = types.str;
      default = "info";
      description = "Log filter (--log-level).";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the Query API and gRPC ports in the firewall.";
    };

    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [
        "--trust-for-ms"
        "10000"
      ];
      description = "More `iam` flags, appended to the command line.";
    };
  };

  config = lib.mkMerge [
    (shared.serviceConfig {
      name = "iam";
      inherit cfg utils args;
      description = "IAM instance on ${cfg.addr}";
      ports = [ cfg.addr ] ++ lib.optional (cfg.grpcAddr != null) cfg.grpcAddr;
      assertions = [
        {
          assertion = cfg.chainfireEndpoints != [ ];
          message = "services.iam.chainfireEndpoints must name at least one ChainFire endpoint.";
        }
        {
          assertion = cfg.bootstrapKeyFile == null || lib.hasPrefix "/" cfg.bootstrapKeyFile;
          message = "services.iam.bootstrapKeyFile must be an absolute path.";
        }
      ];
    })
    (lib.mkIf (cfg.enable && cfg.bootstrapKeyFile != null) {
      # The credential, readable by the dynamic user only, reaches iam as
      # IAM_BOOTSTRAP_KEY_FILE (its --bootstrap-key-file); systemd expands %d to the
      # credentials directory in Environment= (ExecStart arguments are escaped, so not there).
      systemd.services.iam.serviceConfig = {
        LoadCredential = [ "bootstrap-key:${cfg.bootstrapKeyFile}" ];
        Environment = [ "IAM_BOOTSTRAP_KEY_FILE=%d/bootstrap-key" ];
      };
    })
  ];
}
