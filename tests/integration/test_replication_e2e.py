#!/usr/bin/env python3
"""Replication end to end: IMAP clients (Python's imaplib) talk to the
distributor of a real cluster (storage, two workers); after quiescence
every user's state and Maildir are identical on the user's worker and on
storage, file for file, as pluto-fsck sees them.

- steady state: users of both workers append, store and expunge at once;
- a worker SIGKILLed mid-load: its users' sessions get BYE, log in again,
  are served by storage (failover) and keep writing; the worker comes
  back, new logins go to it, the failover writes reach it, and no APPEND
  that was answered OK is lost.
"""

import imaplib
import os
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pluto_harness as h  # noqa: E402
from pluto_harness import Failure, check, run_tests  # noqa: E402
from intl_client import Session, tls_context  # noqa: E402

PLUTO_FSCK = h.binary("PLUTO_FSCK", "pluto-fsck")
USERS_PER_WORKER = 3


def new_cluster():
    c = h.Cluster(workers=2, users_per_worker=USERS_PER_WORKER)
    c.make_pki()
    c.start("storage", "--storage", wait_port_num=c.ports["storage_mail"])
    h.wait_port(c.ports["storage_sync"], proc=c.procs["storage"])
    for w in c.workers:
        start_worker(c, w)
    c.start("distributor", "--distributor",
            wait_port_num=c.ports["distributor"])
    return c


def start_worker(c, w):
    c.start(w["name"], "--worker", w["name"], wait_port_num=w["mail"])
    h.wait_port(w["sync"], proc=c.procs[w["name"]])


def worker_of(c, user_index):
    """The worker of user<user_index> (ids are line numbers)."""
    return c.workers[(user_index - 1) // USERS_PER_WORKER]


def login(c, i):
    ctx = ssl.create_default_context(cafile=c.path("pki", "public.pem"))
    m = imaplib.IMAP4_SSL("127.0.0.1", c.ports["distributor"],
                          ssl_context=ctx, timeout=20)
    m.login("user%d" % i, "password%d" % i)
    return m


def message(i, n):
    return ("From: user%d@example.org\r\nSubject: message %d of user%d\r\n"
            "\r\nbody %d\r\n" % (i, n, i, n)).encode()


def storage_count(c, i, worker):
    """Messages in user<i>'s INBOX at storage, asked through a failover
    session (storage is never reached through the distributor while the
    worker is up)."""
    s = Session.open(c.ports["storage_mail"], tls_context(c), "storage",
                     "user%d" % i, worker=worker)
    try:
        r = s.run("SELECT INBOX")
        for u in r.find(r"^\d+ EXISTS"):
            return int(u.split()[0])
        return -1
    finally:
        s.close()


def worker_count(c, i):
    w = worker_of(c, i)
    s = Session.open(w["mail"], tls_context(c), w["name"], "user%d" % i)
    try:
        r = s.run("SELECT INBOX")
        for u in r.find(r"^\d+ EXISTS"):
            return int(u.split()[0])
        return -1
    finally:
        s.close()


def wait_replicated(c, users, timeout=60):
    """Waits until every user's INBOX holds as many messages at storage
    as at the worker, twice in a row."""
    deadline = time.monotonic() + timeout
    stable = 0
    while time.monotonic() < deadline:
        same = all(worker_count(c, i) == storage_count(
            c, i, worker_of(c, i)["name"]) for i in users)
        stable = stable + 1 if same else 0
        if stable == 2:
            return
        time.sleep(0.3)
    raise Failure("replicas did not settle within %ds" % timeout)


def fsck_all(c, users):
    """Stops every node gracefully, then compares each user's worker with
    storage."""
    for name in list(c.procs):
        check(c.stop(name) == 0, "%s exits 0 on SIGTERM" % name)
    for i in users:
        w = worker_of(c, i)["name"]
        r = subprocess.run([PLUTO_FSCK, "-c", c.config, "--user",
                            "user%d" % i, w, "storage"],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, "user%d identical on %s and storage:\n%s"
              % (i, w, r.stdout + r.stderr))


def test_steady_state():
    c = new_cluster()
    users = list(range(1, 2 * USERS_PER_WORKER + 1))
    errors = []
    kept = {}

    def client(i):
        try:
            m = login(c, i)
            m.create("Archive")
            for n in range(25):
                typ, _ = m.append("INBOX", None, None, message(i, n))
                check(typ == "OK", "APPEND user%d" % i)
                if n % 5 == 4:
                    m.select("INBOX")
                    m.store("1:*", "+FLAGS", "(\\Seen)")
                if n % 8 == 7:
                    m.select("INBOX")
                    m.store("2", "+FLAGS", "(\\Deleted)")
                    m.expunge()
            m.append("Archive", "(\\Flagged)", None, message(i, 99))
            m.select("INBOX")
            typ, data = m.search(None, "ALL")
            kept[i] = len(data[0].split())
            m.logout()
        except Exception as e:  # reported below, with the user
            errors.append("user%d: %r" % (i, e))

    threads = [threading.Thread(target=client, args=(i,)) for i in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    check(not errors, "clients ran without errors: %s" % errors)
    for i in users:
        check(kept[i] == 25 - 3, "user%d keeps 22 messages, not %d"
              % (i, kept[i]))
    wait_replicated(c, users)
    fsck_all(c, users)
    c.destroy()


def test_worker_killed_mid_load():
    c = new_cluster()
    users = list(range(1, 2 * USERS_PER_WORKER + 1))
    acked = {i: 0 for i in users}
    stop = threading.Event()
    lock = threading.Lock()

    def client(i):
        n = 0
        while not stop.is_set():
            try:
                m = login(c, i)
            except (OSError, imaplib.IMAP4.error, ssl.SSLError):
                time.sleep(0.1)  # storage may be busy taking over
                continue
            try:
                while not stop.is_set():
                    typ, _ = m.append("INBOX", None, None, message(i, n))
                    n += 1
                    if typ == "OK":
                        with lock:
                            acked[i] += 1
                m.logout()
            except (OSError, EOFError, imaplib.IMAP4.abort,
                    imaplib.IMAP4.error, ssl.SSLError):
                pass  # BYE from the distributor: log in again

    threads = [threading.Thread(target=client, args=(i,)) for i in users]
    for t in threads:
        t.start()
    time.sleep(2)
    victim = c.workers[0]
    c.kill(victim["name"])
    before = dict(acked)
    time.sleep(3)
    with lock:
        moved = [i for i in users if worker_of(c, i) is victim and
                 acked[i] > before[i]]
    check(moved, "the killed worker's users kept writing through storage")
    start_worker(c, victim)
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join(60)
    wait_replicated(c, users)
    for i in users:
        n = worker_count(c, i)
        check(n >= acked[i], "user%d: %d messages >= %d acknowledged"
              % (i, n, acked[i]))
    fsck_all(c, users)
    c.destroy()


run_tests([
    ("steady state through the distributor", test_steady_state),
    ("worker SIGKILLed mid-load", test_worker_killed_mid_load),
])
