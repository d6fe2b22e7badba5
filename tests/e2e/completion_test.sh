#!/usr/bin/env bash
# The bash completion (samples/bash-completion/sockhist) run as bash runs it on TAB, with Debian's
# bash-completion loaded: subcommands, every option each --help lists, the choices an option lists,
# file names where an option names a file, for both programs.
# shellcheck disable=SC2046,SC2086 # the expected lists are meant to split into words
set -euo pipefail
analyzer_dir=$(dirname "$1")
collector_dir=$(dirname "$2")
source_dir=$3
fail() { echo "completion_test: $*" >&2; exit 1; }
[ -f /usr/share/bash-completion/bash_completion ] ||
  fail "Debian's bash-completion is not installed (./dev.sh setup installs it)"
export PATH="$analyzer_dir:$collector_dir:$PATH"
set +u  # bash-completion reads unset variables
# shellcheck disable=SC1091
source /usr/share/bash-completion/bash_completion
# shellcheck disable=SC1091
source "$source_dir/samples/bash-completion/sockhist"

# What TAB offers at the end of LINE, one per line, sorted.
offers() {
  COMP_LINE=$1
  COMP_POINT=${#1}
  read -ra COMP_WORDS <<<"$1"
  [[ $1 == *" " ]] && COMP_WORDS+=("")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMPREPLY=()
  _sockhist
  printf '%s\n' "${COMPREPLY[@]}" | sed '/^$/d' | sort
}
expect() {  # LINE EXPECTED...
  local line=$1
  shift
  local want got
  want=$(printf '%s\n' "$@" | sed '/^$/d' | sort)
  got=$(offers "$line")
  [ "$got" = "$want" ] || fail "'$line<TAB>' offers [${got//$'\n'/ }], expected [${want//$'\n'/ }]"
}

expect "sockhist ch" check
expect "sockhist me" merge metrics
expect "sockhist check --time-wait-" --time-wait-max --time-wait-overflows
expect "sockhist show --format " csv json table
expect "sockhist metrics --format j" json
expect "sockhist check --time-wait-max " ""
expect "sockhist import " netstat sosreport ss
expect "sockhist-collect --source " auto netlink proc
expect "sockhist-collect --no-" --no-cmdline --no-owners
expect "sockhist-collect --sou" --source
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
touch "$dir/history.db" "$dir/other.db"
expect "sockhist metrics --output $dir/hi" "$dir/history.db"
expect "sockhist show --db $dir/o" "$dir/other.db"
expect "sockhist-collect --db $dir/h" "$dir/history.db"

# Every subcommand, and every option of every subcommand and of the collector, as --help lists them
# (read here by another means than the completion's own).
subcommands=$(sockhist --help | sed -n '/^Subcommands:/,$p' | awk 'NR > 1 && /^  [a-z]/ { print $1 }')
expect "sockhist " $subcommands
long_options() { "$@" --help | grep -E '^  -' | sed -E 's/^  ((-[a-zA-Z],)?--[a-z0-9-]+).*/\1/' |
  grep -oE -- '--[a-z0-9][a-z0-9-]*' | sort -u; }
checked=0
for sub in $subcommands; do
  expect "sockhist $sub --" $(long_options sockhist "$sub")
  checked=$((checked + $(long_options sockhist "$sub" | wc -l)))
done
expect "sockhist-collect --" $(long_options sockhist-collect)
[ "$checked" -gt 100 ] || fail "only $checked options checked"
echo "completion_test: ok ($(echo $subcommands | wc -w) subcommands, $checked of their options)"
