# `nix run .#reconnect-tests`: runs the packaged scenario suite with the pinned binaries.
#
# Puts chainfire, flaredb, iam, plasmavmc, reconnect-runner, iptables and iproute2 on PATH and runs
#   reconnect-runner run <packaged scenarios> [ARGS...]
# in the current directory, so JUnit and evidence land in ./reconnect-results/ (the runner's
# defaults). Arguments after `--` go to `reconnect-runner run` unchanged, e.g.
#   nix run .#reconnect-tests -- --filter S3 --junit out/junit.xml --evidence out/
# RECONNECT_SCENARIOS=DIR runs another scenario folder (for example a checkout's scenarios/).
# The runner's exit code is the app's: 0 all TEST cells passed, 1 a failure, 2 bad input,
# 3 incomplete (a TEST cell could not run here; `-- --allow-skips` accepts that).
{
  writeShellApplication,
  iptables,
  iproute2,
  workspace,
}:
writeShellApplication {
  name = "reconnect-tests";
  runtimeInputs = [
    workspace
    iptables
    iproute2
  ];
  text = ''
    scenarios="''${RECONNECT_SCENARIOS:-${workspace}/share/reconnect-tests/scenarios}"
    echo "reconnect-tests: scenarios from $scenarios; results in ./reconnect-results/ unless --junit/--evidence say otherwise" >&2
    exec reconnect-runner run "$scenarios" "$@"
  '';
  meta.description = "Run the reconnection scenario suite (JUnit + evidence in ./reconnect-results/)";
}
