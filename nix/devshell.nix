# `nix develop`: the Rust toolchain of the pinned nixpkgs plus what the runner and the tests call:
# the fault-injection tools (iptables, ip, ps/pgrep, unshare/nsenter), Chromium for the browser
# tests of the timeline pictures (runner/tests/pictures.rs) and python3 with botocore for the
# cross-signer tests (iam-sigv4's independent_signers, iam-server's aws_clients), and etcd, the
# peer `kv-bench` measures ChainFire and FlareDB against. With them
# `nix develop -c cargo test --workspace` runs every test this machine allows (the ones needing
# namespaces/iptables need root or unprivileged user namespaces).
{
  mkShell,
  cargo,
  rustc,
  clippy,
  rustfmt,
  rust-analyzer,
  rustPlatform,
  iptables,
  iproute2,
  procps,
  util-linux,
  chromium,
  etcd,
  python3,
}:
mkShell {
  name = "reconnect-tests-dev";
  packages = [
    cargo
    rustc
    clippy
    rustfmt
    rust-analyzer
    iptables
    iproute2
    procps
    util-linux
    chromium
    etcd
    (python3.withPackages (ps: [ ps.botocore ]))
  ];
  # rust-analyzer finds the standard library sources here.
  env.RUST_SRC_PATH = "${rustPlatform.rustLibSrc}";
  shellHook = ''
    echo "reconnect-tests dev shell: $(rustc --version), $(cargo --version)"
    echo "  build:          cargo build --workspace"
    echo "  tests:          cargo test --workspace   (chromium and python3+botocore are here)"
    echo "  scenario suite: cargo build --workspace && ./target/debug/reconnect-runner run scenarios/"
    echo "                  (JUnit: reconnect-results/junit.xml, evidence: reconnect-results/)"
    echo "  pinned suite:   nix run .#reconnect-tests"
  '';
}
