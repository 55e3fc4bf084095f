# Stand-in for `lib.fileset`: `unions`, `maybeMissing` and `toSource`, with the real library's
# rules that matter here: every path must exist (unless wrapped in `maybeMissing`), every file
# set must lie under `root`, and the result is a store path holding only the selected files
# (plus the directories leading to them).
{ lib }:
let
  inherit (builtins)
    any
    isAttrs
    isPath
    pathExists
    toString
    ;

  isFileset = v: isAttrs v && (v._type or null) == "fileset";

  coerce =
    context: v:
    if isFileset v then
      v
    else if isPath v then
      if pathExists v then
        {
          _type = "fileset";
          paths = [ v ];
        }
      else
        throw "lib.fileset.${context}: ${toString v} is a path that does not exist. To create a file set from a path that may not exist, use `lib.fileset.maybeMissing`."
    else
      throw "lib.fileset.${context}: expected a file set or a path, got a ${builtins.typeOf v}.";

  unions =
    list:
    if !(builtins.isList list) then
      throw "lib.fileset.unions: Argument is of type ${builtins.typeOf list}, but it should be a list instead."
    else
      {
        _type = "fileset";
        paths = builtins.concatMap (v: (coerce "unions" v).paths) list;
      };

  maybeMissing =
    path:
    if !(isPath path) then
      throw "lib.fileset.maybeMissing: Argument (${toString path}) is a string-like value, but it should be a path instead."
    else
      {
        _type = "fileset";
        paths = if pathExists path then [ path ] else [ ];
      };

  toSource =
    { root, fileset }:
    let
      set = coerce "toSource" fileset;
      rootStr = toString root;
      members = map toString set.paths;
      outside = builtins.filter (m: !(m == rootStr || lib.hasPrefix (rootStr + "/") m)) members;
      keep =
        path: _type:
        any (m: path == m || lib.hasPrefix (m + "/") path || lib.hasPrefix (path + "/") m) members;
    in
    if !(isPath root) then
      throw "lib.fileset.toSource: `root` (${toString root}) is a string-like value, but it should be a path instead."
    else if outside != [ ] then
      throw "lib.fileset.toSource: `fileset` could contain files in ${builtins.head outside}, which is not under the `root` (${rootStr})."
    else
      builtins.path {
        path = root;
        name = "source";
        filter = keep;
      };
in
{
  inherit unions maybeMissing toSource;
}
