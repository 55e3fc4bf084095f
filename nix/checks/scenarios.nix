# The scenario suite itself, run by the packaged runner inside the build sandbox.
#
# The runner puts every scenario in a private network namespace of its own (a user + network
# namespace, since builds do not run as root), so the design note's fixed ports and its iptables
# rules stay inside the build even where the Nix sandbox is off. Whatever the builder does not
# allow (no user namespaces, iptables unusable inside one) the runner reports as skipped with
# the reason, never as passed, and then exits 3 ("incomplete"): a builder that cannot run the
# suite fails this check instead of passing it on nothing. Every TEST cell must run and pass
# (exit code 0). The JUnit report and the evidence folder are the check's output.
{
  runCommand,
  iptables,
  iproute2,
  workspace,
}:
runCommand "reconnect-tests-scenarios-${workspace.version}"
  {
    nativeBuildInputs = [
      workspace
      iptables
      iproute2
    ];
  }
  ''
    mkdir -p $out
    status=0
    reconnect-runner run ${workspace}/share/reconnect-tests/scenarios \
      --junit $out/junit.xml --evidence $out/evidence || status=$?
    case $status in
      0) ;;
      3) echo "incomplete: this builder could not run every TEST cell (see the warnings above: namespaces or iptables); nothing was proven for them" ;;
    esac
    echo "reconnect-runner exited with $status; JUnit: $out/junit.xml"
    exit $status
  ''
