# The whole cargo workspace, built once from the committed Cargo.lock: the `chainfire`,
# `flaredb`, `iam`, `plasmavmc`, `reconnect-runner`, `chainfire-ctl`, `flaredb-ctl` and `kv-bench` binaries,
# plus the scenario files and the gRPC .proto files (chainfire, flaredb, iam, plasmavmc) under
# share/reconnect-tests/ (the app runs the packaged scenarios; the VM test's gRPC client
# reads the packaged protos).
#
# Code generation uses protox (a pure-Rust protobuf compiler) in build.rs, so no `protoc` is
# needed here.
#
# The package does not run the cargo tests (`doCheck = false`): they start real multi-process
# clusters with timing bounds, and a user who only wants the binaries must not depend on them.
# It does prove its outputs: the install checks that every binary and every .proto is there.
#
# `cargoTests = true` (the flake's `checks.<system>.cargo-tests`) is the same build with the
# check phase on: `cargo test --workspace` against the binaries just built. The build sandbox
# has no network namespaces to spare and no iptables, so that check phase sets
# RECONNECT_TESTS_NO_NETNS=1: tests that need a network namespace or iptables skip themselves
# and print why. (`checks.scenarios` and the NixOS VM test, `packages.<system>.vm-tests`, run
# those faults for real.) python3 with botocore is there, so the cross-signer tests run.
{
  lib,
  rustPlatform,
  stdenv,
  python3,
  cargoTests ? false,
}:
let
  cargoManifest = lib.importTOML ../Cargo.toml;

  # Only what cargo and the tests read: manifests, the lock, the crates (sources, build.rs,
  # protos, tests) and the scenario folder (packaged, and read by the runner's tests). Editing
  # nix/, the README or CI files does not rebuild the package.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../chainfire
      ../flaredb
      ../iam
      ../plasmavmc
      ../runner
      ../bench
      ../scenarios
    ];
  };

  binaries = [
    "chainfire"
    "flaredb"
    "iam"
    "plasmavmc"
    "reconnect-runner"
    "chainfire-ctl"
    "flaredb-ctl"
    "kv-bench"
  ];

  # Fails the build unless every binary of the workspace is an executable in DIR (a shell word).
  requireBinaries = dir: ''
    for binary in ${lib.concatStringsSep " " binaries}; do
      if [ ! -x "${dir}/$binary" ]; then
        echo "reconnect-tests: expected the built $binary in ${dir}; the cargo output layout changed" >&2
        exit 1
      fi
    done
  '';
in
rustPlatform.buildRustPackage (
  {
    pname = if cargoTests then "reconnect-tests-cargo-tests" else "reconnect-tests";
    inherit (cargoManifest.workspace.package) version;
    inherit src;

    cargoLock.lockFile = ../Cargo.lock;

    doCheck = cargoTests;

    postInstall = ''
      ${requireBinaries "$out/bin"}
      share=$out/share/reconnect-tests
      mkdir -p "$share/proto"
      cp -r scenarios "$share/scenarios"
      find chainfire flaredb iam plasmavmc -path '*/proto/*.proto' -exec cp -t "$share/proto" {} +
      for proto in chainfire.proto flaredb.proto iam.proto plasmavmc.proto; do
        if [ ! -f "$share/proto/$proto" ]; then
          echo "reconnect-tests: $proto was not found under chainfire/, flaredb/, iam/ or plasmavmc/" >&2
          exit 1
        fi
      done
    '';

    meta = {
      description =
        if cargoTests then
          "The cargo test suite of reconnect-tests (cargo test --workspace; namespace/iptables tests skip in the sandbox)"
        else
          "ChainFire, FlareDB, IAM, PlasmaVMC and the reconnection test runner (real clusters, real faults, JUnit + evidence)";
      license = [
        lib.licenses.mit
        lib.licenses.asl20
      ];
      mainProgram = "reconnect-runner";
      platforms = lib.platforms.linux;
    };
  }
  // lib.optionalAttrs cargoTests {
    # Every member's tests, not only the default members.
    cargoTestFlags = [ "--workspace" ];
    # botocore signs the requests iam-sigv4 verifies and drives iam-server's whole API.
    nativeCheckInputs = [ (python3.withPackages (ps: [ ps.botocore ])) ];
    preCheck = ''
      # Contract with the test code: tests that need a network namespace or iptables skip
      # themselves (printing the reason) when this is set.
      export RECONNECT_TESTS_NO_NETNS=1
      # The binaries built in the build phase (release profile, --target layout, not
      # target/debug): the runner's --bin-dir reads RECONNECT_BIN_DIR, FlareDB's integration tests
      # read CHAINFIRE_BIN.
      export RECONNECT_BIN_DIR="$PWD/target/${stdenv.hostPlatform.rust.cargoShortTarget}/$cargoBuildType"
      export CHAINFIRE_BIN="$RECONNECT_BIN_DIR/chainfire"
      ${requireBinaries "$RECONNECT_BIN_DIR"}
      echo "reconnect-tests: RECONNECT_TESTS_NO_NETNS=1 - tests needing network namespaces or iptables are skipped in the Nix build sandbox (see 'skipped' lines below)"
    '';
  }
)
