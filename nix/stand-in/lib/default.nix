# Stand-in for nixpkgs' `lib`, used ONLY by the offline checks (nix/ci-check.sh).
#
# It provides exactly the functions this repository's Nix code uses, with nixpkgs' names and
# argument shapes. It is a plain attribute set: a misspelt or unknown function is an
# "attribute missing" evaluation error, which is the point. Add a function here only when the
# real nixpkgs lib has it under the same name with the same meaning.
let
  inherit (builtins)
    all
    any
    attrNames
    concatMap
    concatStringsSep
    elem
    elemAt
    filter
    foldl'
    genList
    head
    isAttrs
    isFunction
    isList
    isPath
    isString
    length
    listToAttrs
    mapAttrs
    match
    replaceStrings
    stringLength
    substring
    tail
    ;

  attrsets = rec {
    genAttrs = names: f: listToAttrs (map (n: { name = n; value = f n; }) names);
    mapAttrsToList = f: attrs: map (n: f n attrs.${n}) (attrNames attrs);
    filterAttrs =
      pred: attrs:
      listToAttrs (
        concatMap (n: if pred n attrs.${n} then [ { name = n; value = attrs.${n}; } ] else [ ]) (
          attrNames attrs
        )
      );
    optionalAttrs = cond: attrs: if cond then attrs else { };
    isDerivation = v: isAttrs v && (v.type or null) == "derivation";
    attrByPath =
      path: default: set:
      if path == [ ] then
        set
      else if isAttrs set && set ? ${head path} then
        attrByPath (tail path) default set.${head path}
      else
        default;
    recursiveUpdate =
      lhs: rhs:
      lhs
      // mapAttrs (
        n: v: if isAttrs v && isAttrs (lhs.${n} or null) && !(isDerivation v) then recursiveUpdate lhs.${n} v else v
      ) rhs;
  };

  lists = rec {
    optional = cond: x: if cond then [ x ] else [ ];
    optionals = cond: xs: if cond then xs else [ ];
    last =
      xs:
      if xs == [ ] then throw "lib.lists.last: list must not be empty!" else elemAt xs (length xs - 1);
    flatten = x: if isList x then concatMap flatten x else [ x ];
    unique = foldl' (acc: e: if elem e acc then acc else acc ++ [ e ]) [ ];
    imap1 = f: list: genList (n: f (n + 1) (elemAt list n)) (length list);
    toList = x: if isList x then x else [ x ];
    range = first: last: if first > last then [ ] else genList (n: first + n) (last - first + 1);
  };

  strings = rec {
    concatMapStringsSep = sep: f: list: concatStringsSep sep (map f list);
    concatMapStrings = f: list: concatStringsSep "" (map f list);
    optionalString = cond: s: if cond then s else "";
    hasPrefix = pref: str: substring 0 (stringLength pref) str == pref;
    hasSuffix =
      suffix: content:
      let
        lenContent = stringLength content;
        lenSuffix = stringLength suffix;
      in
      lenContent >= lenSuffix && substring (lenContent - lenSuffix) lenContent content == suffix;
    removePrefix =
      prefix: str:
      if hasPrefix prefix str then
        substring (stringLength prefix) (stringLength str - stringLength prefix) str
      else
        str;
    splitString =
      sep: s:
      let
        escaped = replaceStrings
          [ "\\" "[" "]" "(" ")" "{" "}" "." "*" "+" "?" "^" "$" "|" ]
          [ "\\\\" "\\[" "\\]" "\\(" "\\)" "\\{" "\\}" "\\." "\\*" "\\+" "\\?" "\\^" "\\$" "\\|" ]
          sep;
      in
      filter isString (builtins.split escaped s);
    # Same rule as nixpkgs: arguments made only of safe characters stay bare.
    escapeShellArg =
      arg:
      let
        string = toString arg;
      in
      if match "[[:alnum:],._+:@%/-]+" string == null then
        "'${replaceStrings [ "'" ] [ "'\\''" ] string}'"
      else
        string;
    escapeShellArgs = concatMapStringsSep " " escapeShellArg;
    makeBinPath = paths: concatStringsSep ":" (map (p: "${p}/bin") paths);
    toInt =
      str:
      let
        parsed = if match "[[:space:]]*(-?[0-9]+)[[:space:]]*" str == null then null else builtins.fromJSON str;
      in
      if builtins.isInt parsed then parsed else throw "Could not convert ${str} to int.";
  };

  meta = {
    getExe =
      x:
      if !(attrsets.isDerivation x) then
        throw "lib.getExe: expects a derivation, got ${builtins.typeOf x}"
      else if !(x.meta ? mainProgram) then
        throw "lib.getExe: package ${x.name} does not have the meta.mainProgram attribute"
      else
        "${x}/bin/${x.meta.mainProgram}";
    getExe' =
      x: y:
      if !(attrsets.isDerivation x) then
        throw "lib.getExe': expects a derivation, got ${builtins.typeOf x}"
      else
        "${x}/bin/${y}";
  };

  trivial = {
    id = x: x;
    const = x: _: x;
    isFunction = isFunction;
    functionArgs = builtins.functionArgs;
    importTOML = path: builtins.fromTOML (builtins.readFile path);
    importJSON = path: builtins.fromJSON (builtins.readFile path);
    warn = msg: builtins.trace "warning: ${msg}";
  };

  licenses = {
    mit = {
      spdxId = "MIT";
      fullName = "MIT License";
      free = true;
    };
    asl20 = {
      spdxId = "Apache-2.0";
      fullName = "Apache License 2.0";
      free = true;
    };
  };

  platforms = {
    linux = [
      "x86_64-linux"
      "aarch64-linux"
    ];
  };

  lib =
    attrsets
    // lists
    // strings
    // meta
    // trivial
    // modules
    // {
      inherit
        attrsets
        lists
        strings
        trivial
        licenses
        platforms
        ;
      inherit (builtins)
        all
        any
        attrNames
        attrValues
        concatLists
        concatStringsSep
        elem
        filter
        foldl'
        head
        isAttrs
        isBool
        isInt
        isList
        isString
        length
        listToAttrs
        mapAttrs
        tail
        toJSON
        ;
      isPath = isPath;
      types = import ./types.nix { inherit lib; };
      fileset = import ./fileset.nix { inherit lib; };
      inherit (modules) evalModules;
    };

  modules = import ./modules.nix { inherit lib; };
in
lib
