# The offline stand-in for nixpkgs (see README.md next to this file): `lib` and
# `legacyPackages.<system>` for the two systems the flake supports, nothing more.
let
  lib = import ./lib;
  systems = [
    "x86_64-linux"
    "aarch64-linux"
  ];
in
{
  inherit lib;
  legacyPackages = lib.genAttrs systems (system: import ./pkgs.nix { inherit lib system; });
}
