#!/usr/bin/env bash
# Offline checks of the Nix flake, for CI machines without a binary cache or network
# (Debian's `nix-bin` is enough: `apt-get install -y nix-bin`, run as root).
#
# What this proves: every .nix file parses; flake.lock pins exactly the nixpkgs revision of the
# issue and matches flake.nix; with nixpkgs replaced by the strict stand-in under nix/stand-in/
# (exactly the nixpkgs attributes the flake uses, nothing that accepts anything), the whole
# flake evaluates on both systems (`nix flake check --no-build`, `nix flake show`), its outputs
# are exactly the promised ones (checks without the VM test, which is packages.vm-tests; no
# check needs KVM), the app's program is a bash script that parses and runs the packaged suite,
# the dev shell has its tools (Chromium, python3 with botocore too), the package builds with
# doCheck = false and checks for every binary and copies every .proto (PlasmaVMC's too), the
# cargo tests are checks.cargo-tests (the same source and vendored crates, the sandbox env),
# checks.scenarios validates first and fails on a skipped TEST cell (its build script is run
# here against a stub runner), the NixOS modules render the right command
# lines (also on the VM test's machines: ChainFire, FlareDB, IAM with its client and key
# files, and PlasmaVMC on flaredb2 and flaredb3 pointed at the test's FlareDB, ChainFire and
# IAM gRPC addresses, with no credential; and PlasmaVMC's unit, with the guest-preserving
# KillMode=process and its persistent StateDirectory), the VM test's Python script parses and
# is lint-clean; and the stand-in really rejects misspellings (negative checks, including
# misspellings planted in a copy of the flake).
#
# What it does NOT prove: that anything builds or passes against the real nixpkgs. Nothing is
# built here. Run `nix flake check -L` (no KVM needed) and `nix build .#vm-tests -L` (KVM) on a
# machine with a current Nix and network for that.
#
# The flake only sees files tracked by git: commit (or at least `git add`) before running.
# Usage: bash nix/ci-check.sh        (from anywhere inside the repository)
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo" || exit 2

nix_cmd=(nix --extra-experimental-features "nix-command flakes")
standin_override=(--override-input nixpkgs "path:$repo/nix/stand-in" --no-write-lock-file)
systems=(x86_64-linux aarch64-linux)

work=$(mktemp -d "${TMPDIR:-/tmp}/nix-ci-check.XXXXXX")
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
skipped=0

pass() {
  passed=$((passed + 1))
  echo "ok   - $1"
}

fail() {
  failed=$((failed + 1))
  echo "FAIL - $1"
  if [ -s "$work/output" ]; then
    tail -n 25 "$work/output" | sed 's/^/       | /'
  fi
}

skip() {
  skipped=$((skipped + 1))
  echo "skip - $1"
}

# check DESCRIPTION COMMAND...: passes when the command succeeds.
check() {
  local description=$1
  shift
  if "$@" >"$work/output" 2>&1; then
    pass "$description"
  else
    fail "$description"
  fi
}

# check_fails DESCRIPTION EXPECTED-TEXT COMMAND...: passes when the command fails AND its
# output contains EXPECTED-TEXT (so it failed for the planted reason, not another one).
check_fails() {
  local description=$1 expected=$2
  shift 2
  if "$@" >"$work/output" 2>&1; then
    echo "(the command succeeded, but it had to fail with: $expected)" >>"$work/output"
    fail "$description"
  elif grep -qF -- "$expected" "$work/output"; then
    pass "$description"
  else
    echo "(it failed, but without the expected text: $expected)" >>"$work/output"
    fail "$description"
  fi
}

# Evaluates a flake attribute against the stand-in. Extra args (e.g. --apply) follow.
flake_eval() {
  local flake=$1 attr=$2
  shift 2
  "${nix_cmd[@]}" eval "${standin_override[@]}" "$flake#$attr" "$@" 2>"$work/eval-stderr"
}

# Same, for a path: flake elsewhere (a mutated copy) with its own stand-in.
copy_flake_check() {
  local copy=$1
  "${nix_cmd[@]}" flake check --no-build --override-input nixpkgs "path:$copy/nix/stand-in" \
    --no-write-lock-file "path:$copy"
}

expect_equal() { # expect_equal WHAT EXPECTED ACTUAL
  if [ "$2" = "$3" ]; then
    return 0
  fi
  printf '%s\n  expected: %s\n  actual:   %s\n' "$1" "$2" "$3"
  return 1
}

echo "== Nix offline checks in $repo"
if ! command -v nix >/dev/null || ! command -v nix-instantiate >/dev/null; then
  echo "nix and nix-instantiate are needed (Debian: apt-get install -y nix-bin)" >&2
  echo "nix offline checks: 0 passed, 1 failed, 0 skipped"
  exit 2
fi
echo "   $(nix --version); the real nixpkgs is replaced by nix/stand-in (nothing is built)"

# --- 1. The flake sees what it needs: flakes only see files tracked by git.
echo "== git: the flake's files are tracked"
tracked_ok() {
  git -C "$repo" rev-parse --is-inside-work-tree >/dev/null || return 1
  git -C "$repo" ls-files --error-unmatch flake.nix flake.lock Cargo.toml Cargo.lock nix scenarios >/dev/null || return 1
  local untracked
  untracked=$(git -C "$repo" ls-files --others --exclude-standard -- flake.nix flake.lock nix Cargo.toml Cargo.lock chainfire flaredb iam plasmavmc runner scenarios)
  if [ -n "$untracked" ]; then
    printf 'untracked files the flake would not see (git add them):\n%s\n' "$untracked"
    return 1
  fi
}
check "flake.nix, flake.lock, nix/, the workspace and scenarios/ are tracked by git" tracked_ok

# --- 2. Every .nix file parses.
echo "== parse: nix-instantiate --parse"
mapfile -t nix_files < <(git -C "$repo" ls-files --cached --others --exclude-standard -- '*.nix' | sort -u)
if [ "${#nix_files[@]}" -eq 0 ]; then
  echo "no .nix files found" >"$work/output"
  fail "there are .nix files to parse"
fi
for file in "${nix_files[@]}"; do
  check "parses: $file" nix-instantiate --parse "$file"
done

# --- 3. The pin.
echo "== flake.lock: nixpkgs pinned as issue 5 says, and consistent with flake.nix"
lock_matches_pin() {
  # shellcheck disable=SC2016 # a Nix expression: ${...} is Nix's, not the shell's
  nix-instantiate --eval --strict --json -E '
    let
      lock = builtins.fromJSON (builtins.readFile ./flake.lock);
      expect = name: actual: wanted:
        if actual == wanted then [ ] else [ "${name}: ${builtins.toJSON actual} (wanted ${builtins.toJSON wanted})" ];
      node = lock.nodes.nixpkgs or { };
    in
      expect "lock version" (lock.version or null) 7
      ++ expect "root inputs (nixpkgs must be the only one)" (lock.nodes.${lock.root}.inputs or null) { nixpkgs = "nixpkgs"; }
      ++ expect "lock nodes" (builtins.attrNames lock.nodes) [ "nixpkgs" "root" ]
      ++ expect "nixpkgs.locked" (node.locked or null) {
           type = "github"; owner = "NixOS"; repo = "nixpkgs";
           rev = "74cc63f702f7d60a557e152a57b40fb1fd0f72ac";
           narHash = "sha256-0XnckG4ZhBmAsYa9mLuEIFowBG0fDGPLHduQGsbMS4A=";
           lastModified = 1783549019;
         }
      ++ expect "nixpkgs.original" (node.original or null) {
           type = "github"; owner = "NixOS"; repo = "nixpkgs"; ref = "nixos-26.05";
         }
  ' >"$work/lock-problems" || return 1
  if [ "$(cat "$work/lock-problems")" != "[]" ]; then
    cat "$work/lock-problems"
    return 1
  fi
}
check "flake.lock (version 7) pins github:NixOS/nixpkgs/nixos-26.05 at 74cc63f7, narHash and lastModified as specified; no other input" lock_matches_pin
# Without the override: Nix parses the lock and finds nothing to update (no network needed).
check "flake.lock is up to date with flake.nix (nix flake metadata --offline --no-update-lock-file)" \
  "${nix_cmd[@]}" flake metadata --offline --no-update-lock-file --json "$repo"

# --- 4. The whole flake evaluates against the stand-in.
echo "== evaluation against the stand-in nixpkgs (nix/stand-in)"
check "nix flake check --no-build (both systems: packages incl. the VM test, apps, devShells, checks, nixosModules)" \
  "${nix_cmd[@]}" flake check --no-build "${standin_override[@]}" "$repo"
check "nix flake show" "${nix_cmd[@]}" flake show "${standin_override[@]}" "$repo"

outputs_exact() {
  local names='builtins.mapAttrs (system: outputs: builtins.attrNames outputs)'
  local wanted actual output
  for output in packages apps devShells checks; do
    case $output in
      packages) wanted='["chainfire","default","flaredb","iam","plasmavmc","reconnect-runner","vm-tests"]' ;;
      apps) wanted='["default","reconnect-tests"]' ;;
      devShells) wanted='["default"]' ;;
      checks) wanted='["cargo-tests","lint","package","scenarios"]' ;;
    esac
    actual=$(flake_eval "$repo" "$output" --json --apply "$names") || return 1
    expect_equal "$output" "{\"aarch64-linux\":$wanted,\"x86_64-linux\":$wanted}" "$actual" || return 1
  done
  actual=$(flake_eval "$repo" nixosModules --json --apply builtins.attrNames) || return 1
  expect_equal nixosModules '["chainfire","flaredb","iam","plasmavmc"]' "$actual"
}
check "outputs are exactly packages.{chainfire,flaredb,iam,plasmavmc,reconnect-runner,default,vm-tests}, apps.{reconnect-tests,default}, devShells.default, checks.{package,cargo-tests,lint,scenarios} on x86_64-linux and aarch64-linux, nixosModules.{chainfire,flaredb,iam,plasmavmc}" outputs_exact

# `nix flake check` builds only `checks` (packages, apps and devShells are evaluated, not built):
# none of them may need KVM, and the VM test (a package now) is the one that does.
for system in "${systems[@]}"; do
  kvm_ok() {
    local features
    features=$(flake_eval "$repo" "checks.$system" --json \
      --apply 'builtins.mapAttrs (name: check: check.requiredSystemFeatures or [ ])') || return 1
    expect_equal "checks.$system requiredSystemFeatures" '{"cargo-tests":[],"lint":[],"package":[],"scenarios":[]}' "$features" || return 1
    features=$(flake_eval "$repo" "packages.$system.vm-tests.requiredSystemFeatures" --json) || return 1
    expect_equal "packages.$system.vm-tests requiredSystemFeatures" '["nixos-test","kvm"]' "$features"
  }
  check "checks.$system: no check needs kvm or nixos-test (nix flake check runs without /dev/kvm); packages.$system.vm-tests is the VM test (nixos-test, kvm)" kvm_ok
done

# --- 5. The app.
echo "== apps: the program"
for system in "${systems[@]}"; do
  app_ok() {
    local program default drv text
    program=$(flake_eval "$repo" "apps.$system.reconnect-tests.program" --raw) || return 1
    default=$(flake_eval "$repo" "apps.$system.default.program" --raw) || return 1
    expect_equal "apps.default is apps.reconnect-tests" "$program" "$default" || return 1
    [[ $program =~ ^/nix/store/[a-z0-9]{32}-reconnect-tests/bin/reconnect-tests$ ]] ||
      { echo "unexpected program path: $program"; return 1; }
    # The derivation behind the program (from the string's context), and its script text.
    drv=$(flake_eval "$repo" "apps.$system.reconnect-tests.program" --raw \
      --apply 'p: builtins.head (builtins.attrNames (builtins.getContext p))') || return 1
    text=$(nix-store --query --binding text "$drv") || return 1
    printf '%s\n' "$text" >"$work/app-$system.sh"
    bash -n "$work/app-$system.sh" || return 1
    # shellcheck disable=SC2016 # the literal line of the generated script
    grep -q 'exec reconnect-runner run "$scenarios" "$@"' "$work/app-$system.sh" ||
      { echo "the script does not pass its arguments to 'reconnect-runner run'"; return 1; }
    grep -q '/share/reconnect-tests/scenarios' "$work/app-$system.sh" ||
      { echo "the script does not default to the packaged scenarios"; return 1; }
    grep -Eq '^export PATH=".*-reconnect-tests-[^/]*/bin:.*-iptables-[^/]*/bin:.*-iproute2-[^/]*/bin' "$work/app-$system.sh" ||
      { echo "PATH does not hold the binaries, iptables and iproute2"; return 1; }
  }
  check "apps.$system.{reconnect-tests,default}: one store program; its bash script parses, puts binaries + iptables + iproute2 on PATH, runs the packaged scenarios, passes extra args" app_ok
done
if command -v shellcheck >/dev/null; then
  check "the app's script is shellcheck-clean (x86_64-linux)" shellcheck -s bash "$work/app-x86_64-linux.sh"
else
  skip "shellcheck of the app's script (shellcheck not installed; writeShellApplication runs it in the real build)"
fi

# python_with_botocore ATTR: the list ATTR holds exactly one python3-...-env (what
# python3.withPackages makes) and that derivation's inputs include a botocore derivation.
python_with_botocore() {
  local drvs
  drvs=$(flake_eval "$repo" "$1" --raw \
    --apply 'ps: builtins.concatStringsSep " " (map (p: p.drvPath) (builtins.filter (p: builtins.match "python3-.*-env" p.name != null) ps))') || return 1
  [[ -n $drvs && $drvs != *" "* ]] || { echo "$1: not exactly one python3 environment: '$drvs'"; return 1; }
  nix-store --query --references "$drvs" | grep -q -- '-botocore-.*\.drv$' ||
    { echo "$1: the python3 environment ($drvs) does not depend on botocore"; return 1; }
}

# --- 6. The dev shell.
echo "== devShells: the tools"
for system in "${systems[@]}"; do
  devshell_ok() {
    local names hook tool
    names=$(flake_eval "$repo" "devShells.$system.default.nativeBuildInputs" --json \
      --apply 'map (p: p.pname or p.name)') || return 1
    for tool in cargo rustc clippy rustfmt rust-analyzer iptables iproute2 procps util-linux chromium etcd; do
      [[ $names == *"\"$tool\""* ]] || { echo "missing $tool in $names"; return 1; }
    done
    # python3.withPackages (ps: [ ps.botocore ]): an environment named python3-...-env whose
    # derivation depends on botocore's.
    python_with_botocore "devShells.$system.default.nativeBuildInputs" || return 1
    hook=$(flake_eval "$repo" "devShells.$system.default.shellHook" --raw) || return 1
    [[ $hook == *"cargo test"* && $hook == *"reconnect-runner run"* && $hook == *"nix run .#reconnect-tests"* ]] ||
      { echo "the shell hook does not say how to run the suite: $hook"; return 1; }
  }
  check "devShells.$system.default has cargo, rustc, clippy, rustfmt, rust-analyzer, iptables, iproute2, procps, util-linux, chromium, etcd, python3 with botocore and a hook that says how to run the suite" devshell_ok
done

# --- 7. The package: the sandbox contract and the source set.
echo "== packages: build contract"
package_ok() {
  local pre src entry value
  value=$(flake_eval "$repo" packages.x86_64-linux.default.doCheck --json) || return 1
  expect_equal "packages.default.doCheck" false "$value" || return 1
  value=$(flake_eval "$repo" packages.x86_64-linux.default --apply 'p: p ? preCheck' --json) || return 1
  expect_equal "packages.default has a preCheck (dead code with doCheck = false)" false "$value" || return 1
  value=$(flake_eval "$repo" checks.x86_64-linux.package.drvPath --raw) || return 1
  expect_equal "checks.package is packages.default" "$(flake_eval "$repo" packages.x86_64-linux.default.drvPath --raw)" "$value" || return 1
  value=$(flake_eval "$repo" checks.x86_64-linux.cargo-tests --json \
    --apply 'c: [ c.doCheck c.cargoTestFlags c.name ]') || return 1
  expect_equal "checks.cargo-tests doCheck, cargoTestFlags, name" '[true,"--workspace","reconnect-tests-cargo-tests-0.1.0"]' "$value" || return 1
  for value in src cargoDeps.drvPath; do
    expect_equal "checks.cargo-tests.$value is the package's" \
      "$(flake_eval "$repo" "packages.x86_64-linux.default.$value" --raw)" \
      "$(flake_eval "$repo" "checks.x86_64-linux.cargo-tests.$value" --raw)" || return 1
  done
  python_with_botocore checks.x86_64-linux.cargo-tests.nativeCheckInputs || return 1
  pre=$(flake_eval "$repo" checks.x86_64-linux.cargo-tests.preCheck --raw) || return 1
  for variable in RECONNECT_TESTS_NO_NETNS=1 RECONNECT_BIN_DIR= CHAINFIRE_BIN=; do
    [[ $pre == *"export $variable"* ]] || { echo "checks.cargo-tests' preCheck does not export $variable"; return 1; }
  done
  src=$(flake_eval "$repo" packages.x86_64-linux.default.src --raw) || return 1
  for entry in Cargo.toml Cargo.lock chainfire flaredb iam plasmavmc runner scenarios plasmavmc/crates/plasmavmc-client/proto/plasmavmc.proto; do
    [ -e "$src/$entry" ] || { echo "the source set lacks $entry"; return 1; }
  done
  for entry in nix flake.nix flake.lock target .ci; do
    [ ! -e "$src/$entry" ] || { echo "the source set should not hold $entry"; return 1; }
  done
}
check "the package builds with doCheck = false (no preCheck); checks.cargo-tests is the same source and vendored crates with doCheck, --workspace, python3+botocore, and a preCheck exporting RECONNECT_TESTS_NO_NETNS=1, RECONNECT_BIN_DIR and CHAINFIRE_BIN; the source holds the workspace (plasmavmc/ and plasmavmc.proto too) and scenarios/, not nix/, flake.* or target/" package_ok

# Every binary is checked for after the build, every .proto is copied and checked for.
package_installs_ok() {
  local pre post
  local loop='for binary in chainfire flaredb iam plasmavmc reconnect-runner chainfire-ctl flaredb-ctl kv-bench; do'
  pre=$(flake_eval "$repo" checks.x86_64-linux.cargo-tests.preCheck --raw) || return 1
  # shellcheck disable=SC2016 # literal text of the build script
  [[ $pre == *"$loop"*'if [ ! -x "$RECONNECT_BIN_DIR/$binary" ]; then'* ]] ||
    { echo "checks.cargo-tests' preCheck does not check for every built binary (plasmavmc included) in RECONNECT_BIN_DIR: $pre"; return 1; }
  post=$(flake_eval "$repo" packages.x86_64-linux.default.postInstall --raw) || return 1
  # shellcheck disable=SC2016 # literal text of the build script
  [[ $post == *"$loop"*'if [ ! -x "$out/bin/$binary" ]; then'* ]] ||
    { echo "postInstall does not check for every installed binary (plasmavmc included) in \$out/bin: $post"; return 1; }
  [[ $post == *"find chainfire flaredb iam plasmavmc -path '*/proto/*.proto' -exec cp -t \"\$share/proto\" {} +"* ]] ||
    { echo "postInstall does not copy the protos from chainfire/, flaredb/, iam/ and plasmavmc/: $post"; return 1; }
  [[ $post == *"for proto in chainfire.proto flaredb.proto iam.proto plasmavmc.proto; do"* ]] ||
    { echo "postInstall does not check that plasmavmc.proto (and the others) were copied: $post"; return 1; }
}
check "the package checks for every installed binary (plasmavmc too; cargo-tests for every built one before testing) and copies and checks chainfire.proto, flaredb.proto, iam.proto and plasmavmc.proto into share/reconnect-tests/proto" package_installs_ok

for system in "${systems[@]}"; do
  plasmavmc_package_ok() {
    local main command
    main=$(flake_eval "$repo" "packages.$system.plasmavmc.meta.mainProgram" --raw) || return 1
    expect_equal "packages.$system.plasmavmc.meta.mainProgram" plasmavmc "$main" || return 1
    command=$(flake_eval "$repo" "packages.$system.plasmavmc.buildCommand" --raw) || return 1
    [[ $command =~ ln\ -s\ /nix/store/[a-z0-9]{32}-reconnect-tests-[^/]*/bin/plasmavmc\ \$out/bin/plasmavmc ]] ||
      { echo "packages.$system.plasmavmc does not link the workspace's bin/plasmavmc: $command"; return 1; }
  }
  check "packages.$system.plasmavmc links the workspace build's bin/plasmavmc (mainProgram plasmavmc)" plasmavmc_package_ok
done

snippets_parse() {
  local attr
  for attr in checks.x86_64-linux.cargo-tests.preCheck packages.x86_64-linux.default.postInstall \
    checks.x86_64-linux.lint.buildPhase checks.x86_64-linux.scenarios.buildCommand \
    devShells.x86_64-linux.default.shellHook packages.x86_64-linux.chainfire.buildCommand \
    packages.x86_64-linux.plasmavmc.buildCommand; do
    flake_eval "$repo" "$attr" --raw >"$work/snippet.sh" || { echo "cannot evaluate $attr"; return 1; }
    [ -s "$work/snippet.sh" ] || { echo "$attr is empty"; return 1; }
    bash -n "$work/snippet.sh" || { echo "$attr does not parse as bash"; return 1; }
  done
}
check "the shell snippets in the package (postInstall), cargo-tests (preCheck), the checks, the split packages and the shell hook parse (bash -n)" snippets_parse

# checks.scenarios: its build script, run here against a stub reconnect-runner (and a stub
# unshare that says no namespaces), under stdenv's `set -eu -o pipefail`. It must validate first,
# fail on exit 3 (a skipped TEST cell) naming the builder's limits and the skipped cells, fail on
# a failed validation without running anything, and pass only when the run exits 0.
scenarios_script() { # scenarios_script VALIDATE-EXIT RUN-EXIT -> the script's exit code; log in $work/scenarios.log
  local stub="$work/scenarios-stub" out="$work/scenarios-out"
  rm -rf "$stub" "$out"
  mkdir -p "$stub"
  cat >"$stub/reconnect-runner" <<STUB
#!/usr/bin/env bash
echo "stub reconnect-runner \$*" >>"$stub/calls"
case \$1 in
  validate) echo "ok: 5 scenario(s)"; exit $1 ;;
  run) echo "S3/chainfire  SKIP  skipped: needs network namespaces (stub)"; exit $2 ;;
esac
exit 99
STUB
  printf '#!/bin/sh\nexit 1\n' >"$stub/unshare"
  chmod +x "$stub/reconnect-runner" "$stub/unshare"
  flake_eval "$repo" checks.x86_64-linux.scenarios.buildCommand --raw >"$work/scenarios.sh" || return 98
  out="$out" PATH="$stub:$PATH" bash -eu -o pipefail "$work/scenarios.sh" >"$work/scenarios.log" 2>&1
}
scenarios_ok() {
  local status
  scenarios_script 0 3 && { echo "a run that exits 3 (a TEST cell skipped) passed the check"; return 1; }
  status=$?
  expect_equal "exit code when the run is incomplete" 3 "$status" || { cat "$work/scenarios.log"; return 1; }
  grep -qF 'FAILED (incomplete, exit 3)' "$work/scenarios.log" &&
    grep -qF 'builder limits: no user + network namespaces' "$work/scenarios.log" &&
    grep -qF 'S3/chainfire  SKIP  skipped: needs network namespaces (stub)' "$work/scenarios.log" ||
    { echo "the incomplete run's log does not name the limits and the skipped cell:"; cat "$work/scenarios.log"; return 1; }
  grep -q 'stub reconnect-runner validate ' "$work/scenarios-stub/calls" ||
    { echo "the scenarios were not validated"; return 1; }
  if grep -q -- '--allow-skips' "$work/scenarios-stub/calls"; then
    echo "the run accepts skips"; return 1
  fi
  scenarios_script 2 0 && { echo "a failed validation passed the check"; return 1; }
  status=$?
  expect_equal "exit code when validation fails" 2 "$status" || { cat "$work/scenarios.log"; return 1; }
  if grep -q 'stub reconnect-runner run ' "$work/scenarios-stub/calls"; then
    echo "the suite ran after a failed validation"; return 1
  fi
  scenarios_script 0 1 && { echo "a failed run passed the check"; return 1; }
  status=$?
  expect_equal "exit code when a TEST cell failed" 1 "$status" || { cat "$work/scenarios.log"; return 1; }
  scenarios_script 0 0 || { echo "a complete, passing run failed the check (exit $?):"; cat "$work/scenarios.log"; return 1; }
  [ -s "$work/scenarios-out/run.log" ] || { echo "no run.log in \$out"; return 1; }
}
check "checks.scenarios (its build script run against a stub runner): validates first; a skipped TEST cell (exit 3) fails it, naming the builder's limits and the skipped cells; a failed validation (2) or a failed cell (1) fails it; only exit 0 passes; never --allow-skips" scenarios_ok

# --- 8. NixOS modules, as used by the VM test.
echo "== nixosModules and the VM test"
modules_ok() {
  local node id exec
  for id in 1 2 3; do
    exec=$(flake_eval "$repo" "packages.x86_64-linux.vm-tests.nodes.chainfire$id.systemd.services.chainfire.serviceConfig.ExecStart" --raw) || return 1
    [[ $exec == *'/bin/chainfire" "--id" "'$id'" "--client-addr" "192.168.1.'$id':2379" "--peer-addr" "192.168.1.'$id':2380" "--initial-cluster" "1=192.168.1.1:2380,2=192.168.1.2:2380,3=192.168.1.3:2380"'* ]] ||
      { echo "chainfire$id ExecStart: $exec"; return 1; }
    node=$((id + 3))
    exec=$(flake_eval "$repo" "packages.x86_64-linux.vm-tests.nodes.flaredb$id.systemd.services.flaredb.serviceConfig.ExecStart" --raw) || return 1
    [[ $exec == *'/bin/flaredb" "--id" "'$id'" "--addr" "192.168.1.'$node':5000" "--peer-addr" "192.168.1.'$node':5001" "--peers" "1=192.168.1.4:5001,2=192.168.1.5:5001,3=192.168.1.6:5001" "--pd-endpoints" "192.168.1.1:2379,192.168.1.2:2379,192.168.1.3:2379"'* ]] ||
      { echo "flaredb$id ExecStart: $exec"; return 1; }
  done
  exec=$(flake_eval "$repo" "packages.x86_64-linux.vm-tests.nodes.flaredb1.networking.firewall.allowedTCPPorts" --json) || return 1
  expect_equal "flaredb1 open ports" "[5000,5001]" "$exec"
}
check "the modules render each VM's chainfire/flaredb command line (ids, addresses, members, PD endpoints) and open its ports" modules_ok

# IAM in the VM test: one evaluation of every node, the problems found listed (none wanted).
vm_iam_ok() {
  local problems
  # shellcheck disable=SC2016 # a Nix expression: ${...} is Nix's, not the shell's
  problems=$(flake_eval "$repo" packages.x86_64-linux.vm-tests.nodes --json --apply '
    nodes:
    let
      expect = what: actual: wanted:
        if actual == wanted then [ ] else [ "${what}: ${builtins.toJSON actual} (wanted ${builtins.toJSON wanted})" ];
      iamPackages = node: builtins.filter (p: builtins.match "iam-.*" (p.name or "") != null) node.environment.systemPackages;
      client = iamPackages nodes.flaredb1;
      cli = if client == [ ] then null else builtins.head client;
      server = id:
        let
          name = "chainfire${id}";
          node = nodes.${name};
          service = node.systemd.services.iam.serviceConfig or { };
        in
        expect "${name}: iam ExecStart" (service.ExecStart or null) (builtins.concatStringsSep " " (map builtins.toJSON [
          "${cli}/bin/iam" "--addr" "192.168.1.${id}:8090"
          "--chainfire-endpoints" "192.168.1.1:2379,192.168.1.2:2379,192.168.1.3:2379"
          "--region" "us-east-1" "--log-level" "debug" "--grpc-addr" "192.168.1.${id}:8091"
        ]))
        ++ expect "${name}: iam LoadCredential" (service.LoadCredential or null) [ "bootstrap-key:/etc/iam-bootstrap" ]
        ++ expect "${name}: /etc/iam-bootstrap" (node.environment.etc.iam-bootstrap or null) { mode = "0400"; text = "AKIDVMTEST000000:vm-test-secret-key"; }
        ++ expect "${name}: open ports" (builtins.sort builtins.lessThan node.networking.firewall.allowedTCPPorts) [ 2379 2380 8090 8091 ];
      clientNode = id:
        let
          name = "flaredb${id}";
          node = nodes.${name};
        in
        expect "${name}: runs an iam service" (node.systemd.services ? iam) false
        ++ expect "${name}: iam packages" (map (p: p.outPath) (iamPackages node)) [ cli.outPath ]
        ++ expect "${name}: /etc/iam-admin-secret" (node.environment.etc.iam-admin-secret or null) { mode = "0400"; text = "vm-test-secret-key"; }
        ++ expect "${name}: open ports" (builtins.sort builtins.lessThan node.networking.firewall.allowedTCPPorts)
          ([ 5000 5001 ] ++ (if id == "1" then [ ] else [ 8100 ]));
    in
    if cli == null then [ "flaredb1 has no iam package in environment.systemPackages" ]
    else builtins.concatMap server [ "1" "2" "3" ] ++ builtins.concatMap clientNode [ "1" "2" "3" ]
  ') || return 1
  expect_equal "problems" "[]" "$problems"
}
check "the VM test runs IAM on each ChainFire VM (command line, bootstrap key from a root-only /etc file as a credential, ports 8090/8091 open) and gives each FlareDB VM the same iam package as client, the admin's secret and no IAM service" vm_iam_ok

# PlasmaVMC in the VM test: on flaredb2 and flaredb3 only, its back ends the addresses the
# test's own FlareDB, ChainFire and IAM services listen on (read from those nodes' options).
vm_plasmavmc_ok() {
  local problems package
  package=$(flake_eval "$repo" packages.x86_64-linux.plasmavmc.outPath --raw) || return 1
  # shellcheck disable=SC2016 # a Nix expression: ${...} is Nix's, not the shell's
  problems=$(flake_eval "$repo" packages.x86_64-linux.vm-tests.nodes --json --apply '
    nodes:
    let
      expect = what: actual: wanted:
        if actual == wanted then [ ] else [ "${what}: ${builtins.toJSON actual} (wanted ${builtins.toJSON wanted})" ];
      render = args: builtins.concatStringsSep " " (map builtins.toJSON args);
      at = names: get: builtins.concatStringsSep "," (map (name: get nodes.${name}) names);
      flaredbs = at [ "flaredb1" "flaredb2" "flaredb3" ] (n: n.services.flaredb.addr);
      chainfires = at [ "chainfire1" "chainfire2" "chainfire3" ] (n: n.services.chainfire.clientAddr);
      iams = at [ "chainfire1" "chainfire2" "chainfire3" ] (n: n.services.iam.grpcAddr);
      instance = name: ip:
        let
          node = nodes.${name};
          unit = node.systemd.services.plasmavmc or { };
          service = unit.serviceConfig or { };
          absent = key: expect "${name}: plasmavmc serviceConfig has ${key}" (service ? ${key}) false;
        in
        expect "${name}: plasmavmc ExecStart" (service.ExecStart or null) (render [
          "'"$package"'/bin/plasmavmc" "--addr" "${ip}:8100"
          "--flaredb-endpoints" flaredbs "--chainfire-endpoints" chainfires "--iam-endpoints" iams
          "--driver-root" "/var/lib/plasmavmc/driver"
          "--reconcile-every-ms" "500" "--lease-ttl-ms" "3000" "--stop-grace-ms" "5000" "--watch-every-ms" "250"
          "--log-level" "debug" "--instance-id" "plasmavmc-${name}"
        ])
        ++ expect "${name}: plasmavmc wantedBy" (unit.wantedBy or null) [ "multi-user.target" ]
        ++ expect "${name}: plasmavmc KillMode" (service.KillMode or null) "process"
        ++ expect "${name}: plasmavmc StateDirectory" (service.StateDirectory or null) "plasmavmc"
        ++ builtins.concatMap absent [ "DynamicUser" "LoadCredential" "Environment" "PrivateTmp" ];
      none = name: expect "${name}: runs a plasmavmc service" (nodes.${name}.systemd.services ? plasmavmc) false;
    in
    expect "FlareDB addresses" flaredbs "192.168.1.4:5000,192.168.1.5:5000,192.168.1.6:5000"
    ++ expect "ChainFire addresses" chainfires "192.168.1.1:2379,192.168.1.2:2379,192.168.1.3:2379"
    ++ expect "IAM gRPC addresses" iams "192.168.1.1:8091,192.168.1.2:8091,192.168.1.3:8091"
    ++ instance "flaredb2" "192.168.1.5" ++ instance "flaredb3" "192.168.1.6"
    ++ builtins.concatMap none [ "chainfire1" "chainfire2" "chainfire3" "flaredb1" ]
  ') || return 1
  expect_equal "problems" "[]" "$problems"
}
check "the VM test runs PlasmaVMC (packages.plasmavmc) on flaredb2 and flaredb3 only: command line with the test's FlareDB, ChainFire and IAM gRPC addresses and its instance id, at boot, KillMode=process, StateDirectory=plasmavmc, no credential, port 8100 open" vm_plasmavmc_ok

test_script_file="$work/vm-partition-test-script.py"
machines=""
vm_script_ok() {
  flake_eval "$repo" packages.x86_64-linux.vm-tests.config.testScriptString --raw >"$test_script_file" || return 1
  machines=$(flake_eval "$repo" packages.x86_64-linux.vm-tests.nodes --raw \
    --apply 'nodes: builtins.concatStringsSep "," (builtins.attrNames nodes)') || return 1
  expect_equal "VM test machines" "chainfire1,chainfire2,chainfire3,flaredb1,flaredb2,flaredb3" "$machines" || return 1
  [ -s "$test_script_file" ] || { echo "empty test script"; return 1; }
  local line
  for line in \
    'IAM_MEMBERS = [(chainfire1, 1, "192.168.1.1", 8090), (chainfire2, 2, "192.168.1.2", 8090), (chainfire3, 3, "192.168.1.3", 8090)]' \
    'IAM_REGION = "us-east-1"' 'IAM_ADMIN_KEY_ID = "AKIDVMTEST000000"' 'IAM_ADMIN_SECRET_FILE = "/etc/iam-admin-secret"' \
    'PLASMAVMC_INSTANCES = [(flaredb2, "plasmavmc-flaredb2", "192.168.1.5", 8100), (flaredb3, "plasmavmc-flaredb3", "192.168.1.6", 8100)]'; do
    grep -qxF -- "$line" "$test_script_file" || { echo "the test script's prelude lacks: $line"; return 1; }
  done
}
check "the VM test (packages.*.vm-tests) has 3 ChainFire + 3 FlareDB machines and a test script (nix eval config.testScriptString) whose prelude names the IAM instances, region and admin key, and the PlasmaVMC instances" vm_script_ok
if command -v python3 >/dev/null; then
  check "the VM test script parses as Python, has no undefined names and calls only the test driver's machine API" \
    python3 nix/tests/lint-test-script.py "$test_script_file" "$machines"
else
  skip "Python lint of the VM test script (python3 not installed)"
fi

# --- 9. The stand-in is strict: misspellings fail evaluation.
echo "== strictness: misspellings must fail"
standin_expr() {
  nix-instantiate --eval --strict -E "
    let
      standIn = import $repo/nix/stand-in;
      lib = standIn.lib;
      pkgs = standIn.legacyPackages.x86_64-linux;
      nixos = import $repo/nix/stand-in/nixos.nix { inherit lib pkgs; mkDrv = null; };
      evalChainfire = definitions: (lib.evalModules {
        modules = [ nixos.nixosOptions $repo/nix/modules/chainfire.nix definitions ];
        specialArgs = { inherit pkgs; inherit (nixos) utils; };
      }).config.services.chainfire;
    in $1"
}
check_fails "a misspelt package (pkgs.iproute) is an error" "attribute 'iproute' missing" \
  standin_expr 'pkgs.iproute.outPath'
check_fails "a misspelt lib function (lib.optinal) is an error" "attribute 'optinal' missing" \
  standin_expr 'lib.optinal true 1'
check_fails "a misspelt builder argument (writeShellApplication runtimeInput) is an error" "runtimeInput" \
  standin_expr '(pkgs.writeShellApplication { name = "x"; text = ""; runtimeInput = [ ]; }).drvPath'
check_fails "a misspelt derivation attribute (nativeBuildInput) is an error" "nativeBuildInput" \
  standin_expr '(pkgs.stdenv.mkDerivation { name = "x"; nativeBuildInput = [ ]; }).drvPath'
check_fails "a misspelt mkOption argument (descripton) is an error" "descripton" \
  standin_expr '(lib.mkOption { type = lib.types.str; descripton = "x"; })._type'
check "control: the same module evaluation with a correctly spelt option succeeds" \
  standin_expr '(evalChainfire { services.chainfire.nodeId = 1; }).nodeId'
iam_module_expr() {
  nix-instantiate --eval --strict --json -E "
    let
      standIn = import $repo/nix/stand-in;
      lib = standIn.lib;
      pkgs = standIn.legacyPackages.x86_64-linux;
      nixos = import $repo/nix/stand-in/nixos.nix { inherit lib pkgs; mkDrv = null; };
      config = (lib.evalModules {
        modules = [ nixos.nixosOptions $repo/nix/modules/iam.nix {
          services.iam = {
            enable = true;
            package = pkgs.stdenv.mkDerivation { name = \"iam\"; };
            addr = \"10.0.2.1:8090\";
            grpcAddr = \"10.0.2.1:8091\";
            chainfireEndpoints = [ \"10.0.0.1:2379\" \"10.0.0.2:2379\" ];
            bootstrapKeyFile = \"/run/keys/iam-bootstrap\";
            openFirewall = true;
          };
        } ];
        specialArgs = { inherit pkgs; inherit (nixos) utils; };
      }).config;
      service = config.systemd.services.iam.serviceConfig;
    in [ service.ExecStart service.LoadCredential service.Environment config.networking.firewall.allowedTCPPorts (service ? StateDirectory) ]"
}
iam_module_ok() {
  local out
  out=$(iam_module_expr) || return 1
  for want in '/bin/iam\" \"--addr\" \"10.0.2.1:8090\" \"--chainfire-endpoints\" \"10.0.0.1:2379,10.0.0.2:2379\"' \
    '\"--grpc-addr\" \"10.0.2.1:8091\"' '["bootstrap-key:/run/keys/iam-bootstrap"]' \
    '["IAM_BOOTSTRAP_KEY_FILE=%d/bootstrap-key"]' '[8090,8091],false]'; do
    [[ $out == *"$want"* ]] || { echo "services.iam renders $out; missing $want"; return 1; }
  done
}
check "the IAM module renders its command line, hands the bootstrap key over as a credential, opens both ports and keeps no state directory" iam_module_ok
# PlasmaVMC: its module evaluated with the stand-in (from this checkout or a planted copy).
# plasmavmc_module DIR EXPR: EXPR is a Nix function of { eval, lib }, where `eval DEFINITIONS`
# is the NixOS configuration of the module plus a minimal valid setting plus DEFINITIONS.
plasmavmc_module() {
  # shellcheck disable=SC2016 # a Nix expression: ${...} is Nix's, not the shell's
  nix-instantiate --eval --strict --json --argstr dir "$1" -E '
    { dir }:
    let
      root = /. + dir;
      standIn = import (root + "/nix/stand-in");
      lib = standIn.lib;
      pkgs = standIn.legacyPackages.x86_64-linux;
      nixos = import (root + "/nix/stand-in/nixos.nix") { inherit lib pkgs; mkDrv = null; };
      base = {
        services.plasmavmc = {
          enable = true;
          package = pkgs.stdenv.mkDerivation { name = "plasmavmc"; };
          addr = "10.0.3.1:8100";
          flaredbEndpoints = [ "10.0.1.1:5000" "10.0.1.2:5000" ];
          chainfireEndpoints = [ "10.0.0.1:2379" ];
          iamEndpoints = [ "10.0.2.1:8091" "10.0.2.2:8091" ];
        };
      };
      eval = definitions: (lib.evalModules {
        modules = [ nixos.nixosOptions (root + "/nix/modules/plasmavmc.nix") base definitions ];
        specialArgs = { inherit pkgs; inherit (nixos) utils; };
      }).config;
    in ('"$2"') { inherit eval lib; }'
}
plasmavmc_module_ok() {
  local problems
  # shellcheck disable=SC2016 # a Nix expression: ${...} is Nix's, not the shell's
  problems=$(plasmavmc_module "$repo" '
    { eval, lib }:
    let
      expect = what: actual: wanted:
        if actual == wanted then [ ] else [ "${what}: ${builtins.toJSON actual} (wanted ${builtins.toJSON wanted})" ];
      failedAssertions = config: map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
      render = args: builtins.concatStringsSep " " (map builtins.toJSON args);
      common = [
        "--addr" "10.0.3.1:8100"
        "--flaredb-endpoints" "10.0.1.1:5000,10.0.1.2:5000"
        "--chainfire-endpoints" "10.0.0.1:2379"
        "--iam-endpoints" "10.0.2.1:8091,10.0.2.2:8091"
      ];
      unit = what: config: wantedExec: wantedPorts: wantedLogs:
        let
          plasmavmc = config.services.plasmavmc;
          service = config.systemd.services.plasmavmc.serviceConfig;
          absent = key: expect "${what}: serviceConfig has ${key}" (service ? ${key}) false;
        in
        expect "${what}: ExecStart" service.ExecStart (render ([ "${plasmavmc.package}/bin/plasmavmc" ] ++ wantedExec))
        ++ expect "${what}: KillMode" (service.KillMode or null) "process"
        ++ expect "${what}: StateDirectory" (service.StateDirectory or null) "plasmavmc"
        ++ expect "${what}: LogsDirectory" (service.LogsDirectory or null) wantedLogs
        ++ expect "${what}: KillSignal" (service.KillSignal or null) "SIGTERM"
        ++ expect "${what}: ProtectSystem" (service.ProtectSystem or null) "strict"
        ++ builtins.concatMap absent [ "DynamicUser" "User" "CapabilityBoundingSet" "RestrictNamespaces" "PrivateTmp" "PrivateDevices" ]
        ++ expect "${what}: open ports" config.networking.firewall.allowedTCPPorts wantedPorts
        ++ expect "${what}: failed assertions" (failedAssertions config) [ ];
      defaults = eval { };
      everything = eval {
        services.plasmavmc = {
          instanceId = "vmc-1";
          driverRoot = "/var/lib/plasmavmc/vms";
          namespaces = true;
          reconcileEveryMs = 100;
          leaseTtlMs = 2000;
          stopGraceMs = 1000;
          watchEveryMs = 50;
          logLevel = "debug";
          logFile = "/var/log/plasmavmc/plasmavmc.log";
          openFirewall = true;
          extraArgs = [ "--later-flag" "1" ];
        };
      };
      misplaced = eval {
        services.plasmavmc = {
          driverRoot = "/srv/vms";
          logFile = "/tmp/plasmavmc.log";
          iamEndpoints = lib.mkForce [ ];
        };
      };
    in
    unit "defaults" defaults (common ++ [
      "--driver-root" "/var/lib/plasmavmc/driver"
      "--reconcile-every-ms" "500" "--lease-ttl-ms" "3000" "--stop-grace-ms" "5000" "--watch-every-ms" "250"
      "--log-level" "info"
    ]) [ ] null
    ++ unit "every option set" everything (common ++ [
      "--driver-root" "/var/lib/plasmavmc/vms"
      "--reconcile-every-ms" "100" "--lease-ttl-ms" "2000" "--stop-grace-ms" "1000" "--watch-every-ms" "50"
      "--log-level" "debug" "--instance-id" "vmc-1" "--namespaces" "--log-file" "/var/log/plasmavmc/plasmavmc.log"
      "--later-flag" "1"
    ]) [ 8100 ] "plasmavmc"
    ++ expect "driverRoot /srv/vms, logFile /tmp/..., no IAM endpoint: failed assertions" (failedAssertions misplaced) [
      "services.plasmavmc.iamEndpoints must name at least one IAM gRPC endpoint."
      "services.plasmavmc.driverRoot (/srv/vms) must be /var/lib/plasmavmc or below it (the service'"'"'s StateDirectory, which persists)."
      "services.plasmavmc.logFile must be under /var/log/plasmavmc or /var/lib/plasmavmc (the only writable places of the service)."
    ]
  ') || return 1
  expect_equal "problems" "[]" "$problems"
}
check "the PlasmaVMC module renders its command line (defaults, and every option set), runs as root with KillMode=process (guests outlive a restart) and StateDirectory=plasmavmc, opens its port only when asked and asserts endpoints, driverRoot and logFile" plasmavmc_module_ok
check_fails "an undeclared PlasmaVMC option (services.plasmavmc.driverroot) is an error" "The option \`services.plasmavmc.driverroot' does not exist" \
  plasmavmc_module "$repo" '{ eval, lib }: (eval { services.plasmavmc.driverroot = "/var/lib/plasmavmc/vms"; }).systemd.services.plasmavmc.serviceConfig.ExecStart'
check_fails "a PlasmaVMC option value of the wrong type (services.plasmavmc.reconcileEveryMs = \"500\") is an error" "is not of type" \
  plasmavmc_module "$repo" '{ eval, lib }: (eval { services.plasmavmc.reconcileEveryMs = "500"; }).systemd.services.plasmavmc.serviceConfig.ExecStart'
check "control: the same PlasmaVMC evaluation with correctly spelt options succeeds" \
  plasmavmc_module "$repo" '{ eval, lib }: (eval { services.plasmavmc.driverRoot = "/var/lib/plasmavmc/vms"; services.plasmavmc.reconcileEveryMs = 500; }).systemd.services.plasmavmc.serviceConfig.ExecStart'
check_fails "an undeclared NixOS option (services.chainfire.nodeid) is an error" "The option \`services.chainfire.nodeid' does not exist" \
  standin_expr '(evalChainfire { services.chainfire.nodeid = 1; }).enable'
check_fails "a value of the wrong type (services.chainfire.nodeId = \"1\") is an error" "is not of type" \
  standin_expr '(evalChainfire { services.chainfire.nodeId = "1"; }).nodeId'

# Misspellings planted in a copy of the flake: the same `nix flake check --no-build` as above
# must now fail, for the planted reason.
plant() { # plant NAME FILE SED-EXPRESSION -> prints the copy's path
  local copy="$work/planted-$1"
  mkdir -p "$copy"
  git -C "$repo" ls-files -z --cached --others --exclude-standard | (cd "$repo" && tar --null -T - -cf -) | tar -xf - -C "$copy"
  cp "$copy/$2" "$copy/$2.orig"
  sed -i -e "$3" "$copy/$2"
  if cmp -s "$copy/$2" "$copy/$2.orig"; then
    echo "the planted change ($3) did not change $2" >&2
    return 1
  fi
  rm "$copy/$2.orig"
  echo "$copy"
}
planted_check() { # planted_check NAME FILE SED EXPECTED DESCRIPTION
  local copy
  if copy=$(plant "$1" "$2" "$3" 2>"$work/output"); then
    check_fails "$5" "$4" copy_flake_check "$copy"
  else
    fail "$5"
  fi
}
planted_check package nix/devshell.nix 's/\biproute2\b/iproute/g' "iproute" \
  "planted in a copy: the dev shell asks for pkgs.iproute instead of iproute2 -> nix flake check fails"
planted_check python nix/devshell.nix 's/ps\.botocore/ps.botocor/' "attribute 'botocor' missing" \
  "planted in a copy: the dev shell asks for python3.withPackages (ps: [ ps.botocor ]) -> nix flake check fails"
planted_check option nix/tests/partition.nix 's/clusterClientAddrs = /clusterClientAddr = /' \
  "The option \`services.chainfire.clusterClientAddr' does not exist" \
  "planted in a copy: the VM test sets services.chainfire.clusterClientAddr (no such option) -> nix flake check fails"
# shellcheck disable=SC2016 # Nix's ${...} in the sed expression, not the shell's
planted_check etc nix/tests/partition.nix 's/^        text = "${iamAdmin.accessKeyId}/        txt = "${iamAdmin.accessKeyId}/' \
  "The option \`environment.etc.iam-bootstrap.txt' does not exist" \
  "planted in a copy: the VM test sets environment.etc.iam-bootstrap.txt (no such option) -> nix flake check fails"
planted_check plasmavmc-option nix/tests/partition.nix 's/        iamEndpoints = map/        iamEndpoint = map/' \
  "The option \`services.plasmavmc.iamEndpoint' does not exist" \
  "planted in a copy: the VM test sets services.plasmavmc.iamEndpoint (no such option) -> nix flake check fails"
planted_check plasmavmc-unit nix/modules/plasmavmc.nix 's/^    cfg\.driverRoot$/    cfg.driverroot/' "attribute 'driverroot' missing" \
  "planted in a copy: the PlasmaVMC module reads cfg.driverroot (no such option) -> nix flake check fails (the VM test renders its unit)"
planted_check lib flake.nix 's/lib\.genAttrs systems/lib.genAttr systems/' "attribute 'genAttr' missing" \
  "planted in a copy: flake.nix calls lib.genAttr (no such function) -> nix flake check fails"
# The same planted module evaluated directly (with the module check's minimal setting).
planted_module_check() { # planted_module_check NAME FILE SED EXPECTED DESCRIPTION EXPR
  local copy
  if copy=$(plant "$1" "$2" "$3" 2>"$work/output"); then
    check_fails "$5" "$4" plasmavmc_module "$copy" "$6"
  else
    fail "$5"
  fi
}
planted_module_check plasmavmc nix/modules/plasmavmc.nix 's/^    cfg\.driverRoot$/    cfg.driverroot/' "attribute 'driverroot' missing" \
  "planted in a copy: the PlasmaVMC module reads cfg.driverroot (no such option) for --driver-root -> evaluating its unit fails" \
  '{ eval, lib }: (eval { }).systemd.services.plasmavmc.serviceConfig.ExecStart'

echo
echo "nix offline checks: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
