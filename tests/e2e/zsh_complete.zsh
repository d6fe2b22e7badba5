#!/usr/bin/zsh -f
# Prints what zsh's completion system offers for each command line given: a line "== LINE", then one
# candidate per line. It runs an interactive zsh on a pseudo-terminal (zpty) with compinit and the
# completion directory given first on $fpath, types each line and presses the key of a widget that
# completes; a compadd wrapper prints each candidate that would be offered instead of adding it.
#   zsh_complete.zsh COMPLETION_DIR BIN_DIR LINE...
zmodload zsh/zpty || exit 2
completion_dir=$1 bin_dir=$2
shift 2

zpty shell zsh -f -i || exit 2
zpty -w shell "PS1='' PROMPT='' RPROMPT=''; unsetopt zle_bracketed_paste 2>/dev/null"
zpty -w shell "PATH=${(q)bin_dir}:\$PATH; fpath=(${(q)completion_dir} \$fpath)"
zpty -w shell 'autoload -Uz compinit && compinit -u -D'
# Offers nothing and prints each candidate instead. Calls that only collect (-O, -A, -D) or describe
# (no matches) go through unchanged, as the completion functions rely on them.
zpty -w shell 'compadd() {
  if (( ${@[(I)-[OAD]*]} )); then builtin compadd "$@"; return; fi
  local -a hits; builtin compadd -O hits "$@"
  (( $#hits )) && print -rl -- "<hit>"${^hits}
  return 0
}'
zpty -w shell 'capture() { zle complete-word; print -r -- "<end>"; }; zle -N capture; bindkey "^X" capture'
zpty -w shell 'print -r -- "<ready>"'

# Reads the shell's output until a line ends in the marker; prints the candidates seen meanwhile.
# zpty -r returns whatever output is ready, so lines are put together from the pieces.
read_until() {
  local marker=$1 chunk pending="" line deadline=$((SECONDS + 20))
  while (( SECONDS < deadline )); do
    if ! zpty -rt shell chunk; then
      sleep 0.05
      continue
    fi
    pending+=${chunk//$'\r'/}
    while [[ $pending == *$'\n'* ]]; do
      line=${pending%%$'\n'*}
      pending=${pending#*$'\n'}
      [[ -n $ZSH_COMPLETE_DEBUG ]] && print -r -- "raw: ${(q+)line}"
      [[ $line == *"<hit>"* && $marker == "<end>" ]] && print -r -- "${line##*<hit>}"
      [[ $line == *"$marker" ]] && return 0
    done
  done
  print -u2 "zsh_complete: no $marker from the shell within 20 s"
  return 1
}

read_until "<ready>" || exit 2
for command_line in "$@"; do
  print -r -- "== $command_line"
  zpty -w -n shell "$command_line"$'\C-x'
  read_until "<end>" || exit 2
  zpty -w -n shell $'\C-e\C-u'
done
zpty -d shell
