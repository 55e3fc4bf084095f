# Stand-in for `nixpkgs.legacyPackages.<system>`, used ONLY by the offline checks.
#
# Exactly the attributes this repository uses, with nixpkgs' names and argument shapes:
# a misspelt package or builder argument is an evaluation error. Every derivation here has a
# builder that refuses to run: evaluating (`nix flake check --no-build`, `nix eval`) works,
# building fails loudly instead of pretending. It proves the Nix code is wired right; it says
# nothing about whether the real nixpkgs would build it.
{ lib, system }:
let
  inherit (builtins)
    attrNames
    concatStringsSep
    elem
    filter
    functionArgs
    head
    intersectAttrs
    isAttrs
    isFunction
    isPath
    isString
    ;

  rustTargets = {
    x86_64-linux = "x86_64-unknown-linux-gnu";
    aarch64-linux = "aarch64-unknown-linux-gnu";
  };

  hostPlatform = {
    inherit system;
    isLinux = true;
    isDarwin = false;
    rust = {
      rustcTarget = rustTargets.${system};
      cargoShortTarget = rustTargets.${system};
    };
  };

  refuseToBuild = [
    "-c"
    "echo 'This derivation comes from the offline stand-in for nixpkgs (nix/stand-in); it cannot be built. Run the checks against the real nixpkgs instead.' >&2; exit 1"
  ];

  # Builds the derivation value: `attrs` go to the builder environment, `passthru` and `meta`
  # are added to the result like nixpkgs does.
  mkDrv =
    {
      name,
      attrs ? { },
      env ? { },
      passthru ? { },
      meta ? { },
    }:
    let
      clash = filter (n: attrs ? ${n}) (attrNames env);
      drv =
        if clash != [ ] then
          throw "stand-in: `env.${head clash}' is also a top-level attribute of ${name}; nixpkgs rejects that."
        else
          derivation (
            attrs
            // env
            // {
              inherit name system;
              builder = "/bin/sh";
              args = refuseToBuild;
            }
          );
    in
    drv // passthru // { inherit meta passthru; };

  # Attribute names `stdenv.mkDerivation` accepts here. nixpkgs accepts any name and turns
  # unknown ones into environment variables; the stand-in refuses them so that a misspelt
  # attribute (say `nativeBuildInput`) is caught. Put intended variables under `env`.
  mkDerivationAttrs = [
    "pname"
    "version"
    "name"
    "src"
    "srcs"
    "sourceRoot"
    "nativeBuildInputs"
    "buildInputs"
    "nativeCheckInputs"
    "checkInputs"
    "propagatedBuildInputs"
    "cargoDeps"
    "configurePhase"
    "buildPhase"
    "checkPhase"
    "installPhase"
    "buildCommand"
    "preBuild"
    "postBuild"
    "preCheck"
    "postCheck"
    "preInstall"
    "postInstall"
    "doCheck"
    "dontUnpack"
    "dontConfigure"
    "dontInstall"
    "strictDeps"
    "requiredSystemFeatures"
    "preferLocalBuild"
    "allowSubstitutes"
    "passAsFile"
    "env"
    "meta"
    "passthru"
  ];

  checkKnown =
    what: known: attrs:
    let
      unknown = filter (n: !(elem n known)) (attrNames attrs);
    in
    if unknown != [ ] then
      throw "stand-in: ${what} got the unknown attribute `${head unknown}'. Known here: ${concatStringsSep ", " known}."
    else
      attrs;

  mkDerivation =
    args:
    let
      checked = checkKnown "stdenv.mkDerivation" mkDerivationAttrs args;
      name =
        checked.name or (
          if checked ? pname && checked ? version then
            "${checked.pname}-${checked.version}"
          else
            throw "stand-in: stdenv.mkDerivation needs `name', or `pname' and `version'."
        );
    in
    mkDrv {
      inherit name;
      attrs = removeAttrs checked [
        "env"
        "meta"
        "passthru"
      ];
      env = checked.env or { };
      passthru = checked.passthru or { };
      meta = checked.meta or { };
    };

  # A leaf package: enough for `${pkg}`, `lib.getExe`, `pname` and inclusion in lists.
  leaf =
    pname: mainProgram:
    mkDrv {
      name = "${pname}-stand-in";
      attrs = {
        inherit pname;
        version = "stand-in";
      };
      meta = {
        description = "stand-in for nixpkgs' ${pname}";
      }
      // lib.optionalAttrs (mainProgram != null) { inherit mainProgram; };
    };

  runtimeShell = "${bash}/bin/bash";
  bash = leaf "bash" "bash";

  importCargoLock =
    {
      lockFile ? null,
      lockFileContents ? null,
      outputHashes ? { },
      allowBuiltinFetchGit ? false,
      extraRegistries ? { },
    }:
    let
      contents =
        if lockFile != null then
          builtins.readFile lockFile
        else if lockFileContents != null then
          lockFileContents
        else
          throw "stand-in: importCargoLock needs lockFile or lockFileContents.";
      parsed = builtins.fromTOML contents;
      packages = parsed.package or [ ];
      crates = filter (p: p ? source) packages;
      cratesIo = "registry+https://github.com/rust-lang/crates.io-index";
      describe =
        p:
        if p.source == cratesIo then
          if p ? checksum then
            "${p.name}-${p.version}"
          else
            throw "stand-in: Cargo.lock entry ${p.name} ${p.version} from crates.io has no checksum."
        else if lib.hasPrefix "git+" p.source then
          if outputHashes ? "${p.name}-${p.version}" || allowBuiltinFetchGit then
            "${p.name}-${p.version}"
          else
            throw "No hash was found while vendoring the git dependency ${p.name}-${p.version}. You can add a hash through the `outputHashes` argument of `importCargoLock`."
        else
          throw "stand-in: Cargo.lock entry ${p.name} ${p.version} has the source ${p.source}, which importCargoLock cannot fetch without extraRegistries.";
    in
    if !(elem (parsed.version or 0) [ 3 4 ]) then
      throw "stand-in: unexpected Cargo.lock version ${toString (parsed.version or "missing")}."
    else
      mkDrv {
        name = "cargo-vendor-dir";
        attrs.crates = map describe crates;
      };

  # buildRustPackage's own attributes: it consumes them and does not pass them to mkDerivation.
  cargoOnlyAttrs = [
    "cargoLock"
    "cargoHash"
    "cargoBuildFlags"
    "cargoTestFlags"
    "checkFlags"
    "buildType"
    "checkType"
    "useNextest"
    "auditable"
    "dontUseCargoParallelTests"
    "buildFeatures"
    "buildNoDefaultFeatures"
  ];

  buildRustPackageAttrs = [
    "pname"
    "version"
    "src"
  ]
  ++ cargoOnlyAttrs
  ++ [
    "nativeBuildInputs"
    "buildInputs"
    "nativeCheckInputs"
    "doCheck"
    "preBuild"
    "postBuild"
    "preCheck"
    "postCheck"
    "preInstall"
    "postInstall"
    "strictDeps"
    "env"
    "meta"
    "passthru"
  ];

  buildRustPackage =
    args:
    let
      a = checkKnown "rustPlatform.buildRustPackage" buildRustPackageAttrs args;
      vendor =
        if a ? cargoLock && a ? cargoHash then
          throw "stand-in: buildRustPackage: set cargoLock or cargoHash, not both."
        else if a ? cargoLock then
          importCargoLock a.cargoLock
        else if a ? cargoHash then
          mkDrv {
            name = "${a.pname}-vendor";
            attrs.outputHashHint = a.cargoHash;
          }
        else
          throw "cargoHash, cargoVendorDir, cargoDeps, or cargoLock must be set";
      buildType = a.buildType or "release";
    in
    mkDerivation (
      removeAttrs a cargoOnlyAttrs
      // {
        cargoDeps = vendor;
        nativeBuildInputs = [
          cargo
          rustc
          cargoSetupHook
        ]
        ++ (a.nativeBuildInputs or [ ]);
        env = (a.env or { }) // {
          cargoBuildType = buildType;
          cargoCheckType = a.checkType or buildType;
          cargoBuildFlags = toString (a.cargoBuildFlags or [ ]);
          cargoTestFlags = toString (a.cargoTestFlags or [ ]);
          checkFlags = toString (a.checkFlags or [ ]);
        };
      }
    );

  cargo = leaf "cargo" "cargo";
  rustc = leaf "rustc" "rustc";
  cargoSetupHook = leaf "cargo-setup-hook.sh" null;

  writeShellApplication =
    {
      name,
      text,
      runtimeInputs ? [ ],
      runtimeEnv ? null,
      meta ? { },
      passthru ? { },
      checkPhase ? null,
      excludeShellChecks ? [ ],
      extraShellCheckFlags ? [ ],
      bashOptions ? [
        "errexit"
        "nounset"
        "pipefail"
      ],
      inheritPath ? true,
      derivationArgs ? { },
    }:
    mkDrv {
      inherit name passthru;
      attrs = {
        text = ''
          #!${runtimeShell}
          ${lib.concatMapStrings (option: "set -o ${option}\n") bashOptions}
          ${lib.optionalString (runtimeEnv != null) (
            lib.concatMapStrings (n: "export ${n}=${lib.escapeShellArg runtimeEnv.${n}}\n") (attrNames runtimeEnv)
          )}
          ${lib.optionalString (runtimeInputs != [ ]) ''
            export PATH="${lib.makeBinPath runtimeInputs}${lib.optionalString inheritPath ":$PATH"}"
          ''}
          ${text}
        '';
        executable = true;
        destination = "/bin/${name}";
        excludeShellChecks = excludeShellChecks;
      };
      meta = {
        mainProgram = name;
      }
      // meta;
    };

  runCommand =
    name: env: buildCommand:
    if !(isAttrs env) then
      throw "stand-in: runCommand's second argument must be an attribute set of environment variables."
    else
      mkDrv {
        inherit name;
        attrs = removeAttrs env [
          "passthru"
          "meta"
        ] // { inherit buildCommand; };
        passthru = env.passthru or { };
        meta = env.meta or { };
      };

  mkShell =
    {
      name ? "nix-shell",
      packages ? [ ],
      inputsFrom ? [ ],
      buildInputs ? [ ],
      nativeBuildInputs ? [ ],
      propagatedBuildInputs ? [ ],
      shellHook ? "",
      env ? { },
      passthru ? { },
      meta ? { },
    }:
    mkDrv {
      inherit name env passthru meta;
      attrs = {
        nativeBuildInputs =
          packages ++ nativeBuildInputs ++ builtins.concatMap (d: d.nativeBuildInputs or [ ]) inputsFrom;
        buildInputs = buildInputs ++ builtins.concatMap (d: d.buildInputs or [ ]) inputsFrom;
        inherit propagatedBuildInputs shellHook;
      };
    };

  # python3 with `withPackages`, and of its package set exactly what the flake asks for
  # (`python3.withPackages (ps: [ ps.botocore ])`): a misspelt Python package is an error. The
  # environment's name follows nixpkgs' `<python name>-env`; it references every package given.
  python3 =
    let
      interpreter = leaf "python3" "python3";
      pythonPackages = {
        botocore = leaf "botocore" null;
      };
      withPackages =
        f:
        mkDrv {
          name = "python3-stand-in-env";
          attrs.paths = [ interpreter ] ++ f pythonPackages;
          meta.mainProgram = "python3";
        };
    in
    interpreter
    // {
      pkgs = pythonPackages;
      inherit withPackages;
    };

  nixos = import ./nixos.nix { inherit lib pkgs mkDrv; };

  pkgs = {
    inherit lib system runtimeShell;
    stdenv = {
      inherit mkDerivation hostPlatform;
      buildPlatform = hostPlatform;
    };
    callPackage =
      fn: overrides:
      let
        f = if isPath fn || isString fn then import fn else fn;
      in
      if !(isFunction f) then
        throw "stand-in: callPackage expects a function or a file containing one."
      else
        f (intersectAttrs (functionArgs f) pkgs // overrides);

    rustPlatform = {
      inherit buildRustPackage importCargoLock cargoSetupHook;
      rustLibSrc = leaf "rust-lib-src" null;
    };
    inherit
      writeShellApplication
      runCommand
      mkShell
      bash
      cargo
      rustc
      ;
    testers = {
      inherit (nixos) runNixOSTest;
    };

    clippy = leaf "clippy" "cargo-clippy";
    rustfmt = leaf "rustfmt" "rustfmt";
    rust-analyzer = leaf "rust-analyzer" "rust-analyzer";
    iptables = leaf "iptables" "iptables";
    iproute2 = leaf "iproute2" "ip";
    procps = leaf "procps" "ps";
    util-linux = leaf "util-linux" "unshare";
    coreutils = leaf "coreutils" "ls";
    grpcurl = leaf "grpcurl" "grpcurl";
    chromium = leaf "chromium" "chromium";
    etcd = leaf "etcd" "etcd";
    inherit python3;
  };
in
pkgs
