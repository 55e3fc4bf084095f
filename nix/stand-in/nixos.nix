# Stand-in for the parts of NixOS the offline checks evaluate: the NixOS options this
# repository's modules and VM test set (declared with their real names and types, nothing
# else: setting any other option is "The option `x' does not exist"), and
# `testers.runNixOSTest` (evaluates every node with the stand-in module system, enforces
# `assertions`, resolves the test script like nixos/lib/testing does, and returns a derivation
# with the real result's inspection attributes: `config.testScriptString`, `driver`, `nodes`).
{
  lib,
  pkgs,
  mkDrv,
}:
let
  inherit (lib) mkOption types;

  # systemd's unit option values: scalars, or lists that are concatenated.
  unitOption = types.oneOf [
    types.bool
    types.int
    types.str
    types.path
    types.package
    (types.listOf (
      types.oneOf [
        types.bool
        types.int
        types.str
        types.path
        types.package
      ]
    ))
  ];

  listOfStr = mkOption {
    type = types.listOf types.str;
    default = [ ];
  };

  serviceOptions = {
    options = {
      enable = mkOption {
        type = types.bool;
        default = true;
      };
      description = mkOption {
        type = types.str;
        default = "";
      };
      wantedBy = listOfStr;
      requiredBy = listOfStr;
      after = listOfStr;
      before = listOfStr;
      wants = listOfStr;
      requires = listOfStr;
      bindsTo = listOfStr;
      partOf = listOfStr;
      conflicts = listOfStr;
      path = mkOption {
        type = types.listOf (types.either types.package types.str);
        default = [ ];
      };
      environment = mkOption {
        type = types.attrsOf (
          types.nullOr (
            types.oneOf [
              types.str
              types.path
              types.package
            ]
          )
        );
        default = { };
      };
      serviceConfig = mkOption {
        type = types.attrsOf unitOption;
        default = { };
      };
      unitConfig = mkOption {
        type = types.attrsOf unitOption;
        default = { };
      };
      script = mkOption {
        type = types.lines;
        default = "";
      };
      preStart = mkOption {
        type = types.lines;
        default = "";
      };
      postStart = mkOption {
        type = types.lines;
        default = "";
      };
      restartIfChanged = mkOption {
        type = types.bool;
        default = true;
      };
      startLimitBurst = mkOption {
        type = types.nullOr types.int;
        default = null;
      };
      startLimitIntervalSec = mkOption {
        type = types.nullOr types.int;
        default = null;
      };
    };
  };

  etcOptions = {
    options = {
      text = mkOption {
        type = types.nullOr types.lines;
        default = null;
      };
      # "symlink" (a link into the store), or the octal mode of a copy owned by root.
      mode = mkOption {
        type = types.str;
        default = "symlink";
      };
    };
  };

  nixosOptions = {
    _file = "nix/stand-in/nixos.nix (NixOS option subset)";
    options = {
      assertions = mkOption {
        type = types.listOf types.attrs;
        default = [ ];
      };
      warnings = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      environment.systemPackages = mkOption {
        type = types.listOf types.package;
        default = [ ];
      };
      # nixos/modules/system/etc/etc.nix: files under /etc, by name (the VM test's key files).
      # Of each entry's options only `text` and `mode` are modelled, with etc.nix's types and
      # defaults.
      environment.etc = mkOption {
        type = types.attrsOf (types.submodule etcOptions);
        default = { };
      };
      networking = {
        hostName = mkOption {
          type = types.str;
          default = "nixos";
        };
        # Set by nixos/lib/testing/network.nix for test nodes.
        primaryIPAddress = mkOption {
          type = types.str;
          default = "";
        };
        firewall = {
          enable = mkOption {
            type = types.bool;
            default = true;
          };
          allowedTCPPorts = mkOption {
            type = types.listOf types.port;
            default = [ ];
          };
          allowedUDPPorts = mkOption {
            type = types.listOf types.port;
            default = [ ];
          };
          extraCommands = mkOption {
            type = types.lines;
            default = "";
          };
        };
      };
      systemd.services = mkOption {
        type = types.attrsOf (types.submodule serviceOptions);
        default = { };
      };
      virtualisation = {
        memorySize = mkOption {
          type = types.ints.positive;
          default = 1024;
        };
        cores = mkOption {
          type = types.ints.positive;
          default = 1;
        };
        diskSize = mkOption {
          type = types.ints.positive;
          default = 1024;
        };
        vlans = mkOption {
          type = types.listOf types.ints.unsigned;
          default = [ 1 ];
        };
      };
      system.stateVersion = mkOption {
        type = types.str;
        default = "26.05";
      };
    };
  };

  # systemd's unit files in the real system; here: the evaluated values, serialised, so that
  # instantiating a node forces every option value (and fails on anything that would not
  # render, like a function in an ExecStart).
  renderNode =
    name: config:
    let
      failed = builtins.filter (a: !(a.assertion or (throw "stand-in: an assertion of node ${name} has no `assertion' attribute."))) config.assertions;
    in
    if failed != [ ] then
      throw "Failed assertions on node ${name}:\n- ${lib.concatMapStringsSep "\n- " (a: a.message) failed}"
    else
      mkDrv {
        name = "nixos-system-${name}";
        attrs.config = builtins.toJSON {
          inherit (config) networking environment virtualisation;
          systemd.services = lib.mapAttrs (
            _: s:
            s
            // {
              path = map toString s.path;
            }
          ) config.systemd.services;
        };
      };

  testOptions = {
    _file = "nix/stand-in/nixos.nix (test framework options)";
    options = {
      name = mkOption { type = types.str; };
      nodes = mkOption {
        type = types.lazyAttrsOf types.deferredModule;
        default = { };
      };
      defaults = mkOption {
        type = types.deferredModule;
        default = { };
      };
      testScript = mkOption { type = types.either types.str (types.functionTo types.str); };
      globalTimeout = mkOption {
        type = types.int;
        default = 3600;
      };
      skipLint = mkOption {
        type = types.bool;
        default = false;
      };
      skipTypeCheck = mkOption {
        type = types.bool;
        default = false;
      };
      enableOCR = mkOption {
        type = types.bool;
        default = false;
      };
      extraPythonPackages = mkOption {
        type = types.functionTo (types.listOf types.package);
        default = _: [ ];
      };
      meta = {
        maintainers = mkOption {
          type = types.listOf types.raw;
          default = [ ];
        };
        timeout = mkOption {
          type = types.nullOr types.int;
          default = null;
        };
      };
    };
  };

  utils = {
    # nixos/lib/utils.nix: quote one argument for systemd's Exec* lines.
    escapeSystemdExecArg =
      arg:
      let
        s =
          if builtins.isPath arg then
            "${arg}"
          else if builtins.isString arg then
            arg
          else if builtins.isInt arg || builtins.isFloat arg || lib.isDerivation arg then
            toString arg
          else
            throw "escapeSystemdExecArg only allows strings, paths, numbers and derivations";
      in
      builtins.replaceStrings [ "%" "$" ] [ "%%" "$$" ] (builtins.toJSON s);
    escapeSystemdExecArgs = lib.concatMapStringsSep " " utils.escapeSystemdExecArg;
  };

  runNixOSTest =
    testModule:
    let
      test =
        (lib.evalModules {
          modules = [
            testOptions
            testModule
          ];
          specialArgs = {
            hostPkgs = pkgs;
          };
        }).config;

      names = builtins.sort builtins.lessThan (builtins.attrNames test.nodes);
      numbered = lib.imap1 (index: name: { inherit index name; }) names;

      evalNode =
        { index, name }:
        (lib.evalModules {
          modules = [
            nixosOptions
            {
              _file = "nix/stand-in/nixos.nix (test network, like nixos/lib/testing/network.nix)";
              networking.hostName = lib.mkDefault name;
              networking.primaryIPAddress = "192.168.1.${toString index}";
            }
            test.defaults
            test.nodes.${name}
          ];
          specialArgs = {
            inherit pkgs utils nodes;
          };
        }).config;

      nodes = builtins.listToAttrs (
        map (n: {
          inherit (n) name;
          value = evalNode n;
        }) numbered
      );

      testScriptString =
        if lib.isFunction test.testScript then
          test.testScript (builtins.intersectAttrs (lib.functionArgs test.testScript) { inherit nodes; })
        else
          test.testScript;

      systems = map (name: renderNode name nodes.${name}) names;

      driver = mkDrv {
        name = "nixos-test-driver-${test.name}";
        attrs = {
          testScript = testScriptString;
          vmNames = names;
          inherit systems;
        };
        meta.mainProgram = "nixos-test-driver";
      };
    in
    mkDrv {
      name = "vm-test-run-${test.name}";
      attrs = {
        requiredSystemFeatures = [
          "nixos-test"
          "kvm"
        ];
        inherit driver;
      };
      passthru = {
        inherit driver nodes;
        config = test // {
          inherit testScriptString;
        };
      };
    };
in
{
  inherit runNixOSTest nixosOptions utils;
}
