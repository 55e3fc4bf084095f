# `nix develop`: the Rust toolchain of the pinned nixpkgs plus the fault-injection tools the
# runner and the tests call (iptables, ip, ps/pgrep, unshare/nsenter).
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
  ];
  # rust-analyzer finds the standard library sources here.
  env.RUST_SRC_PATH = "${rustPlatform.rustLibSrc}";
  shellHook = ''
    echo "reconnect-tests dev shell: $(rustc --version), $(cargo --version)"
    echo "  build:          cargo build --workspace"
    echo "  tests:          cargo test --workspace"
    echo "  scenario suite: cargo build --workspace && ./target/debug/reconnect-runner run scenarios/"
    echo "                  (JUnit: reconnect-results/junit.xml, evidence: reconnect-results/)"
    echo "  pinned suite:   nix run .#reconnect-tests"
  '';
}
