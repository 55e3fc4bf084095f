# Rendering of option values into command-line flags, shared by the ChainFire and FlareDB
# modules.
{ lib }:
{
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
}
