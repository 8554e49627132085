#!/usr/bin/env python3
"""test_distributor - the public front door, end to end, with clients
nobody here wrote: Python's imaplib (implicit TLS and STARTTLS) and curl,
plus a raw line client where the exact bytes matter.

A real cluster (storage, two workers, the distributor) runs on 127.0.0.1.
Covers the greeting and pre-login commands on both ports, LOGINDISABLED
and the plaintext refusals, STARTTLS (and refused pipelining behind it),
LOGIN with atoms, quoted strings and literals, AUTHENTICATE PLAIN with
SASL-IR and with a continuation, failed logins (delayed, logged with the
address, never the password, three then BYE), routing of users to their
worker, every mail command through the relay, pipelining, IDLE, a 20 MiB
literal, curl, and AllowPlaintextLoopback.
"""

import base64
import hashlib
import imaplib
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pluto_harness as h  # noqa: E402
from pluto_harness import check  # noqa: E402
from intl_client import Lit, Session  # noqa: E402

# Extensions imaplib does not know by name.
for _cmd in ("ID", "MOVE", "UNSELECT", "ENABLE"):
    imaplib.Commands.setdefault(_cmd, ("AUTH", "SELECTED"))

# Passwords that need a quoted string (space, quote, backslash) and a
# literal (8-bit); user ids 1..10 are worker-1's, 11..20 worker-2's.
USERS = [("user%d" % i, "password%d" % i) for i in range(1, 21)]
USERS[2] = ("user3", 'pass "word" \\ three')
USERS[3] = ("user4", "p\u00e4ssw\u00f6rd-four")
# Line 21: an id no worker's range holds.
USERS.append(("orphan", "orphan-password"))
PASSWORDS = dict(USERS)

C = h.Cluster(workers=2, users=USERS)
C.make_pki()
os.chmod(C.path("users.txt"), 0o600)
C.start("storage", "--storage", wait_port_num=C.ports["storage_mail"])
for _w in C.workers:
    C.start(_w["name"], "--worker", _w["name"], wait_port_num=_w["mail"])
C.start("distributor", "--distributor", wait_port_num=C.ports["distributor"])

PORT = C.ports["distributor"]
PLAIN_PORT = C.ports["distributor_starttls"]
h.wait_port(PLAIN_PORT)
PUBLIC_CA = C.path("pki", "public.pem")


def public_ctx():
    return ssl.create_default_context(cafile=PUBLIC_CA)


def imaps():
    return imaplib.IMAP4_SSL("127.0.0.1", PORT, ssl_context=public_ctx(),
                             timeout=60)


def raw_tls():
    """A raw session on the TLS port; greeting read."""
    sock = socket.create_connection(("127.0.0.1", PORT), 30)
    s = Session(public_ctx().wrap_socket(sock, server_hostname="127.0.0.1"))
    s.greeting = s.readline().decode()
    return s


def raw_plain(port=None):
    sock = socket.create_connection(("127.0.0.1", port or PLAIN_PORT), 30)
    s = Session(sock)
    s.greeting = s.readline().decode()
    return s


def expect_closed(s, what):
    """Reads until EOF; returns what came."""
    got = b""
    try:
        while True:
            line = s.f.readline()
            if not line:
                return got
            got += line
    except (OSError, ssl.SSLError):
        return got
    finally:
        check(True, what)


def tagged(r, status, code=None, what=""):
    check(r.status == status, "%s: wanted %s, got %r" % (what, status, r))
    if code is not None:
        check(r.text.startswith("[%s]" % code),
              "%s: wanted [%s], got %r" % (what, code, r))
    return r


def msg(n, size=None):
    body = ("From: tester@example.org\r\nTo: someone@example.org\r\n"
            "Subject: message %s\r\nMessage-ID: <%s@test>\r\n\r\n"
            "body of %s\r\n" % (n, n, n)).encode()
    return body


def worker_dir(node, user):
    return C.path("data", node, "maildirs", user)


# ---------------------------------------------------------------------------
# Before login


def test_tls_port_preauth():
    s = raw_tls()
    check(s.greeting.startswith("* OK [CAPABILITY IMAP4rev1 "),
          "greeting carries CAPABILITY: %r" % s.greeting)
    caps = s.greeting.split("]")[0].split()
    for c in ("LITERAL+", "SASL-IR", "AUTH=PLAIN", "ID"):
        check(c in caps, "greeting advertises %s" % c)
    check("STARTTLS" not in caps and "LOGINDISABLED" not in caps,
          "no STARTTLS/LOGINDISABLED under TLS")
    check("Pluto ready." in s.greeting, "greeting text from [IMAP]")
    r = tagged(s.run("CAPABILITY"), "OK", what="CAPABILITY")
    check(r.find(r"^CAPABILITY IMAP4rev1 .*AUTH=PLAIN"), "untagged caps")
    tagged(s.run("NOOP"), "OK", what="NOOP")
    r = tagged(s.run('ID ("name" "test")'), "OK", what="ID")
    check(r.find(r"^ID \("), "ID answered")
    tagged(s.run("STARTTLS"), "BAD", what="STARTTLS under TLS")
    tagged(s.run("SELECT INBOX"), "BAD", what="SELECT before login")
    tagged(s.run("LIST \"\" *"), "BAD", what="LIST before login")
    # A literal for a command that is not allowed: refused before '+'.
    r = s.run("SELECT ", Lit(b"INBOX"))
    tagged(r, "BAD", what="literal of a refused command")
    tagged(s.run("FROB"), "BAD", what="unknown command")
    s.send(b"\r\n")
    check(s.readline().startswith(b"* BAD"), "empty line: untagged BAD")
    r = s.run("LOGOUT")
    tagged(r, "OK", what="LOGOUT")
    check(r.find(r"^BYE"), "LOGOUT says BYE")
    expect_closed(s, "closed after LOGOUT")


def test_plain_port_refusals():
    s = raw_plain()
    caps = s.greeting.split("]")[0].split()
    check("STARTTLS" in caps and "LOGINDISABLED" in caps,
          "plain greeting: STARTTLS LOGINDISABLED: %r" % s.greeting)
    check("AUTH=PLAIN" not in caps, "no AUTH=PLAIN in plaintext")
    tagged(s.run("LOGIN user1 password1"), "NO", "PRIVACYREQUIRED",
           "LOGIN in plaintext")
    tagged(s.run("AUTHENTICATE PLAIN " +
                 base64.b64encode(b"\0user1\0password1").decode()),
           "NO", "PRIVACYREQUIRED", "AUTHENTICATE in plaintext")
    # The literal of a plaintext LOGIN is refused before it is sent.
    s.send(b"L1 LOGIN user1 {9}\r\n")
    line = s.readline()
    check(line.startswith(b"L1 NO [PRIVACYREQUIRED]"),
          "no '+' for a plaintext LOGIN literal: %r" % line)
    tagged(s.run("NOOP"), "OK", what="still usable")
    # Commands pipelined behind STARTTLS are refused, the line closed.
    s.send(b"S1 STARTTLS\r\nS2 LOGIN user1 password1\r\n")
    line = s.readline()
    check(line.startswith(b"S1 BAD"), "pipelined STARTTLS: %r" % line)
    check(expect_closed(s, "closed") == b"", "nothing after the BAD")
    s.close()
    log = C.log_text("distributor")
    check("data pipelined after STARTTLS" in log, "logged")


def test_starttls_raw():
    s = raw_plain()
    r = tagged(s.run("STARTTLS"), "OK", what="STARTTLS")
    tls = public_ctx().wrap_socket(s.sock, server_hostname="127.0.0.1")
    s2 = Session(tls)
    r = tagged(s2.run("CAPABILITY"), "OK", what="CAPABILITY after TLS")
    caps = r.find(r"^CAPABILITY")[0].split()
    check("AUTH=PLAIN" in caps and "STARTTLS" not in caps and
          "LOGINDISABLED" not in caps, "caps after STARTTLS: %r" % caps)
    tagged(s2.run("STARTTLS"), "BAD", what="second STARTTLS")
    r = tagged(s2.run("LOGIN user2 password2"), "OK", what="LOGIN")
    r = tagged(s2.run("SELECT INBOX"), "OK", what="SELECT after STARTTLS")
    s2.run("LOGOUT")
    s2.close()


def test_starttls_imaplib():
    m = imaplib.IMAP4("127.0.0.1", PLAIN_PORT, timeout=60)
    check("LOGINDISABLED" in m.capabilities, "imaplib sees LOGINDISABLED")
    m.starttls(ssl_context=public_ctx())
    check("AUTH=PLAIN" in m.capabilities, "caps refreshed after STARTTLS")
    typ, _ = m.login("user5", "password5")
    check(typ == "OK", "imaplib login over STARTTLS")
    typ, data = m.list()
    check(typ == "OK" and any(b"INBOX" in d for d in data), "LIST: %r"
          % data)
    m.logout()


# ---------------------------------------------------------------------------
# Logins


def test_login_forms():
    # imaplib quotes the password that needs it.
    m = imaps()
    typ, data = m.login("user3", PASSWORDS["user3"])
    check(typ == "OK", "quoted password with escapes")
    check(b"[CAPABILITY IMAP4rev1" in data[0],
          "tagged OK carries the backend's capabilities: %r" % data)
    m.logout()
    s = raw_tls()
    r = tagged(s.run("LOGIN user1 password1"), "OK", what="atoms")
    s.close()
    s = raw_tls()
    r = s.run("LOGIN ", Lit(b"user4"), " ",
              Lit(PASSWORDS["user4"].encode("utf-8")))
    tagged(r, "OK", what="synchronising literals (8-bit password)")
    tagged(s.run("NOOP"), "OK", what="session relayed")
    s.close()
    s = raw_tls()
    r = s.run("LOGIN ", Lit(b"user4", plus=True), " ",
              Lit(PASSWORDS["user4"].encode("utf-8"), plus=True))
    tagged(r, "OK", what="LITERAL+ credentials")
    s.close()


def test_authenticate():
    # Continuation: imaplib sends AUTHENTICATE PLAIN and answers '+'.
    m = imaps()
    typ, _ = m.authenticate("PLAIN", lambda _: b"\0user6\0password6")
    check(typ == "OK", "AUTHENTICATE PLAIN with a continuation")
    typ, _ = m.select("INBOX")
    check(typ == "OK", "session works after AUTHENTICATE")
    m.logout()
    # SASL-IR, with and without an authorization identity.
    for msg_ in (b"\0user7\0password7", b"user7\0user7\0password7"):
        s = raw_tls()
        r = s.run("AUTHENTICATE PLAIN " + base64.b64encode(msg_).decode())
        tagged(r, "OK", what="SASL-IR %r" % msg_[:6])
        s.close()
    s = raw_tls()
    s.send(b"A1 AUTHENTICATE PLAIN\r\n")
    check(s.readline() == b"+ \r\n", "empty challenge")
    s.send(b"*\r\n")
    check(s.readline().startswith(b"A1 BAD"), "'*' cancels")
    tagged(s.run("AUTHENTICATE PLAIN %%%"), "BAD", what="bad alphabet")
    s.send(b"A2 AUTHENTICATE PLAIN\r\n")
    s.readline()
    s.send(b"not base64!\r\n")
    check(s.readline().startswith(b"A2 BAD"), "invalid base64 response")
    tagged(s.run("AUTHENTICATE PLAIN ="), "BAD", what="empty message")
    tagged(s.run("AUTHENTICATE CRAM-MD5"), "NO", what="other mechanism")
    tagged(s.run("AUTHENTICATE PLAIN " +
                 base64.b64encode(b"user1\0user7\0password7").decode()),
           "NO", "AUTHORIZATIONFAILED", "acting as another user")
    tagged(s.run("NOOP"), "OK", what="usable after refusals")
    s.close()


def test_failed_logins():
    s = raw_tls()
    t0 = time.monotonic()
    tagged(s.run("LOGIN user1 wrong-secret-1"), "NO", "AUTHENTICATIONFAILED",
           "wrong password")
    check(time.monotonic() - t0 >= 1.0, "a failed login is delayed")
    tagged(s.run("LOGIN nosuchuser wrong-secret-2"), "NO",
           "AUTHENTICATIONFAILED", "unknown user")
    r = s.run("AUTHENTICATE PLAIN " +
              base64.b64encode(b"\0user2\0wrong-secret-3").decode())
    tagged(r, "NO", "AUTHENTICATIONFAILED", "wrong password, PLAIN")
    rest = expect_closed(s, "closed after three failures")
    check(rest.startswith(b"* BYE"), "BYE after three failures: %r" % rest)
    port = s.sock.getsockname()[1]
    log = C.log_text("distributor")
    check(re.search(r"level=warn .*nosuchuser.*127\.0\.0\.1:%d" % port, log)
          or re.search(r"nosuchuser.*peer=127\.0\.0\.1", log),
          "failure logged with the client's address")
    check("wrong-secret" not in log, "no password in the log")


def test_user_without_worker():
    s = raw_tls()
    tagged(s.run("LOGIN orphan orphan-password"), "NO", "UNAVAILABLE",
           "no worker holds id 21")
    tagged(s.run("NOOP"), "OK", what="connection still usable")
    s.close()
    check("no worker's UserStart..UserEnd holds user id 21" in
          C.log_text("distributor"), "warning logged")


def test_no_password_in_any_log():
    for name in ["distributor", "storage", "worker-1", "worker-2"]:
        log = C.log_text(name)
        for user, password in USERS[:8]:
            check(password not in log, "%s's password in %s's log"
                  % (user, name))


# ---------------------------------------------------------------------------
# Routing and the mail commands


def test_routing():
    for user, node, other in (("user8", "worker-1", "worker-2"),
                              ("user12", "worker-2", "worker-1")):
        m = imaps()
        m.login(user, PASSWORDS[user])
        typ, _ = m.append("INBOX", None, None, msg("routing-" + user))
        check(typ == "OK", "APPEND for %s" % user)
        m.logout()
        check(os.path.isdir(worker_dir(node, user)),
              "%s's Maildir on %s" % (user, node))
        check(not os.path.exists(worker_dir(other, user)),
              "%s's Maildir not on %s" % (user, other))
    log = C.log_text("worker-2")
    check("user12" in log, "worker-2 served user12")


def ok(res, what):
    typ, data = res
    check(typ == "OK", "%s: %s %r" % (what, typ, data))
    return data


def test_every_command():
    m = imaps()
    m.login("user9", "password9")
    ok(m.capability(), "CAPABILITY")
    ok(m.noop(), "NOOP")
    ok(m.create("Work"), "CREATE")
    ok(m.create("Work.Old"), "CREATE child")
    ok(m.create('"Quoted Name"'), "CREATE quoted")
    data = ok(m.list(), "LIST")
    names = b" ".join(data)
    check(b"Work.Old" in names and b"Quoted Name" in names, "LIST: %r"
          % data)
    ok(m.subscribe("Work"), "SUBSCRIBE")
    data = ok(m.lsub(), "LSUB")
    check(any(b"Work" in d for d in data if d), "LSUB: %r" % data)
    ok(m.unsubscribe("Work"), "UNSUBSCRIBE")
    ok(m.rename("Work.Old", "Work.Older"), "RENAME")
    ok(m.delete("Work.Older"), "DELETE")
    for i in range(3):
        ok(m.append("Work", r"(\Flagged)",
                    imaplib.Time2Internaldate(time.time()),
                    msg("cmd-%d" % i)), "APPEND %d" % i)
    data = ok(m.status("Work", "(MESSAGES UIDNEXT UNSEEN)"), "STATUS")
    check(b"MESSAGES 3" in data[0], "STATUS: %r" % data)
    data = ok(m.select("Work", readonly=True), "EXAMINE")
    check(data == [b"3"], "EXAMINE count: %r" % data)
    data = ok(m.select("Work"), "SELECT")
    ok(m.check(), "CHECK")
    data = ok(m.fetch("1:*", "(UID FLAGS RFC822.SIZE ENVELOPE"
                      " BODY.PEEK[HEADER.FIELDS (SUBJECT)])"), "FETCH")
    check(b"message cmd-0" in b"".join(
        x[1] if isinstance(x, tuple) else x for x in data), "FETCH body")
    data = ok(m.fetch("2", "(BODYSTRUCTURE INTERNALDATE)"), "FETCH 2")
    ok(m.store("1", "+FLAGS", r"(\Seen)"), "STORE")
    data = ok(m.search(None, "SEEN"), "SEARCH")
    check(data[0].split() == [b"1"], "SEARCH SEEN: %r" % data)
    data = ok(m.uid("SEARCH", None, "ALL"), "UID SEARCH")
    uids = data[0].split()
    check(len(uids) == 3, "three UIDs: %r" % data)
    ok(m.uid("FETCH", uids[0], "(FLAGS)"), "UID FETCH")
    ok(m.uid("STORE", uids[1], "+FLAGS", r"(\Deleted)"), "UID STORE")
    ok(m.copy("1", "INBOX"), "COPY")
    ok(m.uid("COPY", uids[0], "INBOX"), "UID COPY")
    ok(m._simple_command("MOVE", "3", "INBOX"), "MOVE")
    ok(m.uid("EXPUNGE", uids[1]), "UID EXPUNGE")
    ok(m.store("1", "+FLAGS", r"(\Deleted)"), "STORE deleted")
    ok(m.expunge(), "EXPUNGE")
    data = ok(m.select("INBOX"), "SELECT INBOX")
    check(int(data[0]) == 3, "INBOX has the 3 copied/moved: %r" % data)
    ok(m.uid("MOVE", "1:*", "Work"), "UID MOVE")
    ok(m._simple_command("UNSELECT"), "UNSELECT")
    ok(m.select("Work"), "SELECT again")
    ok(m.close(), "CLOSE")
    ok(m.namespace(), "NAMESPACE")
    ok(m._simple_command("ID", "NIL"), "ID")
    ok(m._simple_command("ENABLE", "IMAP4rev1"), "ENABLE")
    typ, _ = m.logout()
    check(typ == "BYE", "LOGOUT")


def test_idle():
    s = raw_tls()
    tagged(s.run("LOGIN user10 password10"), "OK", what="login")
    tagged(s.run("SELECT INBOX"), "OK", what="select")
    s.send(b"I1 IDLE\r\n")
    check(s.readline().startswith(b"+"), "IDLE continuation")
    m = imaps()
    m.login("user10", "password10")
    m.append("INBOX", None, None, msg("idle"))
    m.logout()
    s.sock.settimeout(10)
    line = s.readline()
    check(re.match(rb"\* \d+ EXISTS", line), "EXISTS during IDLE: %r" % line)
    s.send(b"DONE\r\n")
    r = s.wait("I1")
    tagged(r, "OK", what="IDLE done")
    s.close()


def test_pipelining():
    s = raw_tls()
    body = msg("pipelined")
    # The login and the commands behind it come in one write: the
    # distributor must pass what follows the LOGIN on to the worker.
    s.send(b"P1 LOGIN user2 password2\r\nP2 NOOP\r\nP3 CREATE Pipe\r\n"
           b"P4 APPEND Pipe {%d+}\r\n%s\r\nP5 SELECT Pipe\r\n"
           b"P6 FETCH 1 (BODY[])\r\nP7 STORE 1 +FLAGS (\\Seen)\r\n"
           b"P8 LOGOUT\r\n" % (len(body), body))
    seen = []
    fetched = b""
    while True:
        line = s.read_response_line()
        m = re.match(r"(P\d) (OK|NO|BAD)", line)
        if m:
            seen.append(m.group(1))
            check(m.group(2) == "OK", "pipelined %r" % line)
            if m.group(1) == "P8":
                break
        elif "BODY[]" in line:
            fetched = line.encode()
    check(seen == ["P%d" % i for i in range(1, 9)], "in order: %r" % seen)
    check(b"body of pipelined" in fetched, "FETCH of the pipelined APPEND")
    s.close()


def test_big_literal():
    size = 20 * 1024 * 1024
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n"
    head = b"From: big@example.org\r\nSubject: twenty MiB\r\n\r\n"
    fill = size - len(head) - 2
    body = head + (line * (fill // len(line) + 1))[:fill] + b"\r\n"
    check(len(body) == size, "built 20 MiB")
    digest = hashlib.sha256(body).hexdigest()
    m = imaps()
    m.login("user13", "password13")
    ok(m.append("INBOX", None, None, body), "APPEND 20 MiB")
    data = ok(m.select("INBOX"), "SELECT")
    n = data[0].decode()
    data = ok(m.fetch(n, "(RFC822.SIZE)"), "FETCH size")
    check(("RFC822.SIZE %d" % size).encode() in data[0], "size: %r" % data)
    data = ok(m.fetch(n, "(BODY.PEEK[])"), "FETCH 20 MiB")
    check(hashlib.sha256(data[0][1]).hexdigest() == digest,
          "20 MiB came back intact")
    m.logout()


# ---------------------------------------------------------------------------
# curl


def curl(*args, user="user14", timeout=60):
    cmd = ["curl", "-sS", "--cacert", PUBLIC_CA, "-u",
           "%s:%s" % (user, PASSWORDS[user])] + list(args)
    return subprocess.run(cmd, capture_output=True, timeout=timeout)


def test_curl():
    base = "imaps://127.0.0.1:%d" % PORT
    r = curl(base + "/")
    check(r.returncode == 0 and b"INBOX" in r.stdout,
          "curl LIST: %r %r" % (r.stdout, r.stderr))
    r = curl("-k", base + "/", user="user15")
    check(r.returncode == 0 and b"INBOX" in r.stdout, "curl -k LIST")
    with tempfile.NamedTemporaryFile(suffix=".eml") as f:
        f.write(msg("curl-upload"))
        f.flush()
        r = curl(base + "/INBOX", "--upload-file", f.name)
        check(r.returncode == 0, "curl APPEND: %r" % r.stderr)
    r = curl(base + "/INBOX", "-X", "EXAMINE INBOX")
    check(r.returncode == 0 and b"EXISTS" in r.stdout,
          "curl EXAMINE: %r %r" % (r.stdout, r.stderr))
    r = curl(base + "/INBOX;UID=1")
    check(r.returncode == 0 and b"body of curl-upload" in r.stdout,
          "curl fetches the upload: %r %r" % (r.stdout, r.stderr))
    r = curl("imap://127.0.0.1:%d/" % PLAIN_PORT, "--ssl-reqd")
    check(r.returncode == 0 and b"INBOX" in r.stdout,
          "curl over STARTTLS: %r" % r.stderr)
    r = subprocess.run(["curl", "-sS", "--cacert", PUBLIC_CA, "-u",
                        "user14:wrong", base + "/"], capture_output=True,
                       timeout=60)
    check(r.returncode != 0, "curl with a wrong password fails")


# ---------------------------------------------------------------------------
# AllowPlaintextLoopback, and no backend at all


def test_plaintext_loopback_and_no_backend():
    c = h.Cluster(workers=1, users_per_worker=2,
                  extra={"Distributor": {"AllowPlaintextLoopback": "true"}})
    c.make_pki()
    c.start("distributor", "--distributor",
            wait_port_num=c.ports["distributor"])
    h.wait_port(c.ports["distributor_starttls"])
    s = raw_plain(c.ports["distributor_starttls"])
    caps = s.greeting.split("]")[0].split()
    check("AUTH=PLAIN" in caps and "LOGINDISABLED" not in caps,
          "plaintext allowed from loopback: %r" % caps)
    t0 = time.monotonic()
    # Neither the worker nor storage runs: the login is right, the mail
    # is unavailable, and the connection stays usable.
    tagged(s.run("LOGIN user1 password1"), "NO", "UNAVAILABLE",
           "no backend")
    check(time.monotonic() - t0 < 15, "failover gave up in time")
    tagged(s.run("NOOP"), "OK", what="still not authenticated")
    log = c.log_text("distributor")
    check("failing over to storage" in log and "storage unreachable" in log,
          "both attempts logged")
    s.run("LOGOUT")
    s.close()
    check(c.stop("distributor") == 0, "SIGTERM: exit 0")
    c.destroy()


def test_sigterm_with_sessions():
    """Last: a stop says BYE to a logged-in client and exits 0."""
    s = raw_tls()
    tagged(s.run("LOGIN user16 password16"), "OK", what="login")
    tagged(s.run("SELECT INBOX"), "OK", what="select")
    check(C.stop("distributor") == 0, "distributor exits 0 on SIGTERM")
    rest = expect_closed(s, "closed on stop")
    check(rest.startswith(b"* BYE"), "BYE on stop: %r" % rest)


if __name__ == "__main__":
    h.run_tests([
        ("TLS port before login", test_tls_port_preauth),
        ("plain port refusals", test_plain_port_refusals),
        ("STARTTLS, raw", test_starttls_raw),
        ("STARTTLS, imaplib", test_starttls_imaplib),
        ("LOGIN: atoms, quoted, literals", test_login_forms),
        ("AUTHENTICATE PLAIN", test_authenticate),
        ("failed logins", test_failed_logins),
        ("routing to the user's worker", test_routing),
        ("a user no worker serves", test_user_without_worker),
        ("every command through the relay", test_every_command),
        ("IDLE through the relay", test_idle),
        ("pipelining", test_pipelining),
        ("20 MiB literal", test_big_literal),
        ("curl", test_curl),
        ("no password in any log", test_no_password_in_any_log),
        ("AllowPlaintextLoopback, no backend",
         test_plaintext_loopback_and_no_backend),
        ("SIGTERM with sessions", test_sigterm_with_sessions),
    ])
