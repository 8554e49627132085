#!/usr/bin/env python3
"""test_failover - what happens to clients when a worker goes away.

A real cluster (storage, two workers, the distributor) on 127.0.0.1:

- a worker SIGKILLed under a logged-in client: the client gets
  "* BYE" and is disconnected, the distributor lives on, and the user's
  next login is served by storage (the mail lands in storage's Maildir);
- the worker restarted: logins go back to it;
- the pass-through failover node (`pluto --worker NAME --failover`)
  standing in for a stopped worker: sessions reach storage through it; it
  refuses peers other than the distributor and malformed openings;
- the failover node with storage down: the login is refused cleanly.
"""

import glob
import imaplib
import os
import re
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pluto_harness as h  # noqa: E402
from pluto_harness import check  # noqa: E402
from intl_client import Session, connect, tls_context  # noqa: E402

C = h.Cluster(workers=2)
C.make_pki()
os.chmod(C.path("users.txt"), 0o600)
W = {w["name"]: w for w in C.workers}
PORT = C.ports["distributor"]
PUBLIC_CA = C.path("pki", "public.pem")


def start(node):
    if node == "storage":
        C.start("storage", "--storage", wait_port_num=C.ports["storage_mail"])
    else:
        C.start(node, "--worker", node, wait_port_num=W[node]["mail"])


for _n in ("storage", "worker-1", "worker-2"):
    start(_n)
C.start("distributor", "--distributor", wait_port_num=PORT)


def imaps():
    ctx = ssl.create_default_context(cafile=PUBLIC_CA)
    return imaplib.IMAP4_SSL("127.0.0.1", PORT, ssl_context=ctx, timeout=60)


def message(tag):
    return ("From: t@example.org\r\nSubject: %s\r\n\r\nbody %s\r\n"
            % (tag, tag)).encode()


def in_maildir(node, user, tag):
    """True when a message with Subject tag is in node's copy of user's
    INBOX."""
    for path in glob.glob(C.path("data", node, "maildirs", user, "cur",
                                 "*")) + \
            glob.glob(C.path("data", node, "maildirs", user, "new", "*")):
        try:
            with open(path, "rb") as f:
                if ("Subject: %s\r\n" % tag).encode() in f.read():
                    return True
        except OSError:
            pass
    return False


def append_as(user, tag):
    m = imaps()
    typ, data = m.login(user, "password" + user[len("user"):])
    check(typ == "OK", "login of %s" % user)
    typ, data = m.append("INBOX", None, None, message(tag))
    check(typ == "OK", "APPEND %s: %r" % (tag, data))
    typ, data = m.select("INBOX")
    check(typ == "OK", "SELECT after APPEND")
    m.logout()


def distributor_alive():
    return C.procs["distributor"].poll() is None


def count(node, pattern):
    return len(re.findall(pattern, C.log_text(node)))


def test_worker_killed_mid_session():
    append_as("user1", "before-kill")
    check(in_maildir("worker-1", "user1", "before-kill"),
          "user1's mail on worker-1")
    m = imaps()
    m.login("user1", "password1")
    m.select("INBOX")
    C.kill("worker-1")
    try:
        m.noop()
        bye = m.untagged_responses.get("BYE")
        check(False, "NOOP after the worker died should not succeed (%r)"
              % bye)
    except imaplib.IMAP4.abort as e:
        check("Backend unavailable" in str(e) or "BYE" in str(e) or
              "EOF" in str(e) or "socket" in str(e),
              "client told: %s" % e)
    time.sleep(0.2)
    check(distributor_alive(), "the distributor survived its worker")
    log = C.log_text("distributor")
    check("backend lost mid-session" in log, "logged: backend lost")


def test_bye_seen_by_raw_client():
    """The exact bytes: one BYE [UNAVAILABLE], then the end."""
    start("worker-1")
    ctx = ssl.create_default_context(cafile=PUBLIC_CA)
    import socket
    sock = socket.create_connection(("127.0.0.1", PORT), 30)
    s = Session(ctx.wrap_socket(sock, server_hostname="127.0.0.1"))
    s.readline()
    r = s.run("LOGIN user2 password2")
    check(r.status == "OK", "login: %r" % r)
    C.kill("worker-1")
    rest = b""
    try:
        while True:
            line = s.f.readline()
            if not line:
                break
            rest += line
    except OSError:
        pass
    check(rest == b"* BYE [UNAVAILABLE] Backend unavailable, please log"
          b" in again\r\n", "exactly one BYE: %r" % rest)


def test_next_login_served_by_storage():
    before = count("distributor", r"session opened at storage for worker-1")
    append_as("user1", "during-outage")
    check(count("distributor",
                r"session opened at storage for worker-1") == before + 1,
          "routed to storage on worker-1's behalf")
    check(in_maildir("storage", "user1", "during-outage"),
          "the mail landed at storage")
    check(not in_maildir("worker-1", "user1", "during-outage"),
          "not at the dead worker")
    # worker-2's users are not affected.
    append_as("user11", "w2-during-outage")
    check(in_maildir("worker-2", "user11", "w2-during-outage"),
          "worker-2 still serves its users")


def test_worker_restarted():
    start("worker-1")
    before = count("distributor", r"session opened at worker-1\"")
    append_as("user1", "after-restart")
    check(count("distributor", r"session opened at worker-1\"") ==
          before + 1, "routed back to worker-1")
    check(in_maildir("worker-1", "user1", "after-restart"),
          "the mail landed at worker-1 again")


def test_failover_node():
    C.stop("worker-2")
    C.start("failover-2", "--worker", "worker-2", "--failover",
            wait_port_num=W["worker-2"]["mail"])
    before = count("failover-2", r"forwarded to storage for worker-2")
    append_as("user12", "via-failover-node")
    check(count("failover-2", r"forwarded to storage for worker-2") ==
          before + 1, "the failover node forwarded the session")
    check(in_maildir("storage", "user12", "via-failover-node"),
          "storage took the mail")
    check(not in_maildir("worker-2", "user12", "via-failover-node"),
          "the stopped worker's Maildir was not touched")
    check(not os.path.exists(C.path("data", "worker-2", "maildirs",
                                    "user12")) or
          not in_maildir("worker-2", "user12", "via-failover-node"),
          "nothing written for worker-2")

    # Only the distributor may open sessions at it.
    port = W["worker-2"]["mail"]
    try:
        s = Session(connect(port, tls_context(C, "worker-1"), "worker-2"))
        s.send(b"PLUTO-SESSION 1 user12 192.0.2.1:1\r\n")
        line = s.f.readline()
        check(not line.startswith(b"* OK"), "worker-1's cert refused: %r"
              % line)
    except (OSError, ssl.SSLError):
        pass
    s = Session(connect(port, tls_context(C, "distributor"), "worker-2"))
    s.send(b"PLUTO-SESSION 1 user12 192.0.2.1:1 worker-1\r\n")
    line = s.f.readline()
    check(line.startswith(b"* BYE [PLUTO-SESSION]"),
          "a worker field is refused: %r" % line)
    s.close()
    s = Session(connect(port, tls_context(C, "distributor"), "worker-2"))
    s.send(b"PLUTO-SESSION 2 user12 192.0.2.1:1\r\n")
    line = s.f.readline()
    check(line.startswith(b"* BYE [PLUTO-SESSION]"),
          "another version is refused: %r" % line)
    s.close()
    log = C.log_text("failover-2")
    check("refused internal session" in log, "the refused peer is logged")


def test_failover_node_without_storage():
    C.stop("storage")
    m = imaps()
    try:
        m.login("user13", "password13")
        check(False, "login with no storage behind the failover node")
    except imaplib.IMAP4.error as e:
        check("UNAVAILABLE" in str(e), "NO [UNAVAILABLE]: %s" % e)
    finally:
        m.shutdown()
    check(distributor_alive(), "distributor alive")
    start("storage")
    append_as("user13", "storage-back")
    check(in_maildir("storage", "user13", "storage-back"),
          "served again once storage is back")


def test_failover_node_stopped_worker_back():
    check(C.stop("failover-2") == 0, "failover node exits 0 on SIGTERM")
    start("worker-2")
    append_as("user12", "worker-2-back")
    check(in_maildir("worker-2", "user12", "worker-2-back"),
          "worker-2 serves its users again")
    check(C.stop("distributor") == 0, "distributor exits 0 on SIGTERM")


if __name__ == "__main__":
    h.run_tests([
        ("worker SIGKILLed mid-session", test_worker_killed_mid_session),
        ("the client sees exactly one BYE", test_bye_seen_by_raw_client),
        ("next login served by storage", test_next_login_served_by_storage),
        ("worker restarted, logins go back", test_worker_restarted),
        ("--failover node stands in", test_failover_node),
        ("--failover node without storage",
         test_failover_node_without_storage),
        ("worker back after the failover node",
         test_failover_node_stopped_worker_back),
    ])
