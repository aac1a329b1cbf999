#!/bin/sh
# Builds the man pages from their single sources, so they cannot drift (run by CMake at build
# time, see cmake/install.cmake):
#   gen-man.sh scimsyncd.8     TEMPLATE VERSION OUT SCIMSYNCD   # SYNOPSIS is `scimsyncd --help`
#   gen-man.sh scimsync.yaml.5 TEMPLATE VERSION OUT EXAMPLE     # KEYS from the example config
# POSIX sh and awk only: it runs on any build host.
set -eu
page=$1 template=$2 version=$3 out=$4 source=$5
tmp="$out.tmp.$$"
trap 'rm -f "$tmp" "$tmp.usage" "$tmp.keys" "$tmp.header" "$tmp.example"' EXIT

# Verbatim text in roff: backslashes and hyphens escaped, no line read as a request.
verbatim() {
  sed -e 's/\\/\\e/g' -e 's/-/\\-/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"
}

# Replaces each line "@NAME@" of the template by the file given for it.
fill() {
  awk -v version="$version" '
    BEGIN { for (i = 1; i < ARGC - 1; i += 2) file["@" ARGV[i] "@"] = ARGV[i + 1]; n = ARGC; ARGC = 2; ARGV[1] = ARGV[n - 1] }
    ($0 in file) { while ((getline line < file[$0]) > 0) print line; close(file[$0]); next }
    { gsub(/@VERSION@/, version); print }
  ' "$@"
}

case "$page" in
scimsyncd.8)
  # ASAN_OPTIONS: a sanitizer build must not fail the build on a leak report at exit.
  ASAN_OPTIONS=detect_leaks=0 "$source" --help | verbatim > "$tmp.usage"
  fill USAGE "$tmp.usage" "$template" > "$tmp"
  ;;
scimsync.yaml.5)
  verbatim < "$source" > "$tmp.example"
  # The opening comment block is the page's introduction.
  awk '/^#/ { sub(/^# ?/, ""); print; next } { exit }' "$source" | verbatim > "$tmp.header"
  # One .TP per key: its dotted path, its default, and the comments above it and on its line.
  # A commented-out key ("  # tls_cert_file: ...") is an optional key at that indentation.
  awk '
    function esc(s) { gsub(/\\/, "\\e", s); gsub(/-/, "\\-", s); return s }
    function flush_text() { text = "" }
    BEGIN { depth = 0; header = 1 }
    /^[ \t]*$/ { flush_text(); header = 0; next }
    {
      line = $0; optional = 0
      if (header && line ~ /^#/) next
      header = 0
      if (line ~ /^[ \t]*#/) {
        if (match(line, /^[ \t]*# [a-z_]+:( |$)/)) {
          optional = 1
          sub(/# /, "", line)
        } else {
          sub(/^[ \t]*# ?/, "", line)
          text = text (text == "" ? "" : " ") line
          next
        }
      }
      match(line, /^[ \t]*(- )?/)
      indent = RLENGTH
      rest = substr(line, RLENGTH + 1)
      if (!match(rest, /^[a-z_]+:/)) next
      key = substr(rest, 1, RLENGTH - 1)
      value = substr(rest, RLENGTH + 1)
      comment = ""
      if (match(value, /[ \t]#[ \t]/)) { comment = substr(value, RSTART + 3); value = substr(value, 1, RSTART - 1) }
      sub(/^[ \t]+/, "", value); sub(/[ \t]+$/, "", value)
      while (depth > 0 && ind[depth] >= indent) depth--
      path = ""
      for (i = 1; i <= depth; i++) path = path name[i] "."
      path = path key
      if (value == "" && !optional) { depth++; ind[depth] = indent; name[depth] = key }
      desc = text; if (comment != "") desc = desc (desc == "" ? "" : " ") comment
      if (value == "" && desc == "" && !optional) { flush_text(); next }
      print ".TP"
      if (optional) print "\\fB" esc(path) "\\fR (optional) e.g. \\fI" esc(value) "\\fR"
      else if (value != "") print "\\fB" esc(path) "\\fR = \\fI" esc(value) "\\fR"
      else print "\\fB" esc(path) "\\fR"
      if (desc != "") { d = esc(desc); gsub(/^[.\047]/, "\\\\\\&&", d); print d }
      flush_text()
    }
  ' "$source" > "$tmp.keys"
  fill HEADER "$tmp.header" KEYS "$tmp.keys" EXAMPLE "$tmp.example" "$template" > "$tmp"
  ;;
*)
  echo "gen-man.sh: unknown page $page" >&2
  exit 64
  ;;
esac
mv "$tmp" "$out"
