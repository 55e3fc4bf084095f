# A small, strict re-implementation of the NixOS module system for the offline checks.
#
# Same surface as nixpkgs (`evalModules`, `mkOption`, `mkEnableOption`, `mkIf`, `mkMerge`,
# `mkDefault`, `mkForce`, `mkOverride`), same rules where this repository depends on them:
# - a definition for an option nobody declared is an error ("The option `a.b' does not exist");
# - values are checked against the option's type; conflicting definitions are errors;
# - `mkIf` is pushed down before its condition is looked at, so a module may write
#   `config = mkIf cfg.enable { ... }` without infinite recursion;
# - priorities: plain definitions (100) beat `mkDefault` (1000) beat option defaults (1500);
# - module functions get only the arguments they name, and fail on ones that do not exist.
# Not implemented (not used here): mkBefore/mkAfter ordering, freeform types, disabledModules,
# option renames. Using them fails evaluation instead of being silently ignored.
{ lib }:
let
  inherit (builtins)
    attrNames
    concatMap
    concatStringsSep
    elem
    filter
    foldl'
    functionArgs
    genericClosure
    head
    intersectAttrs
    isAttrs
    isBool
    isFunction
    isList
    isPath
    isString
    length
    listToAttrs
    mapAttrs
    tail
    ;

  showLoc = loc: concatStringsSep "." loc;

  isOption = v: isAttrs v && (v._type or null) == "option";

  defaultPriority = 100;

  mkOption =
    # The real mkOption takes these arguments (and no others); a misspelt one is an error.
    args@{
      type ? null,
      default ? null,
      defaultText ? null,
      example ? null,
      description ? null,
      relatedPackages ? null,
      apply ? null,
      readOnly ? false,
      internal ? false,
      visible ? true,
    }:
    args // { _type = "option"; };

  mkEnableOption =
    name:
    mkOption {
      type = lib.types.bool;
      default = false;
      example = true;
      description = "Whether to enable ${name}.";
    };

  mkIf = condition: content: {
    _type = "if";
    inherit condition content;
  };
  mkMerge = contents: {
    _type = "merge";
    inherit contents;
  };
  mkOverride = priority: content: {
    _type = "override";
    inherit priority content;
  };
  mkDefault = mkOverride 1000;
  mkOptionDefault = mkOverride 1500;
  mkForce = mkOverride 50;

  propertyOf = v: if isAttrs v then v._type or null else null;

  # Turns one definition of a namespace into plain attribute sets whose values may still be
  # wrapped in properties. Conditions are not evaluated here (see the header).
  pushDown =
    v:
    let
      p = propertyOf v;
    in
    if p == "merge" then
      concatMap pushDown v.contents
    else if p == "if" then
      map (mapAttrs (_: mkIf v.condition)) (pushDown v.content)
    else if p == "override" then
      map (mapAttrs (_: mkOverride v.priority)) (pushDown v.content)
    else
      [ v ];

  # Discharges mkIf/mkMerge/mkOverride of one option's definitions into
  # [ { file, priority, value } ].
  flatten =
    loc: file: priority: v:
    let
      p = propertyOf v;
    in
    if p == "merge" then
      concatMap (flatten loc file priority) v.contents
    else if p == "if" then
      if !isBool v.condition then
        throw "stand-in: mkIf called with a non-Boolean condition for `${showLoc loc}' in ${file}"
      else if v.condition then
        flatten loc file priority v.content
      else
        [ ]
    else if p == "override" then
      flatten loc file v.priority v.content
    else
      [ { inherit file priority; value = v; } ];

  # Merges the definitions of a value of `type` at `loc`: properties, priorities, type check,
  # type merge. Returns [ value ] or [ ] when every definition was switched off by mkIf.
  mergeValue =
    loc: type: defs:
    let
      flat = concatMap (d: flatten loc d.file defaultPriority d.value) defs;
      best = foldl' (m: d: if d.priority < m then d.priority else m) 100000 flat;
      effective = filter (d: d.priority == best) flat;
      checked = map (
        d:
        if type.check d.value then
          d
        else
          throw "The option value `${showLoc loc}' in `${d.file}' is not of type `${type.description}'."
      ) effective;
    in
    if effective == [ ] then [ ] else [ (type.merge loc checked) ];

  mergeOption =
    loc: opt: defs:
    let
      type = if opt.type or null == null then lib.types.unspecified else opt.type;
      withDefault =
        defs
        ++ lib.optional (opt ? default) {
          file = "the option's default";
          value = mkOptionDefault opt.default;
        };
      userDefs = concatMap (d: flatten loc d.file defaultPriority d.value) defs;
      merged = mergeValue loc type withDefault;
      value =
        if (opt.readOnly or false) && length userDefs > 1 then
          throw "The option `${showLoc loc}' is read-only, but it's set multiple times."
        else if merged == [ ] then
          throw "The option `${showLoc loc}' is used but not defined."
        else
          head merged;
    in
    if (opt.apply or null) != null then opt.apply value else value;

  # Values of a namespace (a non-option attribute set of the declarations), given the
  # definitions that reached it.
  mergeNamespace =
    loc: decls: defs:
    let
      plain = concatMap (
        d:
        map (
          v:
          if isAttrs v && !(lib.isDerivation v) then
            { inherit (d) file; value = v; }
          else
            throw "stand-in: `${showLoc loc}' is a set of options, but ${d.file} defines it as a ${builtins.typeOf v}."
        ) (pushDown d.value)
      ) defs;
      defsFor = name: concatMap (d: if d.value ? ${name} then [ { inherit (d) file; value = d.value.${name}; } ] else [ ]) plain;
    in
    mapAttrs (
      name: decl:
      if isOption decl then mergeOption (loc ++ [ name ]) decl (defsFor name) else mergeNamespace (loc ++ [ name ]) decl (defsFor name)
    ) decls;

  # Every definition path with no declaration: "The option `x' does not exist" errors.
  unmatched =
    loc: decls: defs:
    let
      plain = concatMap (d: map (v: { inherit (d) file; value = v; }) (pushDown d.value)) defs;
      names = lib.unique (concatMap (d: if isAttrs d.value then attrNames d.value else [ ]) plain);
      defsFor = name: concatMap (d: if isAttrs d.value && d.value ? ${name} then [ { inherit (d) file; value = d.value.${name}; } ] else [ ]) plain;
      filesFor = name: lib.unique (map (d: d.file) (defsFor name));
    in
    concatMap (
      name:
      if !(decls ? ${name}) then
        [ "The option `${showLoc (loc ++ [ name ])}' does not exist. Definition values in: ${concatStringsSep ", " (filesFor name)}" ]
      else if isOption decls.${name} then
        [ ]
      else
        unmatched (loc ++ [ name ]) decls.${name} (defsFor name)
    ) names;

  # Merges option declarations of all modules; an option declared twice is an error.
  mergeDecls =
    loc: a: b:
    a
    // mapAttrs (
      name: v:
      if !(a ? ${name}) then
        v
      else if isOption v || isOption a.${name} then
        throw "The option `${showLoc (loc ++ [ name ])}' is declared more than once."
      else
        mergeDecls (loc ++ [ name ]) a.${name} v
    ) b;

  knownModuleKeys = [
    "_file"
    "key"
    "imports"
    "options"
    "config"
    "meta"
  ];

  evalModules =
    {
      modules,
      specialArgs ? { },
      prefix ? [ ],
    }:
    let
      args = specialArgs // {
        inherit lib config options;
      };

      callModule =
        f:
        let
          wanted = functionArgs f;
          missing = filter (n: !(wanted.${n}) && !(args ? ${n})) (attrNames wanted);
        in
        if missing != [ ] then
          throw "stand-in: a module asks for the argument `${head missing}', which the NixOS module system would not pass here."
        else
          f (intersectAttrs wanted args);

      # One module, normalised to { key, file, imports, options, config }.
      load =
        parentKey: index: m:
        let
          fromFile = isPath m || isString m;
          file = if fromFile then toString m else "${parentKey}:anon-${toString index}";
          raw = if fromFile then import m else m;
          v = if isFunction raw then callModule raw else raw;
          full = v ? options || v ? config;
          unknown = filter (n: !(elem n knownModuleKeys)) (attrNames v);
        in
        if !isAttrs v then
          throw "stand-in: module ${file} is a ${builtins.typeOf v}, not a module."
        else if full && unknown != [ ] then
          throw "stand-in: module ${file} has an unsupported attribute `${head unknown}'. (A module with `options' or `config' may only have: ${concatStringsSep ", " knownModuleKeys}.)"
        else
          {
            key = if fromFile then file else (v.key or file);
            file = v._file or file;
            imports = v.imports or [ ];
            options = v.options or { };
            config = if full then v.config or { } else removeAttrs v knownModuleKeys;
          };

      collected = genericClosure {
        startSet = lib.imap1 (i: m: load "<evalModules>" i m) modules;
        operator = m: lib.imap1 (i: load m.key i) m.imports;
      };

      declarations = foldl' (acc: m: mergeDecls prefix acc m.options) { } collected;
      definitions = map (m: { inherit (m) file; value = m.config; }) collected;

      errors = unmatched prefix declarations definitions;
      merged = mergeNamespace prefix declarations definitions;
      config = if errors == [ ] then merged else throw (head errors);
      options = declarations;
    in
    {
      inherit config options;
    };
in
{
  inherit
    evalModules
    mkOption
    mkEnableOption
    mkIf
    mkMerge
    mkOverride
    mkDefault
    mkOptionDefault
    mkForce
    ;
  isOption = isOption;
  # For the types: merge a list element / attribute value like the real `mergeDefinitions`.
  _mergeValue = mergeValue;
}
