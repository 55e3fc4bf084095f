# One small package per binary (`packages.<system>.chainfire`, `.flaredb`, `.iam`, `.plasmavmc`,
# `.reconnect-runner`) so that `nix run .#chainfire` and `lib.getExe` work per binary. They link
# into the single workspace build (package.nix) instead of compiling the workspace once per
# binary. The runner still finds `chainfire` and `flaredb` next to its resolved path.
{
  lib,
  runCommand,
  workspace,
}:
lib.genAttrs
  [
    "chainfire"
    "flaredb"
    "iam"
    "plasmavmc"
    "reconnect-runner"
  ]
  (
    binary:
    runCommand "${binary}-${workspace.version}"
      {
        meta = workspace.meta // {
          mainProgram = binary;
        };
      }
      ''
        mkdir -p $out/bin
        ln -s ${workspace}/bin/${binary} $out/bin/${binary}
      ''
  )
