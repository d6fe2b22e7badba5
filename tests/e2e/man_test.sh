#!/usr/bin/env bash
# The man pages as man renders them: no groff warning; every option they name is one the program
# accepts (an option run into its argument, as "--min-ageduration" was, is not); every subcommand's
# synopsis is one line with its brackets closed (a tag that spilled into its paragraph, as
# "snapshots [--since" did, is not). Each program's options are read from its own --help,
# subcommand by subcommand.
set -euo pipefail
analyzer=$1
collector=$2
source_dir=$3
fail() { echo "man_test: $*" >&2; exit 1; }
command -v groff >/dev/null || fail "groff is not installed (Debian's groff-base; ./dev.sh setup installs it)"

# Every option a program's --help lists, one per line.
options_of() {
  "$@" --help | grep -oE '(^|[ ,])--[a-z0-9][a-z0-9-]*' | sed 's/^[ ,]//'
}
known=$(mktemp)
trap 'rm -f "$known"' EXIT
subcommands=$("$analyzer" --help | sed -n '/^Subcommands:/,$p' | awk 'NR > 1 && /^  [a-z]/ { print $1 }')
{
  options_of "$collector"
  options_of "$analyzer"
  for sub in $subcommands; do
    options_of "$analyzer" "$sub"
  done
} | sort -u >"$known"
[ "$(wc -l <"$known")" -gt 40 ] || fail "only $(wc -l <"$known") options read from --help"

for page in "$source_dir/analyzer/sockhist.1" "$source_dir/collector/sockhist-collect.8"; do
  warnings=$(groff -man -ww -z "$page" 2>&1)
  [ -z "$warnings" ] || fail "$page: groff warns: $warnings"
  # Plain text as a terminal shows it, lines not filled, so that a run-together word is seen whole.
  text=$(groff -man -Tutf8 -P-cbou -rLL=200n "$page" 2>/dev/null)
  unknown=$(printf '%s\n' "$text" | grep -oE '(^|[^a-z0-9-])--[a-z0-9][a-z0-9-]*' | sed 's/^[^-]//' | sort -u |
    comm -23 - "$known")
  [ -z "$unknown" ] || fail "$page names options no --help lists: ${unknown//$'\n'/ }"
  if [[ $page == *.1 ]]; then
    for sub in $subcommands; do
      line=$(printf '%s\n' "$text" | grep -E "^ {7}$sub( |\$)" | head -1 || true)
      [ -n "$line" ] || fail "$page: no synopsis line for $sub"
      opened=$(tr -cd '[(' <<<"$line" | wc -c)
      closed=$(tr -cd '])' <<<"$line" | wc -c)
      [ "$opened" -eq "$closed" ] || fail "$page: the synopsis of $sub is cut: '$line'"
    done
  fi
  named=$(printf '%s\n' "$text" | grep -oE -- '--[a-z0-9][a-z0-9-]*' | sort -u | wc -l)
  echo "man_test: $page: $named options named, each known"
done
