#!/usr/bin/env python3
"""Writes the rows of collector/import/netstat_s_table.inc: which kernel counter each line of one
net-tools version's `netstat -s` shows.

netstat -s (net-tools) prints most counters as English phrases ("12 active connection openings")
and the rest as "Name: value"; the phrases changed between versions ("active connections openings"
in 1.60, "segments retransmited" until 2015, "fragments received ok" until 2019). To read a saved
`netstat -s` back into counters, sockhist needs each version's phrase of each counter. This script
learns them by running that version: it gives it a /proc (a tmpfs, in a private mount namespace)
whose snmp and netstat files list every counter of the running kernel, and every counter the
version's own tables name (--names-from its statistics.c: counters older kernels had, such as the
prequeue ones), each with a value of its own, and reads off which phrase printed which value. A
second run with every value zero finds the lines it leaves out when the counter is zero. Needs
root (unshare -m, mount). collector/import/netstat-s-dialects.sh runs it for every version read.

    sudo python3 collector/import/netstat-s-table.py DIALECT [--netstat CMD] [--names-from statistics.c]
"""
import os
import re
import subprocess
import sys
import tempfile

NETSTAT = "netstat -s"


def sections(path):
    """(section, [names]) pairs of a /proc/net/snmp-style file, in file order."""
    out = []
    with open(path) as f:
        lines = f.read().splitlines()
    for names, _values in zip(lines[0::2], lines[1::2]):
        section, _, rest = names.partition(":")
        out.append((section, rest.split()))
    return out


def craft(layout, value_of):
    text = []
    for section, names in layout:
        text.append(f"{section}: " + " ".join(names))
        text.append(f"{section}: " + " ".join(str(value_of(section, n)) for n in names))
    return "\n".join(text) + "\n"


def run_netstat(snmp, netstat):
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in (("snmp", snmp), ("netstat", netstat)):
            with open(os.path.join(tmp, name), "w") as f:
                f.write(text)
        script = (f"mount -t tmpfs none /proc && mkdir /proc/net && cp {tmp}/snmp {tmp}/netstat /proc/net/ "
                  f"&& LC_ALL=C {NETSTAT}")
        return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                              check=True, capture_output=True, text=True).stdout


def source_names(path):
    """{section: [names]} of the counters a statistics.c's IPv4 tables (snmptabs[]) describe."""
    with open(path, errors="replace") as f:
        text = f.read()
    tables = {}
    for m in re.finditer(r"struct entry (\w+)\[\]\s*=\s*\{(.*?)\n\};", text, re.S):
        tables[m.group(1)] = re.findall(r'\{\s*"(\w+)",', m.group(2))
    snmptabs = re.search(r"tabtab snmptabs\[\]\s*=\s*\{(.*?)\};", text, re.S).group(1)
    return {section: tables.get(table, []) for section, table in re.findall(r'\{"(\w+)", (\w+),', snmptabs)}


def widen(layout, extra):
    """The kernel's layout with the names only `extra` has appended to their sections."""
    out = []
    for section, names in layout:
        out.append((section, names + [n for n in extra.get(section, []) if n not in names]))
    return out


def main():
    args = sys.argv[1:]
    dialect = args.pop(0)
    extra = {}
    while args:
        option, value = args.pop(0), args.pop(0)
        if option == "--netstat":
            global NETSTAT
            NETSTAT = value
        elif option == "--names-from":
            extra = source_names(value)
        else:
            sys.exit(f"unknown option {option}")
    kernel = {(section, name) for section, names in sections("/proc/net/snmp") + sections("/proc/net/netstat")
              for name in names}
    snmp_layout = widen(sections("/proc/net/snmp"), extra)
    layout = snmp_layout + widen(sections("/proc/net/netstat"), extra)
    unique = {}
    for i, (section, names) in enumerate(layout):
        for j, name in enumerate(names):
            unique[(section, name)] = 7_000_001 + 1_000 * i + j
    by_value = {v: k for k, v in unique.items()}
    printed = run_netstat(craft(layout[:len(snmp_layout)], lambda s, n: unique[(s, n)]),
                          craft(layout[len(snmp_layout):], lambda s, n: unique[(s, n)]))
    zero = run_netstat(craft(layout[:len(snmp_layout)], lambda s, n: 0),
                       craft(layout[len(snmp_layout):], lambda s, n: 0))

    def phrases(text):
        section, sub = "", ""
        for line in text.splitlines():
            if not line.startswith(" "):
                section, sub = line.rstrip(":"), ""
                continue
            body = line.strip()
            numbers = re.findall(r"\d+", body)
            if not numbers:
                sub = body  # "ICMP input histogram:", heading the more deeply indented lines below it
                continue
            generic = re.fullmatch(r"(\w+): (\d+)", body)
            if generic and (section, generic.group(1)) == by_value.get(int(generic.group(2)), (None, None)):
                continue  # "Name: value" of the counter Name: read as such, needs no table
            indented = len(line) - len(line.lstrip(" ")) > 4
            yield section, sub if indented else "", numbers, body

    rows = {}
    for section, sub, numbers, body in phrases(printed):
        hits = [n for n in numbers if int(n) in by_value]
        if len(hits) != 1:
            sys.exit(f"netstat -s line with {len(hits)} counter values: {body!r}")
        counter_section, name = by_value[int(hits[0])]
        template = body.replace(hits[0], "%", 1)
        if (section, sub, template) in rows:
            sys.exit(f"two counters print the same netstat -s line: {body!r}")
        rows[(section, sub, template)] = (counter_section, name)
    shown_at_zero = set()
    for section, sub, numbers, body in phrases(zero):
        shown_at_zero.add((section, sub, re.sub(r"\d+", "%", body, count=1)))
    print(f"// {dialect}: learnt by collector/import/netstat-s-table.py on Linux {os.uname().release}")
    for (section, sub, template), (counter_section, name) in sorted(rows.items()):
        # Absent means zero only for a counter left out at zero that today's kernel still has: one
        # removed since (the prequeue counters) may be absent because the kernel had none.
        absent_is_zero = (section, sub, template) not in shown_at_zero and (counter_section, name) in kernel
        zero_flag = "true" if absent_is_zero else "false"
        print(f'{{"{dialect}", "{section}", "{sub}", "{template}", "{counter_section}", "{name}", {zero_flag}}},')


if __name__ == "__main__":
    main()
