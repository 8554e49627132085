#!/usr/bin/env python3
"""Replication between real pluto processes: a worker and storage linked
by their sync links, driven through internal IMAP sessions on their
MailPorts (doc/protocol.md), checked with pluto-fsck.

- steady state: appends through the worker reach storage;
- a worker SIGKILLed mid-load, failover writes at storage, restart: the
  nodes converge and no acknowledged APPEND is lost;
- storage stopped for a while: the backlog stays and drains;
- conflicting pairs applied on each side while the other is down, in
  both orders: converged, and the documented rule holds;
- hostile peers on storage's SyncPort (no certificate, a foreign CA, a
  certificate of a node that is no peer, garbage): rejected and logged,
  the node keeps serving.

Exit 77 (skipped) while the worker/storage roles do not run sync links
(nothing listens on SyncPort).
"""

import os
import socket
import ssl
import subprocess
import sys
import threading
import time

from pluto_harness import Cluster, Failure, check, run_tests, wait_port
import pluto_harness
from intl_client import Lit, Session, connect, tls_context

PLUTO_FSCK = pluto_harness.binary("PLUTO_FSCK", "pluto-fsck")
USER = "user1"


def start_storage(c):
    c.start("storage", "--storage", wait_port_num=c.ports["storage_mail"])
    wait_port(c.ports["storage_sync"], proc=c.procs["storage"])


def start_worker(c):
    w = c.workers[0]
    c.start("worker-1", "--worker", "worker-1", wait_port_num=w["mail"])
    wait_port(w["sync"], proc=c.procs["worker-1"])


def worker_session(c):
    return Session.open(c.workers[0]["mail"], tls_context(c), "worker-1",
                        USER)


def storage_session(c):
    """A failover session at storage for a user of worker-1."""
    return Session.open(c.ports["storage_mail"], tls_context(c), "storage",
                        USER, worker="worker-1")


def append(s, box, subject):
    msg = ("Subject: %s\r\n\r\nbody of %s\r\n" % (subject, subject))
    return s.run("APPEND %s " % box, Lit(msg))


def exists(s, box="INBOX"):
    r = s.run("SELECT %s" % box)
    if r.status != "OK":
        return -1
    for u in r.find(r"^\d+ EXISTS"):
        return int(u.split()[0])
    return -1


def wait_exists(c, session_fn, n, box="INBOX", timeout=20):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        s = session_fn(c)
        try:
            last = exists(s, box)
        finally:
            s.close()
        if last == n:
            return
        time.sleep(0.1)
    raise Failure("%s holds %s messages, not %d" % (box, last, n))


def fsck(c, user=USER):
    r = subprocess.run([PLUTO_FSCK, "-c", c.config, "--user", user,
                        "worker-1", "storage"],
                       capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


def converged(c, user=USER):
    """Stops both nodes (gracefully) and checks them with pluto-fsck."""
    for name in ("worker-1", "storage"):
        if name in c.procs:
            check(c.stop(name) == 0, "%s exits 0" % name)
    code, out = fsck(c, user)
    check(code == 0, "pluto-fsck finds the nodes identical:\n" + out)


def new_cluster():
    c = Cluster(workers=1)
    c.make_pki()
    return c


def settle(c, seconds=1.0):
    """Gives the links time to ship and apply what is in flight."""
    time.sleep(seconds)


# --------------------------------------------------------------------------


def test_steady_state():
    c = new_cluster()
    start_storage(c)
    start_worker(c)
    s = worker_session(c)
    for i in range(30):
        check(append(s, "INBOX", "steady %d" % i).status == "OK",
              "APPEND at the worker")
    check(s.run("CREATE Sent").status == "OK", "CREATE")
    check(append(s, "Sent", "sent").status == "OK", "APPEND to Sent")
    check(s.run("SELECT INBOX").status == "OK", "SELECT")
    check(s.run("STORE 1:5 +FLAGS (\\Seen)").status == "OK", "STORE")
    s.close()
    wait_exists(c, storage_session, 30)
    wait_exists(c, storage_session, 1, box="Sent")
    settle(c)
    converged(c)
    c.destroy()


def test_worker_killed_mid_load():
    c = new_cluster()
    start_storage(c)
    start_worker(c)
    acked = []
    stop = threading.Event()

    def load():
        try:
            s = worker_session(c)
            for i in range(100000):
                if stop.is_set():
                    break
                if append(s, "INBOX", "load %d" % i).status == "OK":
                    acked.append(i)
        except (OSError, EOFError):
            pass  # the worker died under us

    t = threading.Thread(target=load)
    t.start()
    time.sleep(1.5)
    c.kill("worker-1")
    stop.set()
    t.join(30)
    check(len(acked) > 0, "some appends were acknowledged")
    # Failover: storage serves the user and accepts writes.
    s = storage_session(c)
    for i in range(5):
        check(append(s, "INBOX", "failover %d" % i).status == "OK",
              "APPEND at storage during failover")
    s.close()
    start_worker(c)
    # Every acknowledged APPEND survived, on both nodes, plus failover's;
    # those reach the restarted worker over the sync link, so wait for
    # them (a lost APPEND still fails when the time is up).
    total = len(acked) + 5
    deadline = time.monotonic() + 30
    while True:
        s = worker_session(c)
        n = exists(s)
        s.close()
        if n >= total or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    check(n >= total, "worker holds %d >= %d messages" % (n, total))
    wait_exists(c, storage_session, n)
    wait_exists(c, worker_session, n)
    settle(c)
    converged(c)
    c.destroy()


def test_storage_down_backlog():
    c = new_cluster()
    start_storage(c)
    start_worker(c)
    s = worker_session(c)
    check(append(s, "INBOX", "before").status == "OK", "APPEND")
    s.close()
    wait_exists(c, storage_session, 1)
    check(c.stop("storage") == 0, "storage stops")
    s = worker_session(c)
    for i in range(200):
        check(append(s, "INBOX", "backlog %d" % i).status == "OK",
              "APPEND while storage is down")
    s.close()
    time.sleep(2)
    check("storage" in c.log_text("worker-1"),
          "the worker logs the unreachable peer")
    start_storage(c)
    wait_exists(c, storage_session, 201, timeout=60)
    settle(c)
    converged(c)
    c.destroy()


# Conflicting pairs: (name, setup(session), op_a(session), op_b(session),
# check(session) on the converged state).

def setup_x(s):
    check(s.run("CREATE X").status == "OK", "CREATE X")
    check(append(s, "X", "old").status == "OK", "APPEND X")


def setup_msg(s):
    check(append(s, "INBOX", "the message").status == "OK", "APPEND")


def op_delete_create(s):
    check(s.run("DELETE X").status == "OK", "DELETE X")
    check(s.run("CREATE X").status == "OK", "CREATE X")


def op_delete(s):
    check(s.run("DELETE X").status == "OK", "DELETE X")


def op_append_x(s):
    check(append(s, "X", "new").status == "OK", "APPEND X")


def op_rename(s):
    check(s.run("RENAME X Y").status == "OK", "RENAME X Y")


def op_seen(s):
    check(s.run("SELECT INBOX").status == "OK", "SELECT")
    check(s.run("STORE 1 +FLAGS (\\Seen)").status == "OK", "STORE")


def op_flagged(s):
    check(s.run("SELECT INBOX").status == "OK", "SELECT")
    check(s.run("STORE 1 +FLAGS (\\Flagged)").status == "OK", "STORE")


def op_expunge(s):
    check(s.run("SELECT INBOX").status == "OK", "SELECT")
    check(s.run("STORE 1 +FLAGS (\\Deleted)").status == "OK", "STORE")
    check(s.run("EXPUNGE").status == "OK", "EXPUNGE")


def op_append_inbox(s):
    check(append(s, "INBOX", "concurrent").status == "OK", "APPEND")


def expect_exists(box, n):
    def f(s):
        got = exists(s, box)
        check(got == n, "%s holds %d messages, expected %d" % (box, got, n))
    return f


def expect_flags(*flags):
    def f(s):
        check(s.run("SELECT INBOX").status == "OK", "SELECT")
        r = s.run("FETCH 1 (FLAGS)")
        line = " ".join(r.find("FETCH"))
        for fl in flags:
            check(fl in line, "%s set: %s" % (fl, line))
    return f


def expect_all(*fns):
    def f(s):
        for fn in fns:
            fn(s)
    return f


PAIRS = [
    ("create || delete", setup_x, op_delete_create, op_delete,
     expect_exists("X", 0)),
    ("append || delete", setup_x, op_append_x, op_delete,
     expect_exists("X", 1)),
    ("rename || append", setup_x, op_rename, op_append_x,
     expect_all(expect_exists("X", 1), expect_exists("Y", 1))),
    ("store || expunge", setup_msg, op_seen, op_expunge,
     expect_exists("INBOX", 0)),
    ("store || store", setup_msg, op_seen, op_flagged,
     expect_flags("\\Seen", "\\Flagged")),
    ("append || append", setup_msg, op_append_inbox, op_append_inbox,
     expect_exists("INBOX", 3)),
]


def run_pair(setup, op_a, op_b, check_fn, swapped):
    c = new_cluster()
    start_storage(c)
    start_worker(c)
    s = worker_session(c)
    setup(s)
    s.close()
    settle(c)
    # The partition: the worker alone, then storage alone.
    check(c.stop("storage") == 0, "storage stops")
    s = worker_session(c)
    (op_b if swapped else op_a)(s)
    s.close()
    check(c.stop("worker-1") == 0, "worker stops")
    start_storage(c)
    s = storage_session(c)
    (op_a if swapped else op_b)(s)
    s.close()
    # The link comes back.
    start_worker(c)
    settle(c, 2.0)
    for fn in (worker_session, storage_session):
        s = fn(c)
        check_fn(s)
        s.close()
    converged(c)
    c.destroy()


def make_pair_test(pair, swapped):
    name, setup, op_a, op_b, check_fn = pair
    return ("pair %s%s" % (name, " (swapped)" if swapped else ""),
            lambda: run_pair(setup, op_a, op_b, check_fn, swapped))


def raw_tls(c, ctx, server_name="storage"):
    return connect(c.ports["storage_sync"], ctx, server_name, timeout=10)


def expect_rejected(c, ctx, payload=None):
    try:
        s = raw_tls(c, ctx)
    except (ssl.SSLError, OSError):
        return  # refused in the handshake
    try:
        if payload is not None:
            s.sendall(payload)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
            if len(data) > 1 << 20:
                raise Failure("storage keeps talking to a hostile peer")
    except (ssl.SSLError, OSError):
        pass
    finally:
        s.close()


def test_hostile_peers():
    c = new_cluster()
    other = new_cluster()  # its CA is foreign to c
    start_storage(c)
    ca = c.path("pki", "internal-ca.pem")
    # No client certificate.
    expect_rejected(c, tls_context(c, cert_name=None))
    # A foreign CA's certificate naming worker-1.
    expect_rejected(c, tls_context(c, cert_name="worker-1", ca=ca,
                                   certs_dir=other.path("pki")))
    # Our CA, but a node that is not a sync peer.
    expect_rejected(c, tls_context(c, cert_name="distributor"))
    # A real worker certificate speaking garbage, and a truncated frame.
    expect_rejected(c, tls_context(c, cert_name="worker-1"),
                    b"GET / HTTP/1.0\r\n\r\n")
    expect_rejected(c, tls_context(c, cert_name="worker-1"),
                    b"PSY1\x01\x01\x00\x00\x00\x00\x10\x00abc")
    time.sleep(0.5)
    log = c.log_text("storage")
    check(log.count("rejected a link") >= 3,
          "storage logs the rejected links")
    check(c.procs["storage"].poll() is None, "storage still runs")
    # And it still serves, replication included.
    start_worker(c)
    s = worker_session(c)
    check(append(s, "INBOX", "after the attack").status == "OK", "APPEND")
    s.close()
    wait_exists(c, storage_session, 1)
    converged(c)
    other.destroy()
    c.destroy()


def sync_supported():
    """Whether the roles run sync links: storage listens on SyncPort."""
    c = new_cluster()
    try:
        c.start("storage", "--storage",
                wait_port_num=c.ports["storage_mail"])
        try:
            wait_port(c.ports["storage_sync"], timeout=3)
            return True
        except TimeoutError:
            return False
    finally:
        c.destroy()


if __name__ == "__main__":
    if not os.path.exists(PLUTO_FSCK) or not sync_supported():
        print("SKIP: the worker/storage roles do not run sync links yet "
              "(or pluto-fsck is not built)")
        sys.exit(77)
    tests = [
        ("steady state", test_steady_state),
        ("worker killed mid-load", test_worker_killed_mid_load),
        ("storage down, backlog drains", test_storage_down_backlog),
        ("hostile peers", test_hostile_peers),
    ]
    for pair in PAIRS:
        for swapped in (False, True):
            tests.append(make_pair_test(pair, swapped))
    run_tests(tests)
