# Flake wrapper of the offline stand-in for nixpkgs. Used only as
#   nix flake check --override-input nixpkgs path:$PWD/nix/stand-in ...
# by nix/ci-check.sh; never as a real input.
{
  description = "Offline stand-in for the parts of nixpkgs that reconnect-tests' flake uses";
  outputs = _: import ./default.nix;
}
