#!/usr/bin/env bash
# The bash completion (samples/bash-completion/sockhist) run as bash runs it on TAB, with Debian's
# bash-completion loaded, and the zsh completion (samples/zsh-completion/_sockhist) run by an
# interactive zsh under compinit (zsh_complete.zsh): subcommands, every option each --help lists,
# the choices an option lists, file names where an option names a file, for both programs.
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
expect "sockhist-collect --no-" --no-cmdline --no-connection-log --no-owners
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
echo "completion_test: bash ok ($(echo $subcommands | wc -w) subcommands, $checked of their options)"

# zsh: the same questions, typed into one interactive zsh. File names are asked relative to the
# directory holding them, as zsh offers the names in it.
command -v zsh >/dev/null || fail "zsh is not installed (./dev.sh installs it)"
zsh_lines=("sockhist ch" "sockhist me" "sockhist check --time-wait-" "sockhist show --format "
           "sockhist metrics --format j" "sockhist check --time-wait-max " "sockhist import "
           "sockhist-collect --source " "sockhist-collect --no-" "sockhist-collect --sou"
           "sockhist-collect --netns a --net" "sockhist metrics --output hi" "sockhist show --db o"
           "sockhist-collect --db h" "sockhist import ss o" "sockhist merge o" "sockhist ")
zsh_want=("check" "merge metrics" "--time-wait-max --time-wait-overflows" "csv json table"
          "json" "" "netstat sosreport ss"
          "auto netlink proc" "--no-cmdline --no-connection-log --no-owners" "--source"
          "--netns" "history.db" "other.db"
          "history.db" "other.db" "other.db" "$(echo $subcommands)")
for sub in $subcommands; do
  zsh_lines+=("sockhist $sub --")
  zsh_want+=("$(long_options sockhist "$sub" | tr '\n' ' ')")
done
zsh_lines+=("sockhist-collect --")
zsh_want+=("$(long_options sockhist-collect | tr '\n' ' ')")
ln -s "$(realpath "$(command -v sockhist)")" "$dir/sockhist"
ln -s "$(realpath "$(command -v sockhist-collect)")" "$dir/sockhist-collect"
harness=$(cd "$(dirname "$0")" && pwd)/zsh_complete.zsh
completions=$(cd "$source_dir/samples/zsh-completion" && pwd)
zsh_out=$(cd "$dir" && zsh -f "$harness" "$completions" "$dir" \
            "${zsh_lines[@]}") || fail "zsh_complete.zsh failed: $zsh_out"
[ -z "${SOCKHIST_DEBUG:-}" ] || cat -A <<<"$zsh_out" | head -20 >&2
for i in "${!zsh_lines[@]}"; do
  # The candidates after "== LINE" up to the next "== ", without the links made for the test.
  got=$(awk -v want="== ${zsh_lines[$i]}" '$0 == want { on = 1; next } /^== / { on = 0 } on' <<<"$zsh_out" |
        { grep -vx 'sockhist\|sockhist-collect' || true; } | sort -u | tr '\n' ' ')
  want=$(printf '%s\n' ${zsh_want[$i]} | sed '/^$/d' | sort -u | tr '\n' ' ')
  [ "$got" = "$want" ] || fail "zsh: '${zsh_lines[$i]}<TAB>' offers [$got], expected [$want]"
done
echo "completion_test: zsh ok (${#zsh_lines[@]} command lines)"
