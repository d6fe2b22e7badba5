#!/usr/bin/env python3
"""Writes samples/history-lifecycle: twelve /proc captures of one made-up host, api1, 15 s apart,
that hold every lifecycle story the analyzer reports on, with known answers (samples/README.md):
a CLOSE_WAIT leak growing by one socket per snapshot, a reboot before capture 08, client-first
TIME_WAIT churn towards one destination with its owner seen before, server-first closes, a reused
TIME_WAIT 4-tuple, a TIME_WAIT taken over early by tcp_tw_reuse (TWRecycled), FIN_WAIT2
minisockets (one that becomes TIME_WAIT), a TIME_WAIT timer above 60 s, TCPTimeWaitOverflow and
ListenOverflows increments, SYN_RECV, and ephemeral-port pressure (ip_local_port_range 40000-40099).

The files have the kernel's formats (copied layouts from history-busy). Run from the repository
root: samples/make-lifecycle.py   (replaces samples/history-lifecycle; needs only python3).
"""
import datetime
import os
import shutil

OUT = "samples/history-lifecycle"
BUSY = "samples/history-busy/00/proc"
T0 = datetime.datetime(2026, 11, 24, 2, 0, 0, tzinfo=datetime.timezone.utc)
STEP = 15  # seconds between captures
COUNT = 12
REBOOT = 8  # capture 08 is the first after the reboot
BOOT_A = "a0f1c2d3-1111-4000-8000-000000000a01"
BOOT_B = "b7e4a915-2222-4000-8000-000000000b02"
HOST = "10.0.0.1"
UPSTREAM = ("10.0.0.50", 443)


def hex_addr(ip):
    a, b, c, d = (int(x) for x in ip.split("."))
    return f"{d:02X}{c:02X}{b:02X}{a:02X}"


def tcp_line(sl, s):
    local = f"{hex_addr(s['l'])}:{s['lp']:04X}"
    remote = f"{hex_addr(s['r'])}:{s['rp']:04X}"
    timer = s.get("timer", 0)
    ticks = s.get("left_ms", 0) // 10
    queues = f"{s.get('tx', 0):08X}:{s.get('rx', 0):08X}"
    head = f"{sl:4d}: {local} {remote} {s['st']} {queues} {timer:02X}:{ticks:08X} 00000000"
    if s.get("inode", 0) == 0:  # TIME_WAIT, FIN_WAIT2 minisockets, request sockets: 12 fields
        return f"{head}     0        0 0 3 0000000000000000"
    return f"{head}     0        0 {s['inode']} 1 0000000000000000 20 4 30 10 -1"


def t(i):
    return T0 + datetime.timedelta(seconds=STEP * i)


def left(i, entered):
    """Time left at capture i of a 60 s TIME_WAIT entered `entered` seconds after T0."""
    return int(round((60 - (STEP * i - entered)) * 1000))


def build():
    snapshots = []
    kernel_tw = {i: 0 for i in range(COUNT)}  # TIME_WAIT-table entries counted by TcpExt.TW

    def tw_entry(i_seen, entered):
        # The kernel counts an entry in the interval it happened in.
        for i in range(COUNT):
            if STEP * (i - 1) < entered <= STEP * i:
                kernel_tw[i] += 1
                return

    for i in range(COUNT):
        boot_a = i < REBOOT
        socks, owners = [], {}  # owners: pid -> [inodes]
        api = 2100 if boot_a else 2300
        fetcher = 2200 if boot_a else 2400
        owners[api], owners[fetcher] = [], []

        def own(pid, s):
            socks.append(s)
            owners[pid].append(s["inode"])

        own(api, dict(l="0.0.0.0", lp=8080, r="0.0.0.0", rp=0, st="0A", inode=1000 if boot_a else 5000))
        socks.append(dict(l="0.0.0.0", lp=22, r="0.0.0.0", rp=0, st="0A", inode=900))  # sshd: owner hidden
        if boot_a:
            # The leak: socket k is ESTABLISHED in capture k-1 and CLOSE_WAIT from capture k on.
            for k in range(i + 2):
                st = "08" if k <= i else "01"
                own(api, dict(l=HOST, lp=8080, r="10.0.0.7", rp=51000 + k, st=st, rx=517 if k % 2 else 0,
                              inode=2000 + k))
            # The fetcher: 20 + 5i open connections to the upstream, plus the 6 it closes before the
            # next capture (client first, each entering TIME_WAIT 2, 4, ... 12 s after this capture).
            for n in range(20 + 5 * i):
                own(fetcher, dict(l=HOST, lp=40000 + n, r=UPSTREAM[0], rp=UPSTREAM[1], st="01", inode=3000 + n))
            for j in range(6):
                port = 40055 + (6 * (i + 1) + j) % 35
                if i + 1 < REBOOT:
                    own(fetcher, dict(l=HOST, lp=port, r=UPSTREAM[0], rp=UPSTREAM[1], st="01",
                                      inode=3100 + 6 * (i + 1) + j))
            for c in range(1, i + 1):  # closes before capture c, still in TIME_WAIT now?
                for j in range(6):
                    entered = STEP * (c - 1) + 2 * (j + 1)
                    if c == i:
                        tw_entry(i, entered)
                    if left(i, entered) > 0:
                        port = 40055 + (6 * c + j) % 35
                        socks.append(dict(l=HOST, lp=port, r=UPSTREAM[0], rp=UPSTREAM[1], st="06", timer=3,
                                          left_ms=left(i, entered)))
            # The server closes idle keep-alive connections first: two per interval.
            for c in range(1, i + 1):
                for j in range(2):
                    entered = STEP * (c - 1) + 5 * (j + 1)
                    if c == i:
                        tw_entry(i, entered)
                    if left(i, entered) > 0:
                        socks.append(dict(l=HOST, lp=8080, r="10.0.0.8", rp=52000 + 2 * c + j, st="06", timer=3,
                                          left_ms=left(i, entered)))
            # A reused 4-tuple: in TIME_WAIT since 10 s before capture 0, then a fresh TIME_WAIT on
            # the same tuple entered 3 s before capture 3.
            reused = dict(l=HOST, lp=40090, r=UPSTREAM[0], rp=UPSTREAM[1], st="06", timer=3)
            if i <= 2:
                socks.append(dict(reused, left_ms=left(i, -10)))
            elif i <= 6:
                socks.append(dict(reused, left_ms=left(i, STEP * 3 - 3)))
            if i == 3:
                tw_entry(i, STEP * 3 - 3)
            # Taken over early: TIME_WAIT entered 5 s before capture 4, a new connection on the same
            # tuple (tcp_tw_reuse) by capture 5.
            if i == 4:
                socks.append(dict(l=HOST, lp=40091, r=UPSTREAM[0], rp=UPSTREAM[1], st="06", timer=3,
                                  left_ms=left(4, STEP * 4 - 5)))
                tw_entry(i, STEP * 4 - 5)
            if i >= 5:
                own(fetcher, dict(l=HOST, lp=40091, r=UPSTREAM[0], rp=UPSTREAM[1], st="01", inode=3999))
            # FIN_WAIT2 minisockets: the api's connection to 10.0.0.9:6000 (orphaned 20 s before
            # capture 2) gets the peer's FIN 1 s before capture 4 and turns TIME_WAIT; 10.0.0.9:6001
            # is orphaned 10 s before capture 5 and never hears from the peer.
            if i == 1:
                own(api, dict(l=HOST, lp=8080, r="10.0.0.9", rp=6000, st="01", inode=2900))
            if i in (2, 3):
                socks.append(dict(l=HOST, lp=8080, r="10.0.0.9", rp=6000, st="05", timer=3,
                                  left_ms=left(i, STEP * 2 - 20)))
            if i == 2:
                tw_entry(i, STEP * 2 - 20)
            if 4 <= i <= 7:
                socks.append(dict(l=HOST, lp=8080, r="10.0.0.9", rp=6000, st="06", timer=3,
                                  left_ms=left(i, STEP * 4 - 1)))
            if i == 4:
                own(api, dict(l=HOST, lp=8080, r="10.0.0.9", rp=6001, st="01", inode=2901))
            if 5 <= i <= 7:
                socks.append(dict(l=HOST, lp=8080, r="10.0.0.9", rp=6001, st="05", timer=3,
                                  left_ms=left(i, STEP * 5 - 10)))
            if i == 5:
                tw_entry(i, STEP * 5 - 10)
            # A kernel holding TIME_WAIT for 120 s: 90 s left at capture 6.
            if i in (6, 7):
                socks.append(dict(l=HOST, lp=40092, r="10.0.0.60", rp=80, st="06", timer=3,
                                  left_ms=90000 - STEP * 1000 * (i - 6)))
            if i == 6:
                tw_entry(i, STEP * 6 - 1)
        else:
            b = i - REBOOT
            # After the reboot the new api leaks again: one more CLOSE_WAIT per capture from 09.
            for k in range(b):
                own(api, dict(l=HOST, lp=8080, r="10.0.0.7", rp=53000 + k, st="08", rx=1024, inode=6000 + k))
            for n in range(10):
                own(fetcher, dict(l=HOST, lp=40000 + n, r=UPSTREAM[0], rp=UPSTREAM[1], st="01", inode=7000 + n))
            for c in range(REBOOT + 1, i + 1):
                for j in range(3):
                    entered = STEP * (c - 1) + 4 * (j + 1)
                    if c == i:
                        tw_entry(i, entered)
                    socks.append(dict(l=HOST, lp=40020 + 3 * (c - REBOOT) + j, r=UPSTREAM[0], rp=UPSTREAM[1],
                                      st="06", timer=3, left_ms=left(i, entered)))
            # A SYN flood's tail: request sockets in SYN_RECV (timer: SYN+ACK retransmit).
            for n in range({10: 5, 11: 2}.get(i, 0)):
                socks.append(dict(l=HOST, lp=8080, r="10.0.0.20", rp=33000 + n, st="03", timer=1, left_ms=800))
        snapshots.append((socks, owners, api, fetcher))
    return snapshots, kernel_tw


def counters(i, kernel_tw):
    """TcpExt values at capture i: TW follows the entries; the others tell their stories."""
    boot_a = i < REBOOT
    first = 0 if boot_a else REBOOT
    tw = (5000 if boot_a else 12) + sum(kernel_tw[k] for k in range(first + 1, i + 1))
    return {
        "TW": tw,
        "TWRecycled": (40 if boot_a else 0) + (1 if boot_a and i >= 5 else 0),
        "TCPTimeWaitOverflow": (3 if boot_a else 0) + (7 if boot_a and i >= 7 else 0),
        "ListenOverflows": (0 if boot_a else 0) + (3 if i >= 11 else 0),
        "ListenDrops": (2 if boot_a else 0) + (3 if i >= 11 else 0),
    }


def scaled_pairs(text, i, overrides):
    """Rewrites `Section: names` / `Section: values` pairs: after the reboot every value is a
    hundredth (counters restart) and grows a little per capture; overrides set exact values."""
    lines = text.splitlines()
    out = []
    for n in range(0, len(lines) - 1, 2):
        names, values = lines[n].split(), lines[n + 1].split()
        new = [values[0]]
        for name, value in zip(names[1:], values[1:]):
            v = int(value)
            if name in overrides and names[0] == "TcpExt:":
                v = overrides[name]
            elif v > 0 and not name.startswith(("RtoAlgorithm", "RtoMin", "RtoMax", "MaxConn", "Forwarding",
                                                 "DefaultTTL", "CurrEstab")):
                v = (v if i < REBOOT else v // 100) + 37 * (i if i < REBOOT else i - REBOOT)
            new.append(str(v))
        out += [lines[n], " ".join(new)]
    return "\n".join(out) + "\n"


def write(path, text, mode="w"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode) as f:
        f.write(text)


def main():
    snapshots, kernel_tw = build()
    shutil.rmtree(OUT, ignore_errors=True)
    snmp = open(f"{BUSY}/net/snmp").read()
    netstat = open(f"{BUSY}/net/netstat").read()
    tcp_header = open(f"{BUSY}/net/tcp").readline()
    tcp6_header = open(f"{BUSY}/net/tcp6").readline()
    udp_header = open(f"{BUSY}/net/udp").readline()
    udp6_header = open(f"{BUSY}/net/udp6").readline()
    unix_header = open(f"{BUSY}/net/unix").readline()
    for i, (socks, owners, api, fetcher) in enumerate(snapshots):
        root = f"{OUT}/{i:02d}"
        proc = f"{root}/proc"
        write(f"{root}/captured_at", t(i).strftime("%Y-%m-%dT%H:%M:%S.000Z") + "\n")
        write(f"{proc}/net/tcp", tcp_header + "".join(tcp_line(n, s) + "\n" for n, s in enumerate(socks)))
        write(f"{proc}/net/tcp6", tcp6_header)
        write(f"{proc}/net/udp", udp_header)
        write(f"{proc}/net/udp6", udp6_header)
        write(f"{proc}/net/unix", unix_header)
        write(f"{proc}/net/snmp", scaled_pairs(snmp, i, {}))
        write(f"{proc}/net/netstat", scaled_pairs(netstat, i, counters(i, kernel_tw)))
        states = [s["st"] for s in socks]
        tw = states.count("06")
        write(f"{proc}/net/sockstat",
              "sockets: used {}\nTCP: inuse {} orphan {} tw {} alloc {} mem 40\nUDP: inuse 0 mem 0\n"
              "UDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n".format(
                  len(socks) - tw, len(socks) - tw, states.count("05"), tw, len(socks) - tw))
        boot_a = i < REBOOT
        uptime = 86400 + STEP * i if boot_a else 40 + STEP * (i - REBOOT)
        write(f"{proc}/uptime", f"{uptime}.00 {uptime * 2}.00\n")
        write(f"{proc}/sys/kernel/random/boot_id", (BOOT_A if boot_a else BOOT_B) + "\n")
        write(f"{proc}/sys/kernel/hostname", "api1\n")
        write(f"{proc}/sys/kernel/osrelease", "6.1.0-28-amd64\n")
        write(f"{proc}/sys/net/core/somaxconn", "4096\n")
        write(f"{proc}/sys/net/ipv4/ip_local_port_range", "40000\t40099\n")
        write(f"{proc}/sys/net/ipv4/tcp_fin_timeout", "60\n")
        write(f"{proc}/sys/net/ipv4/tcp_max_tw_buckets", "32\n")
        write(f"{proc}/sys/net/ipv4/tcp_tw_reuse", "1\n")
        os.makedirs(f"{proc}/self/ns", exist_ok=True)
        os.symlink("net:[4026531999]", f"{proc}/self/ns/net")
        start = 100 if boot_a else 250  # clock ticks after boot
        for pid, comm, cmdline in ((api, "api", "/usr/bin/api\0--listen\0:8080\0"),
                                   (fetcher, "fetcher", "/usr/bin/fetcher\0--upstream\010.0.0.50:443\0")):
            write(f"{proc}/{pid}/cmdline", cmdline)
            write(f"{proc}/{pid}/stat",
                  f"{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194304 144 0 0 0 0 0 0 0 20 0 1 0 {start + pid} "
                  "5812224 784 18446744073709551615 0 0 0 0 0 0 0 0 0 1 0 0 17 1 0 0 0 0 0\n")
            write(f"{proc}/{pid}/status",
                  f"Name:\t{comm}\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t{pid}\nNgid:\t0\nPid:\t{pid}\n"
                  f"PPid:\t1\nTracerPid:\t0\nUid:\t998\t998\t998\t998\nGid:\t998\t998\t998\t998\n")
            os.makedirs(f"{proc}/{pid}/fd", exist_ok=True)
            for fd, inode in enumerate(owners[pid], start=3):
                os.symlink(f"socket:[{inode}]", f"{proc}/{pid}/fd/{fd}")


if __name__ == "__main__":
    main()
