# The scenario suite itself, run by the packaged runner inside the build sandbox.
#
# The runner puts every scenario in a private network namespace of its own (a user + network
# namespace, since builds do not run as root), so the design note's fixed ports and its iptables
# rules stay inside the build even where the Nix sandbox is off.
#
# Never a green that tested nothing:
#  1. `reconnect-runner validate` checks every packaged scenario file and the matrix (syntax,
#     fields, step kinds, references) without starting anything; bad input fails the check.
#  2. The builder's limits are probed and stated in the log (user + network namespaces, iptables
#     inside one): what this machine can and cannot do, before anything runs.
#  3. `reconnect-runner run` (without --allow-skips) runs every scenario. Exit 0 only when every
#     TEST cell ran and passed. A TEST cell the builder could not run (no namespaces, no
#     iptables) is reported as skipped with the reason, never as passed, and the runner exits 3
#     ("incomplete"): this check then FAILS, naming the skipped cells and the builder's limits.
# The JUnit report, the evidence folder and the run's log are the check's output.
{
  runCommand,
  iptables,
  iproute2,
  util-linux,
  workspace,
}:
runCommand "reconnect-tests-scenarios-${workspace.version}"
  {
    nativeBuildInputs = [
      workspace
      iptables
      iproute2
      util-linux
    ];
  }
  ''
    scenarios=${workspace}/share/reconnect-tests/scenarios
    mkdir -p "$out"

    echo "== reconnect-tests: validating the packaged scenarios ($scenarios)"
    status=0
    reconnect-runner validate "$scenarios" || status=$?
    if [ "$status" -ne 0 ]; then
      echo "reconnect-tests: FAILED: 'reconnect-runner validate' rejected the scenarios (exit $status); nothing was run" >&2
      exit "$status"
    fi

    echo "== reconnect-tests: what this builder allows (informational; the runner decides)"
    limits=""
    if unshare --user --map-root-user --net true 2>/dev/null; then
      echo "  user + network namespaces: available"
      if unshare --user --map-root-user --net iptables -w -n -L OUTPUT >/dev/null 2>&1; then
        echo "  iptables inside a user + network namespace: usable"
      else
        echo "  iptables inside a user + network namespace: NOT usable"
        limits="iptables is not usable inside a user + network namespace"
      fi
    else
      echo "  user + network namespaces: NOT available (unshare --user --net failed)"
      limits="no user + network namespaces (so no private network and no iptables)"
    fi

    echo "== reconnect-tests: running the scenario suite"
    # Streamed to the log and kept in $out/run.log; the runner's exit code, not tee's, counts.
    set +e
    reconnect-runner run "$scenarios" \
      --junit "$out/junit.xml" --evidence "$out/evidence" 2>&1 | tee "$out/run.log"
    status=''${PIPESTATUS[0]}
    set -e
    case $status in
      0)
        echo "reconnect-tests: every TEST cell ran and passed; JUnit: $out/junit.xml"
        ;;
      3)
        echo "reconnect-tests: FAILED (incomplete, exit 3): this builder could not run every TEST cell, so nothing was proven for them." >&2
        echo "  builder limits: ''${limits:-none found by the probes above, see the warnings of the runner}" >&2
        echo "  skipped, as the runner reported them:" >&2
        grep -i 'skip' "$out/run.log" | sed 's/^/    /' >&2 || true
        echo "  Run the suite where namespaces and iptables work: 'nix run .#reconnect-tests' (as root, or with unprivileged user namespaces), or 'nix build .#vm-tests -L' (KVM) for the cross-VM partition test." >&2
        ;;
      *)
        echo "reconnect-tests: FAILED: reconnect-runner exited with $status (1: a TEST cell failed, 2: bad input or missing binary, 130: interrupted); JUnit: $out/junit.xml" >&2
        ;;
    esac
    exit "$status"
  ''
