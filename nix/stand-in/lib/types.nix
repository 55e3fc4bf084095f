# Option types of the stand-in module system: the subset of nixpkgs' `lib.types` this repository
# and the stand-in NixOS options use, with the same names, checks and merge rules (one
# definition for `package`, equal definitions for scalars, concatenation for lists and `lines`,
# per-attribute merging for `attrsOf`, a nested module evaluation for `submodule`).
{ lib }:
let
  inherit (builtins)
    all
    attrNames
    concatMap
    concatStringsSep
    elem
    head
    isAttrs
    isBool
    isFloat
    isFunction
    isInt
    isList
    isPath
    isString
    length
    listToAttrs
    match
    tail
    toJSON
    ;

  showLoc = loc: concatStringsSep "." loc;

  mkOptionType =
    {
      name,
      description ? name,
      check ? (_: true),
      merge ? mergeEqualOption,
    }:
    {
      _type = "option-type";
      inherit
        name
        description
        check
        merge
        ;
    };

  mergeEqualOption =
    loc: defs:
    let
      first = head defs;
    in
    (builtins.foldl' (
      acc: d:
      if d.value == acc.value then
        acc
      else
        throw "The option `${showLoc loc}' has conflicting definition values: in `${acc.file}' and `${d.file}'."
    ) first (tail defs)).value;

  mergeOneOption =
    loc: defs:
    if length defs == 1 then
      (head defs).value
    else
      throw "The unique option `${showLoc loc}' is defined multiple times, in: ${concatStringsSep ", " (map (d: d.file) defs)}.";

  isDerivation = v: isAttrs v && (v.type or null) == "derivation";

  intBetween =
    lo: hi:
    mkOptionType {
      name = "intBetween";
      description = "integer between ${toString lo} and ${toString hi} (both inclusive)";
      check = v: isInt v && v >= lo && v <= hi;
    };

  types = rec {
    unspecified = mkOptionType { name = "unspecified"; };
    raw = mkOptionType {
      name = "raw";
      description = "raw value";
      merge = mergeOneOption;
    };
    anything = unspecified;

    bool = mkOptionType {
      name = "bool";
      description = "boolean";
      check = isBool;
    };
    int = mkOptionType {
      name = "int";
      description = "signed integer";
      check = isInt;
    };
    ints = {
      positive = mkOptionType {
        name = "positiveInt";
        description = "positive integer, meaning >0";
        check = v: isInt v && v > 0;
      };
      unsigned = mkOptionType {
        name = "unsignedInt";
        description = "unsigned integer, meaning >=0";
        check = v: isInt v && v >= 0;
      };
      between = intBetween;
      u16 = intBetween 0 65535;
    };
    port = ints.u16;
    float = mkOptionType {
      name = "float";
      description = "floating point number";
      check = isFloat;
    };
    number = mkOptionType {
      name = "number";
      description = "signed integer or floating point number";
      check = v: isInt v || isFloat v;
    };
    str = mkOptionType {
      name = "str";
      description = "string";
      check = isString;
    };
    nonEmptyStr = mkOptionType {
      name = "nonEmptyStr";
      description = "non-empty string";
      check = v: isString v && match "[ \t\n]*" v == null;
    };
    strMatching =
      pattern:
      mkOptionType {
        name = "strMatching ${toJSON pattern}";
        description = "string matching the pattern ${pattern}";
        check = v: isString v && match pattern v != null;
      };
    lines = mkOptionType {
      name = "lines";
      description = "strings concatenated with \"\\n\"";
      check = isString;
      merge = loc: defs: concatStringsSep "\n" (map (d: d.value) defs);
    };
    path = mkOptionType {
      name = "path";
      description = "absolute path";
      check = v: isPath v || isDerivation v || (isString v && builtins.substring 0 1 v == "/");
    };
    package = mkOptionType {
      name = "package";
      description = "package";
      check = isDerivation;
      merge = mergeOneOption;
    };
    enum =
      values:
      mkOptionType {
        name = "enum";
        description = "one of ${concatStringsSep ", " (map toJSON values)}";
        check = v: elem v values;
      };
    attrs = mkOptionType {
      name = "attrs";
      description = "attribute set";
      check = isAttrs;
      merge = loc: defs: builtins.foldl' (acc: d: acc // d.value) { } defs;
    };

    nullOr =
      elemType:
      mkOptionType {
        name = "nullOr";
        description = "null or ${elemType.description}";
        check = v: v == null || elemType.check v;
        merge =
          loc: defs:
          let
            nulls = builtins.filter (d: d.value == null) defs;
          in
          if length nulls == length defs then
            null
          else if nulls != [ ] then
            throw "The option `${showLoc loc}' is defined both null and not null, in: ${concatStringsSep ", " (map (d: d.file) defs)}."
          else
            elemType.merge loc defs;
      };

    listOf =
      elemType:
      mkOptionType {
        name = "listOf";
        description = "list of ${elemType.description}";
        check = isList;
        merge =
          loc: defs:
          concatMap (
            d:
            concatMap (
              x:
              lib._mergeValue (loc ++ [ "[definition ${d.file}]" ]) elemType [
                {
                  inherit (d) file;
                  value = x;
                }
              ]
            ) d.value
          ) defs;
      };

    attrsOf =
      elemType:
      mkOptionType {
        name = "attrsOf";
        description = "attribute set of ${elemType.description}";
        check = v: isAttrs v && !(isDerivation v);
        merge =
          loc: defs:
          let
            names = lib.unique (concatMap (d: attrNames d.value) defs);
            valueOf =
              name:
              lib._mergeValue (loc ++ [ name ]) elemType (
                concatMap (
                  d:
                  if d.value ? ${name} then
                    [
                      {
                        inherit (d) file;
                        value = d.value.${name};
                      }
                    ]
                  else
                    [ ]
                ) defs
              );
          in
          listToAttrs (
            concatMap (
              name:
              map (value: { inherit name value; }) (valueOf name)
            ) names
          );
      };
    lazyAttrsOf = attrsOf;

    either =
      a: b:
      mkOptionType {
        name = "either";
        description = "${a.description} or ${b.description}";
        check = v: a.check v || b.check v;
        merge =
          loc: defs:
          if all (d: a.check d.value) defs then
            a.merge loc defs
          else if all (d: b.check d.value) defs then
            b.merge loc defs
          else
            throw "The option `${showLoc loc}' has definitions of different types (${a.description} / ${b.description}).";
      };
    oneOf =
      ts:
      if ts == [ ] then throw "types.oneOf needs at least one type" else builtins.foldl' either (head ts) (tail ts);

    functionTo =
      resultType:
      mkOptionType {
        name = "functionTo";
        description = "function that evaluates to a(n) ${resultType.description}";
        check = isFunction;
        merge = mergeOneOption;
      };

    # A module that is only collected here and evaluated elsewhere (test nodes, defaults).
    deferredModule = mkOptionType {
      name = "deferredModule";
      description = "module";
      check = v: isAttrs v || isFunction v || isPath v;
      merge = loc: defs: {
        imports = map (
          d:
          {
            _file = d.file;
            imports = [ d.value ];
          }
        ) defs;
      };
    };

    submodule =
      modules:
      mkOptionType {
        name = "submodule";
        description = "submodule";
        check = v: isAttrs v || isFunction v;
        merge =
          loc: defs:
          (lib.evalModules {
            prefix = loc;
            specialArgs = {
              name = lib.last loc;
            };
            modules =
              lib.toList modules
              ++ map (d: {
                _file = d.file;
                imports = [ d.value ];
              }) defs;
          }).config;
      };
  };
in
types
