# `cargo fmt --check` and `cargo clippy --all-targets -D warnings` over the workspace, offline,
# with the crates vendored from Cargo.lock (the same source set as the package).
{
  stdenv,
  rustPlatform,
  cargo,
  rustc,
  clippy,
  rustfmt,
  workspace,
}:
stdenv.mkDerivation {
  pname = "reconnect-tests-lint";
  inherit (workspace) version src;
  cargoDeps = rustPlatform.importCargoLock { lockFile = ../../Cargo.lock; };
  nativeBuildInputs = [
    rustPlatform.cargoSetupHook
    cargo
    rustc
    clippy
    rustfmt
  ];
  buildPhase = ''
    runHook preBuild
    cargo fmt --all --check
    cargo clippy --workspace --all-targets --frozen -- -D warnings
    runHook postBuild
  '';
  installPhase = ''
    runHook preInstall
    touch $out
    runHook postInstall
  '';
}
