#!/usr/bin/env python3
"""test_imapd - IMAP on a worker and the storage node, driven through their
internal session port (doc/protocol.md) as the distributor would: mutual
TLS with the distributor's certificate, the opening line, then IMAP.

Covers the peer checks, every command the worker and storage serve, bad
arguments for each (the session must stay usable), two sessions of one
user seeing each other's changes, 16 users appending at once, SIGTERM,
and SIGKILL in the middle of a stream of APPENDs.
"""

import os
import re
import socket
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pluto_harness as h  # noqa: E402
from pluto_harness import check  # noqa: E402
from intl_client import Lit, Session, connect, quote, tls_context  # noqa

LITERAL_LIMIT = 1048576
C = h.Cluster(workers=2,
              extra={"Limits": {"MaxLiteralSize": str(LITERAL_LIMIT)}})
C.make_pki()
W1 = C.workers[0]
STORAGE_PORT = C.ports["storage_mail"]
CTX = tls_context(C)


def start_worker():
    C.start("worker-1", "--worker", "worker-1", wait_port_num=W1["mail"])


start_worker()
C.start("storage", "--storage", wait_port_num=STORAGE_PORT)


def session(user, port=None, name="worker-1", ctx=None, worker=None):
    return Session.open(port or W1["mail"], ctx or CTX, name, user,
                        worker=worker)


def msg(n, extra=""):
    return ("From: tester@example.org\r\nSubject: message %s\r\n\r\n"
            "body %s%s\r\nend-of-message\r\n" % (n, n, extra)).encode()


def status_is(r, want, what):
    check(r.status == want and r.text.strip() != "",
          "%s: wanted %s with a reason, got %r" % (what, want, r))
    return r


def ok(r, what):
    return status_is(r, "OK", what)


def refused(r, what):
    """NO or BAD, with a reason."""
    check(r.status in ("NO", "BAD") and r.text.strip() != "",
          "%s: wanted NO or BAD with a reason, got %r" % (what, r))
    return r


def usable(s, what):
    ok(s.run("NOOP"), "session usable after " + what)


def maildir(user, box="INBOX", node="worker-1"):
    base = C.path("data", node, "maildirs", user)
    return base if box == "INBOX" else os.path.join(base, "." + box)


def files(user, box="INBOX", node="worker-1"):
    d = os.path.join(maildir(user, box, node), "cur")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def list_names(r):
    """{name: attributes} of LIST/LSUB untagged lines."""
    out = {}
    for u in r.untagged:
        m = re.match(r'(?:LIST|LSUB) \(([^)]*)\) "." (.*)$', u)
        if m:
            name = m.group(2)
            if name.startswith('"'):
                name = re.sub(r'\\(.)', r'\1', name[1:-1])
            out[name] = set(m.group(1).split())
    return out


def expect_bye(sock_or_session, what):
    s = sock_or_session
    line = s.greeting if s.greeting is not None else ""
    check(line.startswith("* BYE [PLUTO-SESSION]"),
          "%s: wanted BYE, got %r" % (what, line))
    try:
        rest = s.f.read()
    except (OSError, ssl.SSLError):
        rest = b""
    check(rest == b"", "%s: data after BYE: %r" % (what, rest))
    s.close()


def opening(port, name, line, ctx=None):
    s = Session(connect(port, ctx or CTX, name))
    s.send(line.encode() + b"\r\n")
    s.greeting = s.readline().decode(errors="replace")
    return s


# --------------------------------------------------------------------------


def test_opening_line():
    s = session("user1")
    check(s.greeting.strip() == "* OK [PLUTO-SESSION] user1 ready",
          "greeting %r" % s.greeting)
    ok(s.run("LOGOUT"), "logout")
    s.close()
    bad_lines = [
        "PLUTO-SESSION 2 user1 192.0.2.1:5",
        "HELLO",
        "PLUTO-SESSION 1 ../etc 192.0.2.1:5",
        "PLUTO-SESSION 1 .hidden 192.0.2.1:5",
        "PLUTO-SESSION 1 a/b 192.0.2.1:5",
        "PLUTO-SESSION 1 user1",
        "PLUTO-SESSION 1 user1  192.0.2.1:5",
        "PLUTO-SESSION 1 user1 192.0.2.1:5 ",
        "PLUTO-SESSION 1 user1 192.0.2.1:5 worker-1",  # only storage
        "PLUTO-SESSION 1 user1 192.0.2.1:5 worker-1 extra",
        "PLUTO-SESSION 1 " + "u" * 300 + " 192.0.2.1:5",
        "PLUTO-SESSION 1 us\x01er 192.0.2.1:5",
    ]
    for line in bad_lines:
        expect_bye(opening(W1["mail"], "worker-1", line), repr(line))
    for bad_user in ("..", "etc", "a"):
        check(not os.path.exists(C.path("data", "worker-1", "maildirs",
                                        bad_user, "..", "..", "x")),
              "nothing outside the maildir root")
    # Storage: the distributor may name a configured worker (failover
    # routed through storage), a failover node must name its own.
    s = session("user2", STORAGE_PORT, "storage", worker="worker-1")
    ok(s.run("NOOP"), "storage session for worker-1")
    s.close()
    expect_bye(opening(STORAGE_PORT, "storage",
                       "PLUTO-SESSION 1 user2 192.0.2.1:5 worker-9"),
               "unknown worker")
    w1 = tls_context(C, "worker-1")
    w2 = tls_context(C, "worker-2")
    s = session("user2", STORAGE_PORT, "storage", ctx=w1, worker="worker-1")
    ok(s.run("NOOP"), "failover session of worker-1")
    s.close()
    expect_bye(opening(STORAGE_PORT, "storage",
                       "PLUTO-SESSION 1 user2 192.0.2.1:5", ctx=w1),
               "failover session without its worker")
    expect_bye(opening(STORAGE_PORT, "storage",
                       "PLUTO-SESSION 1 user2 192.0.2.1:5 worker-1", ctx=w2),
               "worker-2 standing in for worker-1")


def expect_refused_peer(ctx, port, name, what):
    try:
        sock = connect(port, ctx, name)
    except (ssl.SSLError, OSError):
        return
    try:
        sock.sendall(b"PLUTO-SESSION 1 user1 192.0.2.1:5\r\nA NOOP\r\n")
        data = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except (ssl.SSLError, OSError):
        data = b""
    finally:
        sock.close()
    check(b"OK" not in data, "%s: the server answered %r" % (what, data))


def test_refused_peers():
    before = C.log_text("worker-1").count("refused internal session")
    other = h.Cluster(workers=2)
    other.make_pki()
    foreign = tls_context(other, "distributor",
                          ca=C.path("pki", "internal-ca.pem"))
    expect_refused_peer(foreign, W1["mail"], "worker-1", "foreign CA")
    expect_refused_peer(tls_context(C, "worker-2"), W1["mail"], "worker-1",
                        "worker-2's certificate at worker-1")
    expect_refused_peer(tls_context(C, "storage"), W1["mail"], "worker-1",
                        "storage's certificate at worker-1")
    expect_refused_peer(tls_context(C, None), W1["mail"], "worker-1",
                        "no client certificate")
    expect_refused_peer(foreign, STORAGE_PORT, "storage",
                        "foreign CA at storage")
    # Plaintext: the opening line and a command never reach IMAP.
    with socket.create_connection(("127.0.0.1", W1["mail"]), 10) as raw:
        raw.sendall(b"PLUTO-SESSION 1 user1 192.0.2.1:5\r\nA NOOP\r\n")
        data = b""
        try:
            while True:
                chunk = raw.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        check(b"OK" not in data and b"BYE" not in data,
              "plaintext peer got %r" % data)
    time.sleep(0.3)
    log = C.log_text("worker-1")
    check(log.count("refused internal session") >= before + 5,
          "refusals are logged")
    check("refused internal session from 127.0.0.1" in log,
          "refusals name the peer address")
    other.destroy()


def test_any_state_commands():
    s = session("user3")
    r = ok(s.run("CAPABILITY"), "CAPABILITY")
    caps = r.find("^CAPABILITY ")
    check(caps and "IMAP4rev1" in caps[0].split() and
          "LITERAL+" in caps[0].split(), "capabilities %r" % caps)
    ok(s.run("NOOP"), "NOOP")
    ok(s.run('ID ("name" "test")'), "ID")
    r = ok(s.run("NAMESPACE"), "NAMESPACE")
    check(r.find(r'^NAMESPACE \(\(""\s+"\."\)\) NIL NIL'), "namespace %r" % r)
    ok(s.run("ENABLE CONDSTORE"), "ENABLE")
    for cmd in ("LOGIN user3 secret", "AUTHENTICATE PLAIN", "STARTTLS"):
        status_is(s.run(cmd), "BAD", cmd)
    for cmd in ("CHECK", "CLOSE", "EXPUNGE", "UNSELECT",
                "STORE 1 +FLAGS (\\Seen)", "UID STORE 1 +FLAGS (\\Seen)",
                "UID EXPUNGE 1"):
        status_is(s.run(cmd), "BAD", cmd + " without a selected mailbox")
    for cmd in ("FETCH 1 FLAGS", "SEARCH ALL", "COPY 1 INBOX", "NOSUCH",
                "SELECT", "CREATE a b c", ""):
        refused(s.run(cmd), repr(cmd))
    usable(s, "bad commands")
    r = ok(s.run("LOGOUT"), "LOGOUT")
    check(r.find("^BYE"), "BYE before LOGOUT's OK")
    check(s.f.read() == b"", "closed after LOGOUT")
    s.close()


def test_mailboxes():
    user = "user4"
    s = session(user)
    names = ["a b", 'quo"te', "back\\slash", "&AOk-t&AOk-", "Parent.Child",
             "Parent.Child.Leaf", "lit x"]
    for n in names[:-1]:
        ok(s.run("CREATE " + quote(n)), "CREATE %r" % n)
    ok(s.run("CREATE ", Lit(names[-1])), "CREATE with a literal name")
    ok(s.run('CREATE "trail."'), "CREATE with a trailing separator")
    names.append("trail")
    r = ok(s.run('LIST "" "*"'), "LIST *")
    got = list_names(r)
    for n in names + ["INBOX"]:
        check(n in got, "LIST * lacks %r: %r" % (n, got))
    check(got["Parent"] == {"\\Noselect", "\\HasChildren"},
          "Parent %r" % got.get("Parent"))
    check(got["Parent.Child"] == {"\\HasChildren"}, "Parent.Child")
    check(got["Parent.Child.Leaf"] == {"\\HasNoChildren"}, "Leaf")
    check(got["a b"] == {"\\HasNoChildren"}, "a b")
    got = list_names(ok(s.run('LIST "" "%"'), "LIST %"))
    check("Parent" in got and "Parent.Child" not in got and "INBOX" in got,
          "LIST %% %r" % got)
    r = ok(s.run('LIST "" ""'), 'LIST "" ""')
    check(r.untagged == ['LIST (\\Noselect) "." ""'], "root %r" % r)
    got = list_names(ok(s.run('LIST "Parent." "%"'), "LIST with reference"))
    check(set(got) == {"Parent.Child"}, "LIST Parent. %% %r" % got)
    got = list_names(ok(s.run('LIST "" "Parent.*"'), "LIST Parent.*"))
    check(set(got) == {"Parent.Child", "Parent.Child.Leaf"}, "%r" % got)
    got = list_names(ok(s.run('LIST "" "inbox"'), "LIST inbox"))
    check(set(got) == {"INBOX"}, "INBOX is case-insensitive: %r" % got)
    got = list_names(ok(s.run('LIST "" "*%*%*%*%*%*%*%*%*%*%*x"'),
                        "LIST with many wildcards"))
    check(set(got) == {"lit x"}, "many wildcards %r" % got)
    check(os.path.isdir(maildir(user, "&AOk-t&AOk-")), "mUTF-7 folder")
    check(os.path.isdir(maildir(user, "Parent.Child.Leaf")), "nested")

    for cmd in ('CREATE ""', "CREATE INBOX", "CREATE inbox",
                'CREATE "a b"', 'CREATE "a..b"', 'CREATE ".hidden"',
                'CREATE "x*"', 'CREATE "y%"', 'CREATE "&Jjo"',
                'CREATE "."', 'CREATE "a/b"', 'DELETE "nope"',
                "DELETE INBOX", 'DELETE ""', 'RENAME "nope" "x"',
                'RENAME "a b" "Parent.Child"', 'RENAME INBOX "x"',
                'SELECT "nope"', 'EXAMINE ""', "CREATE",
                b'CREATE "caf\xc3\xa9"'):
        refused(s.run(cmd), repr(cmd))
        usable(s, repr(cmd))
    refused(s.run("CREATE ", Lit(b"bad\r\nname")), "CRLF in a name")
    refused(s.run("CREATE ", Lit(b"nul\x00name")), "NUL in a name")
    refused(s.run("CREATE ", Lit("x" * 300)), "too long a name")
    usable(s, "bad names")

    ok(s.run('DELETE "a b"'), "DELETE")
    check(not os.path.exists(maildir(user, "a b")), "folder removed")
    ok(s.run('DELETE "Parent.Child"'), "DELETE of a parent")
    got = list_names(ok(s.run('LIST "" "Parent*"'), "LIST after DELETE"))
    check(got.get("Parent.Child") == {"\\Noselect", "\\HasChildren"},
          "deleted parent with inferiors %r" % got)
    ok(s.run('RENAME "Parent.Child.Leaf" "Moved"'), "RENAME")
    ok(s.run('CREATE "Moved.Sub"'), "CREATE inferior")
    ok(s.run('RENAME "Moved" "Renamed"'), "RENAME with inferiors")
    got = list_names(ok(s.run('LIST "" "*"'), "LIST after RENAME"))
    check("Renamed" in got and "Renamed.Sub" in got and "Moved" not in got
          and "Parent" not in got, "after RENAME %r" % got)
    s.close()


def append(s, box, body, flags=None, date=None, plus=False):
    parts = ["APPEND " + quote(box) + " "]
    if flags is not None:
        parts.append("(" + flags + ") ")
    if date is not None:
        parts.append('"' + date + '" ')
    parts.append(Lit(body, plus=plus))
    return s.run(*parts)


def appenduid(r):
    m = re.search(r"\[APPENDUID (\d+) (\d+)\]", r.text)
    check(m is not None, "APPENDUID in %r" % r)
    return int(m.group(1)), int(m.group(2))


def test_select_examine():
    user = "user5"
    s = session(user)
    ok(s.run("CREATE box"), "CREATE")
    ok(append(s, "box", msg(1), "\\Seen"), "APPEND 1")
    ok(append(s, "box", msg(2)), "APPEND 2")
    ok(append(s, "box", msg(3), "\\Seen \\Flagged kw1"), "APPEND 3")
    r = ok(s.run("SELECT box"), "SELECT")
    check(r.text.startswith("[READ-WRITE]"), "READ-WRITE %r" % r.text)
    flags = r.find(r"^FLAGS \(")
    check(flags and "kw1" in flags[0] and "\\Seen" in flags[0], "FLAGS")
    check(r.find(r"^3 EXISTS$") and r.find(r"^0 RECENT$"), "EXISTS/RECENT")
    check(r.find(r"^OK \[UNSEEN 2\]"), "UNSEEN %r" % r.untagged)
    check(r.find(r"^OK \[UIDVALIDITY \d+\]"), "UIDVALIDITY")
    check(r.find(r"^OK \[UIDNEXT 4\]"), "UIDNEXT %r" % r.untagged)
    check(r.find(r"^OK \[PERMANENTFLAGS \(.*\\\*\)\]"), "PERMANENTFLAGS")
    r = ok(s.run("EXAMINE box"), "EXAMINE")
    check(r.text.startswith("[READ-ONLY]"), "READ-ONLY %r" % r.text)
    check(r.find(r"^OK \[PERMANENTFLAGS \(\)\]"), "no permanent flags")
    status_is(s.run("STORE 1 +FLAGS (\\Deleted)"), "NO", "STORE read-only")
    status_is(s.run("EXPUNGE"), "NO", "EXPUNGE read-only")
    ok(append(s, "box", msg(4)), "APPEND to the examined mailbox")
    r = ok(s.run("CLOSE"), "CLOSE read-only")
    check(not r.find("EXPUNGE"), "CLOSE read-only expunges nothing")
    refused(s.run("SELECT nope"), "SELECT missing")
    ok(s.run("SELECT box"), "SELECT again")
    refused(s.run("SELECT nope"), "SELECT missing while selected")
    status_is(s.run("STORE 1 +FLAGS (\\Seen)"), "BAD",
              "a failed SELECT deselects")
    ok(s.run('CREATE "with space &AOk-"'), "CREATE")
    r = ok(s.run('SELECT "with space &AOk-"'), "SELECT with space, mUTF-7")
    check(r.find("^0 EXISTS$"), "empty")
    s.close()


def test_append():
    user = "user6"
    s = session(user)
    ok(s.run("CREATE box"), "CREATE")
    n = 0
    uv, uid = appenduid(ok(append(s, "box", msg(1), "\\Seen \\Draft kw",
                                  "14-Jul-2017 02:44:25 +0200"),
                           "APPEND with flags and date"))
    n += 1
    check(uid == 1, "first UID %d" % uid)
    ok(append(s, "box", msg(2)), "APPEND plain")
    n += 1
    ok(append(s, "box", msg(3), plus=True), "APPEND LITERAL+")
    n += 1
    ok(append(s, "box", msg(4), flags=""), "APPEND with ()")
    n += 1
    r = status_is(append(s, "nope", msg(5)), "NO", "APPEND missing")
    check("[TRYCREATE]" in r.text, "TRYCREATE %r" % r)
    for flags in ("\\Recent", "\\Bogus", "(nested)"):
        refused(append(s, "box", msg(6), flags), "flags " + flags)
    refused(append(s, "box", msg(7), None, "32-Jan-2017 02:44:25 +0200"),
            "bad date")
    refused(append(s, "box", msg(7), None, "yesterday"), "bad date")
    usable(s, "bad APPEND arguments")
    # Literal sizes the client cannot have meant.
    for size in (b"{-1}", b"{99999999999}", b"{99999999999999999999999}",
                 b"{%d}" % (LITERAL_LIMIT + 1)):
        s.send(b"L1 APPEND box " + size + b"\r\n")
        line = s.read_response_line()
        check(line.startswith("L1 BAD") or line.startswith("L1 NO"),
              "literal %r: %r" % (size, line))
        usable(s, "literal %r" % size)
    big = b"x" * (LITERAL_LIMIT - 100)
    ok(append(s, "box", b"Subject: big\r\n\r\n" + big), "APPEND near limit")
    n += 1
    r = ok(s.run("STATUS box (MESSAGES)"), "STATUS")
    check(r.find(r"MESSAGES %d\)" % n), "%d messages: %r" % (n, r))
    check(len(files(user, "box")) == n, "%d files" % n)
    contents = [open(os.path.join(maildir(user, "box"), "cur", f),
                     "rb").read() for f in files(user, "box")]
    check(msg(1) in contents and msg(2) in contents, "bodies on disk")
    check(any(f.endswith(":2,DS") for f in files(user, "box")),
          "flags in the file name %r" % files(user, "box"))
    # An oversized LITERAL+ cannot be skipped: BAD, then the session ends.
    s.send(b"L2 APPEND box {%d+}\r\n" % (LITERAL_LIMIT + 1))
    line = s.read_response_line()
    check(line.startswith("L2 BAD"), "oversized LITERAL+: %r" % line)
    try:
        rest = s.f.read()
    except (OSError, ssl.SSLError):
        rest = b""
    check(b"OK" not in rest, "closed after an oversized LITERAL+")
    s.close()


def test_store():
    user = "user7"
    s = session(user)
    ok(s.run("CREATE box"), "CREATE")
    uids = [appenduid(ok(append(s, "box", msg(i)), "APPEND"))[1]
            for i in range(3)]
    ok(s.run("SELECT box"), "SELECT")
    r = ok(s.run("STORE 1 FLAGS (\\Seen)"), "FLAGS")
    check(r.untagged == ["1 FETCH (FLAGS (\\Seen))"], "%r" % r.untagged)
    r = ok(s.run("STORE 1:3 +FLAGS (\\Flagged)"), "+FLAGS")
    check(len(r.find(r"^\d FETCH \(FLAGS \(.*\\Flagged")) == 3, "%r" % r)
    r = ok(s.run("STORE 2 -FLAGS (\\Flagged)"), "-FLAGS")
    check(r.untagged == ["2 FETCH (FLAGS ())"], "%r" % r.untagged)
    r = ok(s.run("STORE 1 +FLAGS.SILENT (\\Answered)"), "+FLAGS.SILENT")
    check(not r.find("FETCH"), "silent %r" % r.untagged)
    r = ok(s.run("STORE 1 -FLAGS.SILENT (\\Answered)"), "-FLAGS.SILENT")
    check(not r.find("FETCH"), "silent %r" % r.untagged)
    r = ok(s.run("STORE 3 FLAGS.SILENT (\\Seen kw2)"), "FLAGS.SILENT")
    check(not r.find("FETCH") and r.find(r"^FLAGS \(.*kw2"),
          "new keyword announced, no FETCH: %r" % r.untagged)
    r = ok(s.run("STORE * +FLAGS (kw3)"), "STORE *")
    check(r.find(r"^FLAGS \(.*kw3") and
          r.find(r"^3 FETCH \(FLAGS \(\\Seen kw2 kw3\)\)$") or
          r.find(r"^3 FETCH \(FLAGS \(\\Seen kw3 kw2\)\)$"),
          "keywords %r" % r.untagged)
    r = ok(s.run("UID STORE %d:* +FLAGS (\\Draft)" % uids[1]), "UID STORE")
    check(len(r.find(r"^\d FETCH \(UID \d+ FLAGS")) == 2, "%r" % r)
    r = ok(s.run("UID STORE 999 +FLAGS (\\Seen)"), "UID STORE missing UID")
    check(not r.find("FETCH"), "%r" % r)
    for cmd in ("STORE 0 +FLAGS (\\Seen)", "STORE 4 +FLAGS (\\Seen)",
                "STORE 1:5 +FLAGS (\\Seen)", "STORE 2,9 +FLAGS (\\Seen)",
                "STORE 1 +FLAGS (\\Recent)", "STORE 1 +FLAGS (\\Bogus)",
                "STORE 1 BOGUS (\\Seen)", "STORE a +FLAGS (\\Seen)",
                "STORE 1", "STORE 4294967296 +FLAGS (\\Seen)",
                "UID STORE 0 +FLAGS (\\Seen)"):
        refused(s.run(cmd), cmd)
        usable(s, cmd)
    r = ok(s.run("STATUS box (UNSEEN)"), "STATUS")
    check(r.find(r"UNSEEN 1\)"), "one unseen %r" % r)
    names = files(user, "box")
    check(any(re.search(r":2,D?F?S?$", f) and "S" in f.split(":2,")[1]
              for f in names), "flags on disk %r" % names)
    s.close()


def test_expunge_close_unselect():
    user = "user8"
    s = session(user)
    ok(s.run("CREATE empty"), "CREATE")
    ok(s.run("SELECT empty"), "SELECT empty")
    ok(s.run("EXPUNGE"), "EXPUNGE on an empty mailbox")
    for cmd in ("STORE 1 +FLAGS (\\Deleted)", "STORE 1:* +FLAGS (\\Deleted)",
                "STORE * +FLAGS (\\Deleted)"):
        refused(s.run(cmd), cmd + " on an empty mailbox")
    ok(s.run("UID STORE 1:* +FLAGS (\\Deleted)"), "UID STORE, empty")
    ok(s.run("UID EXPUNGE 1:*"), "UID EXPUNGE, empty")
    ok(s.run("CHECK"), "CHECK")
    ok(s.run("CREATE box"), "CREATE")
    uids = [appenduid(ok(append(s, "box", msg(i)), "APPEND"))[1]
            for i in range(7)]
    ok(s.run("SELECT box"), "SELECT")
    ok(s.run("STORE 2,4 +FLAGS.SILENT (\\Deleted)"), "mark")
    r = ok(s.run("EXPUNGE"), "EXPUNGE")
    check(r.untagged == ["4 EXPUNGE", "2 EXPUNGE"], "%r" % r.untagged)
    check(len(files(user, "box")) == 5, "files %r" % files(user, "box"))
    # Left: uids 0 2 4 5 6.  UID EXPUNGE removes only the named one.
    ok(s.run("STORE 1:2 +FLAGS.SILENT (\\Deleted)"), "mark")
    r = ok(s.run("UID EXPUNGE %d" % uids[2]), "UID EXPUNGE")
    check(r.untagged == ["2 EXPUNGE"], "%r" % r.untagged)
    refused(s.run("UID EXPUNGE 0"), "UID EXPUNGE 0")
    # Left: 0(deleted) 4 5 6.  UNSELECT expunges nothing, CLOSE silently.
    ok(s.run("UNSELECT"), "UNSELECT")
    r = ok(s.run("STATUS box (MESSAGES)"), "STATUS")
    check(r.find(r"MESSAGES 4\)"), "UNSELECT kept it %r" % r)
    ok(s.run("SELECT box"), "SELECT")
    r = ok(s.run("CLOSE"), "CLOSE")
    check(not r.find("EXPUNGE"), "CLOSE is silent %r" % r)
    r = ok(s.run("STATUS box (MESSAGES)"), "STATUS")
    check(r.find(r"MESSAGES 3\)"), "CLOSE expunged %r" % r)
    status_is(s.run("CLOSE"), "BAD", "CLOSE when not selected")
    check(len(files(user, "box")) == 3, "files %r" % files(user, "box"))
    s.close()


def test_status_subscribe():
    user = "user9"
    s = session(user)
    ok(s.run("CREATE box"), "CREATE")
    ok(append(s, "box", msg(1), "\\Seen"), "APPEND")
    ok(append(s, "box", msg(2)), "APPEND")
    r = ok(s.run("STATUS box (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)"),
           "STATUS")
    m = r.find(r'^STATUS "box" \(MESSAGES 2 RECENT 0 UIDNEXT 3 '
               r'UIDVALIDITY \d+ UNSEEN 1\)$')
    check(m, "STATUS %r" % r.untagged)
    refused(s.run("STATUS nope (MESSAGES)"), "STATUS missing")
    refused(s.run("STATUS box (BOGUS)"), "STATUS bad item")
    refused(s.run("STATUS box"), "STATUS without items")
    refused(s.run('STATUS "" (MESSAGES)'), "STATUS empty name")
    for n in ("box", "x.y", "gone"):
        ok(s.run("SUBSCRIBE " + quote(n)), "SUBSCRIBE " + n)
    got = list_names(ok(s.run('LSUB "" "*"'), "LSUB *"))
    check(set(got) == {"box", "x.y", "gone"}, "LSUB * %r" % got)
    got = list_names(ok(s.run('LSUB "" "%"'), "LSUB %"))
    check(got.get("x") == {"\\Noselect"} and "x.y" not in got,
          "LSUB %% %r" % got)
    ok(s.run("UNSUBSCRIBE gone"), "UNSUBSCRIBE")
    refused(s.run('SUBSCRIBE ""'), "SUBSCRIBE empty")
    refused(s.run('UNSUBSCRIBE "a..b"'), "UNSUBSCRIBE invalid")
    s.close()
    s = session(user)
    got = list_names(ok(s.run('LSUB "" "*"'), "LSUB in a new session"))
    check(set(got) == {"box", "x.y"}, "subscriptions kept %r" % got)
    s.close()


def test_bad_input():
    user = "user10"
    s = session(user)
    for raw in (b"\r\n", b"T1\r\n", b"T2 NOSUCH\r\n",
                b'T3 SELECT "unterminated\r\n', b"T4 CREATE a b c\r\n",
                b"T5 SELECT\r\n", b"T6 CREATE caf\xc3\xa9\r\n",
                b"T7 CREATE a\rb\r\n", b"+ CREATE x\r\n", b"T8 NOOP extra\r\n",
                b"T9 LIST ((((((((((((((((((((((((\r\n"):
        s.send(raw)
        line = s.read_response_line()
        check(re.match(r"^(\* |T\d |\+ )?BAD ", line) or
              re.match(r"^\S+ BAD ", line), "%r -> %r" % (raw, line))
        usable(s, repr(raw))
    # Pipelined commands are answered in order.
    s.send(b"P1 NOOP\r\nP2 CREATE piped\r\nP3 LIST \"\" piped\r\n")
    for tag in ("P1", "P2", "P3"):
        r = s.wait(tag)
        check(r.status == "OK", "pipelined %s %r" % (tag, r))
    # A line beyond MaxLineLength: BAD, and the session ends.
    s.send(b"T10 CREATE " + b"x" * 70000 + b"\r\n")
    line = s.read_response_line()
    check("BAD" in line, "overlong line %r" % line)
    s.close()
    # Hanging up in the middle of a literal changes nothing.
    for plus in (False, True):
        s = session(user)
        before = ok(s.run("STATUS INBOX (MESSAGES)"), "STATUS").untagged
        if plus:
            s.send(b"H1 APPEND INBOX {100+}\r\n" + b"y" * 50)
        else:
            s.send(b"H1 APPEND INBOX {100}\r\n")
            check(s.read_response_line().startswith("+"), "continuation")
            s.send(b"y" * 50)
        s.close()
        time.sleep(0.2)
        s = session(user)
        after = ok(s.run("STATUS INBOX (MESSAGES)"), "STATUS").untagged
        check(before == after, "half a literal applied: %r %r"
              % (before, after))
        s.close()
    check(len(files(user)) == 0, "no file from half a literal")
    check("peer closed in the middle of a command" in
          C.log_text("worker-1"), "hang-up logged")


def test_two_sessions():
    user = "user11"
    a = session(user)
    b = session(user)
    ok(a.run("CREATE shared"), "CREATE")
    r = ok(a.run("SELECT shared"), "SELECT")
    check(r.find("^0 EXISTS$"), "empty")
    ok(append(b, "shared", msg(1)), "B APPEND")
    r = ok(a.run("NOOP"), "A NOOP")
    check(r.untagged == ["1 EXISTS"], "A sees the APPEND: %r" % r.untagged)
    ok(b.run("SELECT shared"), "B SELECT")
    ok(b.run("STORE 1 +FLAGS (\\Seen)"), "B STORE")
    r = ok(a.run("NOOP"), "A NOOP")
    check(r.untagged == ["1 FETCH (FLAGS (\\Seen))"],
          "A sees the STORE: %r" % r.untagged)
    ok(b.run("STORE 1 +FLAGS (kwB)"), "B STORE keyword")
    r = ok(a.run("NOOP"), "A NOOP")
    check(r.find(r"^FLAGS \(.*kwB") and r.find(r"^1 FETCH .*kwB"),
          "A sees the keyword: %r" % r.untagged)
    ok(append(b, "shared", msg(2)), "B APPEND")
    ok(append(b, "shared", msg(3)), "B APPEND")
    r = ok(a.run("CHECK"), "A CHECK")
    check(r.untagged == ["3 EXISTS"], "A sees both: %r" % r.untagged)
    ok(b.run("NOOP"), "B NOOP")
    ok(b.run("STORE 2 +FLAGS.SILENT (\\Deleted)"), "B mark")
    ok(b.run("EXPUNGE"), "B EXPUNGE")
    # No EXPUNGE while A's STORE runs (RFC 3501 7.4.1), but at its next
    # NOOP; and message 3 keeps its number until then.
    r = ok(a.run("STORE 3 +FLAGS (\\Flagged)"), "A STORE")
    check(not r.find("EXPUNGE") and r.find(r"^3 FETCH"),
          "no EXPUNGE during STORE: %r" % r.untagged)
    r = ok(a.run("NOOP"), "A NOOP")
    check("2 EXPUNGE" in r.untagged, "A sees the EXPUNGE: %r" % r.untagged)
    refused(a.run("STORE 3 +FLAGS (\\Seen)"), "number 3 is gone now")
    r = ok(b.run("NOOP"), "B NOOP")
    check(r.find(r"^2 FETCH \(FLAGS \(\\Flagged\)\)"),
          "B sees A's STORE: %r" % r.untagged)
    # Deleting the mailbox under A's feet ends A's session.
    ok(b.run("UNSELECT"), "B UNSELECT")
    ok(b.run("DELETE shared"), "B DELETE")
    try:
        r = a.run("NOOP")
        check(r.find("^BYE"), "A is told: %r" % r)
    except EOFError:
        pass
    a.close()
    b.close()


def test_storage_sessions():
    s = session("user12", STORAGE_PORT, "storage", worker="worker-1")
    ok(s.run("CREATE box"), "CREATE at storage")
    ok(append(s, "box", msg(1), "\\Flagged"), "APPEND at storage")
    r = ok(s.run("SELECT box"), "SELECT at storage")
    check(r.find("^1 EXISTS$"), "%r" % r)
    ok(s.run("STORE 1 +FLAGS (\\Deleted)"), "STORE at storage")
    r = ok(s.run("EXPUNGE"), "EXPUNGE at storage")
    check(r.untagged == ["1 EXPUNGE"], "%r" % r)
    got = list_names(ok(s.run('LIST "" "*"'), "LIST at storage"))
    check(set(got) == {"INBOX", "box"}, "%r" % got)
    check(os.path.isdir(maildir("user12", "box", "storage")), "on disk")
    s.close()


def test_concurrent_users():
    n_users, n_msgs = 16, 8
    errors = []

    def client(i):
        try:
            s = session("conc%d" % i)
            for j in range(n_msgs):
                r = append(s, "INBOX", msg("%d-%d" % (i, j)))
                if r.status != "OK":
                    errors.append("user %d: %r" % (i, r))
            s.run("LOGOUT")
            s.close()
        except Exception as e:  # reported below
            errors.append("user %d: %s" % (i, e))

    threads = [threading.Thread(target=client, args=(i,))
               for i in range(n_users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    check(not errors, "concurrent APPENDs: %r" % errors[:3])
    for i in range(n_users):
        s = session("conc%d" % i)
        r = ok(s.run("STATUS INBOX (MESSAGES)"), "STATUS")
        check(r.find(r"MESSAGES %d\)" % n_msgs), "user %d: %r" % (i, r))
        s.close()
        check(len(files("conc%d" % i)) == n_msgs, "files of user %d" % i)


def test_sigterm():
    s = session("user13")
    ok(s.run("SELECT INBOX"), "SELECT")
    rc = C.stop("worker-1")
    check(rc == 0, "SIGTERM exit status %d" % rc)
    line = s.read_response_line()
    check(line.startswith("* BYE") and "shutting down" in line,
          "BYE on shutdown: %r" % line)
    s.close()
    start_worker()


def test_sigkill_during_appends():
    user = "crash"
    acked = []
    stop = threading.Event()
    outcome = {}

    def appender():
        s = session(user)
        i = 0
        try:
            while not stop.is_set():
                body = msg("crash-%d" % i, "x" * (i % 7 * 500))
                r = append(s, "INBOX", body)
                if r.status == "OK":
                    acked.append((appenduid(r)[1], body))
                i += 1
        except (EOFError, OSError, ssl.SSLError) as e:
            outcome["end"] = e
        finally:
            s.close()

    t = threading.Thread(target=appender)
    t.start()
    time.sleep(1.5)
    C.kill("worker-1")
    t.join(10)
    stop.set()
    check("end" in outcome, "the appender saw the connection end")
    check(len(acked) > 10, "only %d APPENDs before the kill" % len(acked))
    start_worker()
    check(C.log_text("worker-1").count("journal replayed") >= 2,
          "journal replayed at restart")
    s = session(user)
    r = ok(s.run("SELECT INBOX"), "SELECT after restart")
    exists = int(r.find(r"^\d+ EXISTS$")[0].split()[0])
    check(exists >= len(acked), "%d acknowledged, %d present"
          % (len(acked), exists))
    check(exists <= len(acked) + 1, "%d acknowledged, %d present"
          % (len(acked), exists))
    # Every acknowledged UID is in the state...
    for uid, _ in acked:
        r = ok(s.run("UID STORE %d +FLAGS (\\Flagged)" % uid), "UID STORE")
        check(r.find(r"FETCH \(UID %d FLAGS" % uid), "UID %d lost" % uid)
    # ...and every message on disk is whole.
    bodies = [open(os.path.join(maildir(user), "cur", f), "rb").read()
              for f in files(user)]
    check(len(bodies) == exists, "%d files, %d messages"
          % (len(bodies), exists))
    for b in bodies:
        check(b.endswith(b"end-of-message\r\n"), "half-written file")
    for _, body in acked:
        check(body in bodies, "an acknowledged message has no file")
    s.close()


if __name__ == "__main__":
    h.run_tests([
        ("opening line", test_opening_line),
        ("refused peers", test_refused_peers),
        ("any-state commands", test_any_state_commands),
        ("mailboxes: CREATE DELETE RENAME LIST", test_mailboxes),
        ("SELECT and EXAMINE", test_select_examine),
        ("APPEND", test_append),
        ("STORE", test_store),
        ("EXPUNGE CLOSE UNSELECT CHECK", test_expunge_close_unselect),
        ("STATUS SUBSCRIBE LSUB", test_status_subscribe),
        ("bad input", test_bad_input),
        ("two sessions of one user", test_two_sessions),
        ("sessions at storage", test_storage_sessions),
        ("16 users appending concurrently", test_concurrent_users),
        ("SIGTERM", test_sigterm),
        ("SIGKILL during APPENDs", test_sigkill_during_appends),
    ])
