#!/usr/bin/env python3
"""idle-sessions.py - many idle authenticated IMAP sessions, then new LOGINs.

    idle-sessions.py --port P [--host H] [--sessions N] [--users PATTERN]
                     [--user-range A-B] [--password PATTERN] [--probes M]
                     [--pids PID,PID,...] [--parallel K] [--timeout S]

Opens N connections over implicit TLS (certificates not verified: a test
setup), logs each in with LOGIN (user i uses id A + i mod (B - A + 1);
'%d' in the patterns is the id) and leaves them idle.  With all of them
open it sums the resident set (VmRSS) of the processes given with --pids,
then times M new sessions one after the other: TCP connect plus TLS
handshake plus greeting, and the LOGIN command alone (first byte written
to tagged OK read), as pluto-bench times it.  Then it logs everything out.

Prints "key value" lines (sessions_open, rss_kib_total, rss_kib_<pid>,
login_p50_ms, login_p90_ms, login_p99_ms, login_max_ms, connect_p50_ms,
connect_p99_ms, open_seconds, errors) for vs-dovecot.sh to read.
Exit status 0 when every session opened, 1 otherwise.
"""

import argparse
import asyncio
import ssl
import sys
import time


def percentile(values, pct):
    """Nearest rank, like pluto-bench."""
    if not values:
        return float("nan")
    v = sorted(values)
    rank = max(1, -(-len(v) * pct // 100))
    return v[int(rank) - 1]


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Session:
    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.tag = 0

    async def command(self, text, timeout):
        """Sends one command, returns (tagged line, seconds taken)."""
        self.tag += 1
        tag = "a%d" % self.tag
        start = time.monotonic()
        self.writer.write(("%s %s\r\n" % (tag, text)).encode())
        await self.writer.drain()
        while True:
            line = await asyncio.wait_for(self.reader.readline(), timeout)
            if not line:
                raise ConnectionError("connection closed")
            if line.startswith(tag.encode() + b" "):
                return line.decode(errors="replace").strip(), \
                    time.monotonic() - start

    async def close(self, timeout):
        try:
            await self.command("LOGOUT", timeout)
        except Exception:
            pass
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), timeout)
        except Exception:
            pass


def quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def open_session(args, ctx, idx):
    """Returns (session, connect seconds, login seconds)."""
    lo, hi = args.range
    uid = lo + idx % (hi - lo + 1)
    user = args.users.replace("%d", str(uid))
    password = args.password.replace("%d", str(uid))
    start = time.monotonic()
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(args.host, args.port, ssl=ctx,
                                server_hostname=None, limit=1 << 20),
        args.timeout)
    greeting = await asyncio.wait_for(reader.readline(), args.timeout)
    connect_s = time.monotonic() - start
    s = Session(reader, writer)
    if not greeting.startswith(b"* OK"):
        writer.close()
        raise ConnectionError("greeting: %r" % greeting[:80])
    line, login_s = await s.command("LOGIN %s %s"
                                    % (quote(user), quote(password)),
                                    args.timeout)
    if line.split()[1:2] != ["OK"]:
        await s.close(args.timeout)
        raise ConnectionError("LOGIN: %s" % line[:80])
    return s, connect_s, login_s


async def run(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    sessions = []
    errors = []
    sem = asyncio.Semaphore(args.parallel)

    async def one(i):
        async with sem:
            try:
                s, _, _ = await open_session(args, ctx, i)
                sessions.append(s)
            except Exception as e:
                errors.append("%s: %s" % (type(e).__name__, e))

    t0 = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(args.sessions)))
    open_s = time.monotonic() - t0
    # Let the servers settle (lazy allocations, log flushes) first.
    await asyncio.sleep(2)
    total = 0
    per_pid = {}
    for pid in args.pids:
        per_pid[pid] = rss_kib(pid)
        total += per_pid[pid]

    logins, connects = [], []
    probe_errors = 0
    for i in range(args.probes):
        try:
            s, c, l = await open_session(args, ctx, args.sessions + i)
            connects.append(c)
            logins.append(l)
            await s.close(args.timeout)
        except Exception as e:
            probe_errors += 1
            errors.append("probe: %s: %s" % (type(e).__name__, e))

    # Idle sessions must still be alive: one NOOP each on a sample.
    alive = 0
    sample = sessions[:: max(1, len(sessions) // 50)]
    for s in sample:
        try:
            line, _ = await s.command("NOOP", args.timeout)
            if line.split()[1:2] == ["OK"]:
                alive += 1
        except Exception:
            pass

    closers = [s.close(args.timeout) for s in sessions]
    for k in range(0, len(closers), 500):
        await asyncio.gather(*closers[k:k + 500])

    print("sessions_wanted %d" % args.sessions)
    print("sessions_open %d" % len(sessions))
    print("open_seconds %.1f" % open_s)
    print("rss_kib_total %d" % total)
    for pid, kib in per_pid.items():
        print("rss_kib_%d %d" % (pid, kib))
    print("probes %d" % len(logins))
    print("probe_errors %d" % probe_errors)
    for name, vals in (("login", logins), ("connect", connects)):
        for pct in (50, 90, 99):
            print("%s_p%d_ms %.3f" % (name, pct,
                                      percentile(vals, pct) * 1000))
        print("%s_max_ms %.3f" % (name, max(vals) * 1000 if vals
                                  else float("nan")))
    print("alive %d/%d" % (alive, len(sample)))
    print("errors %d" % len(errors))
    for e in errors[:5]:
        sys.stderr.write("idle-sessions: %s\n" % e)
    return 0 if len(sessions) == args.sessions and probe_errors == 0 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sessions", type=int, default=5000)
    ap.add_argument("--users", default="user%d")
    ap.add_argument("--password", default="password%d")
    ap.add_argument("--user-range", default="1-32")
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--pids", default="")
    ap.add_argument("--parallel", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()
    lo, _, hi = args.user_range.partition("-")
    args.range = (int(lo), int(hi or lo))
    if args.range[0] > args.range[1] or args.sessions < 1:
        ap.error("bad --user-range or --sessions")
    args.pids = [int(p) for p in args.pids.split(",") if p]
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
