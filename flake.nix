{
  description = "reconnect-tests: ChainFire, FlareDB, IAM, PlasmaVMC and a failure-injection runner with real faults, JUnit XML and evidence";

  # nixpkgs is the only input (nixos-26.05, rustc 1.95.0); see flake.lock for the pinned revision.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  # This file only wires things together; the expressions live in nix/.
  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # The workspace build and everything made from it, for one system.
      outputsFor =
        pkgs:
        let
          workspace = pkgs.callPackage ./nix/package.nix { };
          binaries = pkgs.callPackage ./nix/binaries.nix { inherit workspace; };
          app = pkgs.callPackage ./nix/app.nix { inherit workspace; };
        in
        {
          inherit workspace binaries app;
          devShell = pkgs.callPackage ./nix/devshell.nix { };
          # Everything `nix flake check` builds: no KVM needed.
          checks = {
            # The build alone (doCheck = false); its install checks every binary and .proto.
            package = workspace;
            # The same build with `cargo test --workspace` (namespace/iptables tests skip in the
            # sandbox and say so).
            cargo-tests = pkgs.callPackage ./nix/package.nix { cargoTests = true; };
            lint = pkgs.callPackage ./nix/checks/lint.nix { inherit workspace; };
            scenarios = pkgs.callPackage ./nix/checks/scenarios.nix { inherit workspace; };
          };
          # The 6-VM partition test needs KVM, so it is a package, not a check: `nix flake check`
          # evaluates packages but builds only checks. Run it with `nix build .#vm-tests -L`.
          vm-tests = pkgs.callPackage ./nix/tests/partition.nix {
            inherit workspace;
            inherit (self) nixosModules;
          };
        };
      perSystem = forAllSystems outputsFor;

      # A NixOS module plus, as the default `package`, this flake's build for the node's system.
      withPackage =
        service: modulePath:
        { lib, pkgs, ... }:
        {
          _file = "reconnect-tests flake.nix, nixosModules.${service}";
          imports = [ modulePath ];
          config.services.${service}.package =
            lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.${service};
        };
    in
    {
      packages = lib.mapAttrs (
        _: o:
        o.binaries
        // {
          default = o.workspace;
          inherit (o) vm-tests;
        }
      ) perSystem;

      apps = lib.mapAttrs (
        _: o:
        let
          app = {
            type = "app";
            program = lib.getExe o.app;
            meta.description = o.app.meta.description;
          };
        in
        {
          reconnect-tests = app;
          default = app;
        }
      ) perSystem;

      devShells = lib.mapAttrs (_: o: { default = o.devShell; }) perSystem;

      checks = lib.mapAttrs (_: o: o.checks) perSystem;

      nixosModules = {
        chainfire = withPackage "chainfire" ./nix/modules/chainfire.nix;
        flaredb = withPackage "flaredb" ./nix/modules/flaredb.nix;
        iam = withPackage "iam" ./nix/modules/iam.nix;
        plasmavmc = withPackage "plasmavmc" ./nix/modules/plasmavmc.nix;
      };
    };
}
