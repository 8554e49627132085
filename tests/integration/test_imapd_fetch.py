#!/usr/bin/env python3
"""test_imapd_fetch - FETCH, SEARCH, COPY, MOVE, their UID forms and IDLE
on a worker, driven through its internal session port (doc/protocol.md)
as the distributor would, and by Python's imaplib.

Three messages (a simple one, a multipart one, one with an attached
message/rfc822) are fetched item by item with exact expectations for
everything whose bytes are fixed (FLAGS, UID, RFC822.SIZE, BODY[] and its
sections and partials) and structural checks for ENVELOPE, BODY and
BODYSTRUCTURE.  SEARCH runs a table of keys against known flags, dates,
sizes and contents.  IDLE sees another session's APPEND, STORE and
EXPUNGE as they happen.  Every command also gets bad arguments, after
which the session must still answer.
"""

import imaplib
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pluto_harness as h  # noqa: E402
from pluto_harness import check  # noqa: E402
from intl_client import Lit, Session, quote, tls_context  # noqa: E402

C = h.Cluster(workers=1)
C.make_pki()
W1 = C.workers[0]
CTX = tls_context(C)
C.start("worker-1", "--worker", "worker-1", wait_port_num=W1["mail"])


def session(user):
    return Session.open(W1["mail"], CTX, "worker-1", user)


def ok(r, what):
    check(r.status == "OK" and r.text.strip() != "",
          "%s: wanted OK, got %r" % (what, r))
    return r


def refused(r, what, want=("NO", "BAD")):
    check(r.status in want and r.text.strip() != "",
          "%s: wanted %s with a reason, got %r" % (what, "/".join(want), r))
    return r


def usable(s, what):
    ok(s.run("NOOP"), "session usable after " + what)


def append(s, box, body, flags=None, date=None):
    parts = ["APPEND " + quote(box) + " "]
    if flags is not None:
        parts.append("(" + flags + ") ")
    if date is not None:
        parts.append('"' + date + '" ')
    parts.append(Lit(body))
    r = ok(s.run(*parts), "APPEND")
    m = re.search(r"\[APPENDUID (\d+) (\d+)\]", r.text)
    check(m is not None, "APPENDUID in %r" % r)
    return int(m.group(2))


# --------------------------------------------------------------------------
# Messages

SIMPLE_HEADER = (
    b"From: Alice Example <alice@example.org>\r\n"
    b"To: bob@example.net, \"Carol C\" <carol@example.com>\r\n"
    b"Cc: dave@example.org\r\n"
    b"Subject: Simple hello\r\n"
    b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
    b"Message-ID: <simple-1@example.org>\r\n"
    b"X-Custom: findme value\r\n"
    b"\r\n")
SIMPLE_TEXT = (b"Hello world, this is the body.\r\n"
               b"Second line with needleword.\r\n")
SIMPLE = SIMPLE_HEADER + SIMPLE_TEXT

MULTI_PART1_MIME = b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
MULTI_PART1 = b"Plain part with partneedle.\r\n"
MULTI_PART2_MIME = (b"Content-Type: text/html; charset=us-ascii\r\n"
                    b"Content-Transfer-Encoding: 7bit\r\n\r\n")
MULTI_PART2 = b"<p>html part</p>\r\n"
MULTI_HEADER = (
    b"From: Bob <bob@example.net>\r\n"
    b"To: Alice <alice@example.org>\r\n"
    b"Subject: Multi part\r\n"
    b"Date: Tue, 15 Mar 2022 10:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/alternative; boundary=\"XyZ\"\r\n"
    b"\r\n")
MULTI_TEXT = (b"preamble\r\n--XyZ\r\n" + MULTI_PART1_MIME + MULTI_PART1 +
              b"\r\n--XyZ\r\n" + MULTI_PART2_MIME + MULTI_PART2 +
              b"\r\n--XyZ--\r\n")
MULTI = MULTI_HEADER + MULTI_TEXT

INNER_HEADER = (b"From: Inner <inner@example.com>\r\n"
                b"Subject: Inner message\r\n"
                b"Date: Wed, 1 Jan 2020 00:00:00 +0000\r\n\r\n")
INNER_TEXT = b"Inner body.\r\n"
INNER = INNER_HEADER + INNER_TEXT
RFC822_PART1 = b"See the attached message.\r\n"
RFC822_HEADER = (
    b"From: Carol <carol@example.com>\r\n"
    b"To: Alice <alice@example.org>\r\n"
    b"Subject: Forwarded\r\n"
    b"Date: Thu, 2 Jan 2020 12:00:00 +0100\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=b1\r\n"
    b"\r\n")
RFC822_TEXT = (b"--b1\r\nContent-Type: text/plain\r\n\r\n" + RFC822_PART1 +
               b"\r\n--b1\r\nContent-Type: message/rfc822\r\n\r\n" + INNER +
               b"\r\n--b1--\r\n")
RFC822_MSG = RFC822_HEADER + RFC822_TEXT


# --------------------------------------------------------------------------
# A reader of IMAP response data (enough for FETCH)

class Parser:
    """Parses IMAP data (atoms, numbers, quoted strings, literals, NIL,
    parenthesised lists) from a str whose literals were inlined."""

    def __init__(self, text):
        self.t = text
        self.i = 0

    def value(self):
        t = self.t
        if t[self.i] == "(":
            self.i += 1
            out = []
            while t[self.i] != ")":
                out.append(self.value())
                if t[self.i] == " ":
                    self.i += 1
            self.i += 1
            return out
        if t[self.i] == '"':
            j = self.i + 1
            out = ""
            while t[j] != '"':
                if t[j] == "\\":
                    j += 1
                out += t[j]
                j += 1
            self.i = j + 1
            return out
        if t[self.i] == "{":
            m = re.compile(r"\{(\d+)\}\r\n").match(t, self.i)
            n = int(m.group(1))
            start = m.end()
            self.i = start + n
            return t[start:start + n]
        m = re.compile(r"[^ ()\[\]]+(\[[^\]]*\](<\d+>)?)?").match(t, self.i)
        self.i = m.end()
        word = m.group(0)
        return None if word == "NIL" else word


def fetch_items(line):
    """'n FETCH (...)' -> (n, {label: value}) with labels upper-cased."""
    m = re.match(r"(\d+) FETCH ", line)
    check(m is not None, "not a FETCH response: %r" % line[:200])
    p = Parser(line)
    p.i = m.end()
    items = p.value()
    check(p.i == len(line), "trailing data after FETCH: %r" % line[p.i:])
    check(len(items) % 2 == 0, "odd FETCH list %r" % items)
    return int(m.group(1)), {items[k].upper(): items[k + 1]
                             for k in range(0, len(items), 2)}


def fetch(s, cmd, what=None):
    r = ok(s.run(cmd), what or cmd)
    out = {}
    for u in r.untagged:
        if re.match(r"\d+ FETCH ", u):
            n, items = fetch_items(u)
            out.setdefault(n, {}).update(items)
    return r, out


def s_(b):
    return b.decode()


# --------------------------------------------------------------------------

def setup_fetch_box(s, user):
    ok(s.run("CREATE fbox"), "CREATE")
    uids = [append(s, "fbox", SIMPLE, "\\Flagged kwA",
                   "07-Feb-1994 21:52:25 -0800"),
            append(s, "fbox", MULTI, None, "15-Mar-2022 10:00:00 +0000"),
            append(s, "fbox", RFC822_MSG, "\\Seen")]
    ok(s.run("SELECT fbox"), "SELECT")
    return uids


def test_fetch_items():
    s = session("fuser1")
    uids = setup_fetch_box(s, "fuser1")
    _, f = fetch(s, "FETCH 1:3 (FLAGS UID RFC822.SIZE INTERNALDATE)")
    check(sorted(f) == [1, 2, 3], "three responses %r" % f)
    check(set(f[1]["FLAGS"]) == {"\\Flagged", "kwA"}, "flags %r" % f[1])
    check(f[2]["FLAGS"] == [] and f[3]["FLAGS"] == ["\\Seen"], "flags")
    for i, body in enumerate((SIMPLE, MULTI, RFC822_MSG)):
        check(f[i + 1]["UID"] == str(uids[i]), "UID %r" % f[i + 1])
        check(f[i + 1]["RFC822.SIZE"] == str(len(body)), "size %r"
              % f[i + 1])
    check(f[1]["INTERNALDATE"] == " 8-Feb-1994 05:52:25 +0000",
          "INTERNALDATE in UTC %r" % f[1]["INTERNALDATE"])
    check(f[2]["INTERNALDATE"] == "15-Mar-2022 10:00:00 +0000",
          "INTERNALDATE %r" % f[2]["INTERNALDATE"])

    # Exact bytes of the simple message's sections.
    cases = [
        ("BODY.PEEK[]", "BODY[]", SIMPLE),
        ("BODY.PEEK[HEADER]", "BODY[HEADER]", SIMPLE_HEADER),
        ("BODY.PEEK[TEXT]", "BODY[TEXT]", SIMPLE_TEXT),
        ("BODY.PEEK[1]", "BODY[1]", SIMPLE_TEXT),
        ("BODY.PEEK[]<0.10>", "BODY[]<0>", SIMPLE[:10]),
        ("BODY.PEEK[]<6.20>", "BODY[]<6>", SIMPLE[6:26]),
        ("BODY.PEEK[TEXT]<6.5>", "BODY[TEXT]<6>", SIMPLE_TEXT[6:11]),
        ("BODY.PEEK[]<100000.10>", "BODY[]<100000>", b""),
        ("BODY.PEEK[HEADER.FIELDS (From Subject)]",
         "BODY[HEADER.FIELDS (FROM SUBJECT)]",
         b"From: Alice Example <alice@example.org>\r\n"
         b"Subject: Simple hello\r\n\r\n"),
        ("BODY.PEEK[HEADER.FIELDS (x-custom)]",
         "BODY[HEADER.FIELDS (X-CUSTOM)]", b"X-Custom: findme value\r\n\r\n"),
        ("BODY.PEEK[HEADER.FIELDS.NOT (From To Cc Date Message-ID "
         "X-Custom)]",
         "BODY[HEADER.FIELDS.NOT (FROM TO CC DATE MESSAGE-ID X-CUSTOM)]",
         b"Subject: Simple hello\r\n\r\n"),
        ("RFC822.HEADER", "RFC822.HEADER", SIMPLE_HEADER),
    ]
    for att, label, want in cases:
        _, f = fetch(s, "FETCH 1 " + att)
        check(label in f[1], "%s: label %s in %r" % (att, label, f[1]))
        check(f[1][label] == s_(want), "%s: %r, wanted %r"
              % (att, f[1][label], want))
    # Multipart and message/rfc822 sections.
    cases = [
        (2, "1", MULTI_PART1), (2, "2", MULTI_PART2),
        (2, "1.MIME", MULTI_PART1_MIME), (2, "2.MIME", MULTI_PART2_MIME),
        (2, "TEXT", MULTI_TEXT), (2, "HEADER", MULTI_HEADER),
        (2, "3", b""),
        (3, "1", RFC822_PART1), (3, "2", INNER),
        (3, "2.HEADER", INNER_HEADER), (3, "2.TEXT", INNER_TEXT),
        (3, "2.1", INNER_TEXT),
        (3, "2.HEADER.FIELDS (SUBJECT)", b"Subject: Inner message\r\n\r\n"),
    ]
    for n, sec, want in cases:
        _, f = fetch(s, "FETCH %d BODY.PEEK[%s]" % (n, sec))
        label = "BODY[%s]" % sec
        check(f[n].get(label) == s_(want), "%d BODY[%s]: %r, wanted %r"
              % (n, sec, f[n].get(label), want))
    # RFC822 and RFC822.TEXT are whole-message and body fetches.
    _, f = fetch(s, "FETCH 3 (RFC822.TEXT RFC822)")
    check(f[3]["RFC822"] == s_(RFC822_MSG) and
          f[3]["RFC822.TEXT"] == s_(RFC822_TEXT), "RFC822 %r" % f[3])
    # UID FETCH adds UID; a UID that does not exist is no error.
    r, f = fetch(s, "UID FETCH %d:* FLAGS" % uids[1])
    check(sorted(f) == [2, 3] and f[2]["UID"] == str(uids[1]),
          "UID FETCH %r" % f)
    r, f = fetch(s, "UID FETCH 999 FLAGS")
    check(f == {}, "UID FETCH of a missing UID %r" % f)
    # Macros.
    _, f = fetch(s, "FETCH 2 FAST")
    check(set(f[2]) == {"FLAGS", "INTERNALDATE", "RFC822.SIZE"}, "FAST")
    _, f = fetch(s, "FETCH 2 ALL")
    check(set(f[2]) == {"FLAGS", "INTERNALDATE", "RFC822.SIZE",
                        "ENVELOPE"}, "ALL %r" % f[2].keys())
    _, f = fetch(s, "FETCH 2 FULL")
    check("BODY" in f[2] and "ENVELOPE" in f[2], "FULL")
    s.close()


def addr(a):
    return (a[0], a[2], a[3])


def test_envelope_bodystructure():
    s = session("fuser2")
    setup_fetch_box(s, "fuser2")
    _, f = fetch(s, "FETCH 1:3 (ENVELOPE BODYSTRUCTURE BODY)")
    env = f[1]["ENVELOPE"]
    check(len(env) == 10, "ENVELOPE has 10 fields %r" % env)
    check(env[0] == "Mon, 7 Feb 1994 21:52:25 -0800", "date %r" % env[0])
    check(env[1] == "Simple hello", "subject %r" % env[1])
    check([addr(a) for a in env[2]] ==
          [("Alice Example", "alice", "example.org")], "from %r" % env[2])
    check(env[3] == env[2] and env[4] == env[2],
          "sender, reply-to default to from")
    check([addr(a) for a in env[5]] ==
          [(None, "bob", "example.net"), ("Carol C", "carol",
                                          "example.com")], "to %r" % env[5])
    check([addr(a) for a in env[6]] == [(None, "dave", "example.org")],
          "cc %r" % env[6])
    check(env[7] is None and env[8] is None, "bcc, in-reply-to NIL")
    check(env[9] == "<simple-1@example.org>", "message-id %r" % env[9])

    bs = f[1]["BODYSTRUCTURE"]
    check(bs[0].lower() == "text" and bs[1].lower() == "plain",
          "simple type %r" % bs)
    check(int(bs[6]) == len(SIMPLE_TEXT) and
          int(bs[7]) == SIMPLE_TEXT.count(b"\n"), "size, lines %r" % bs)
    check(len(f[1]["BODY"]) == 8, "BODY has no extension data %r"
          % f[1]["BODY"])

    bs = f[2]["BODYSTRUCTURE"]
    check(isinstance(bs[0], list) and isinstance(bs[1], list) and
          bs[2].lower() == "alternative", "multipart %r" % bs)
    check(bs[0][1].lower() == "plain" and bs[1][1].lower() == "html" and
          int(bs[0][6]) == len(MULTI_PART1) and
          int(bs[1][6]) == len(MULTI_PART2), "parts %r" % bs)
    check(bs[3][0].lower() == "boundary" and bs[3][1] == "XyZ",
          "multipart parameters %r" % bs[3])
    body = f[2]["BODY"]
    check(body[2].lower() == "alternative" and len(body) == 3,
          "BODY of a multipart %r" % body)

    bs = f[3]["BODYSTRUCTURE"]
    check(bs[-4 if len(bs) > 4 else -1] is not None, "mixed")
    msg_part = bs[1]
    check(msg_part[0].lower() == "message" and
          msg_part[1].lower() == "rfc822", "message/rfc822 %r" % msg_part)
    check(int(msg_part[6]) == len(INNER), "rfc822 size %r" % msg_part[6])
    inner_env = msg_part[7]
    check(inner_env[1] == "Inner message", "inner envelope %r" % inner_env)
    inner_bs = msg_part[8]
    check(inner_bs[0].lower() == "text" and
          int(inner_bs[6]) == len(INNER_TEXT), "inner body %r" % inner_bs)
    check(int(msg_part[9]) == INNER.count(b"\n"), "rfc822 lines")
    s.close()


def flags_of(s, n):
    _, f = fetch(s, "FETCH %d FLAGS" % n)
    return set(f[n]["FLAGS"])


def test_seen():
    s = session("fuser3")
    setup_fetch_box(s, "fuser3")
    r, f = fetch(s, "FETCH 2 BODY.PEEK[]")
    check("FLAGS" not in f[2], "PEEK reports no FLAGS %r" % f[2].keys())
    check("\\Seen" not in flags_of(s, 2), "PEEK does not set \\Seen")
    for att in ("RFC822.HEADER", "BODY.PEEK[TEXT]", "ENVELOPE",
                "BODYSTRUCTURE", "BODY"):
        fetch(s, "FETCH 2 " + att)
        check("\\Seen" not in flags_of(s, 2), att + " sets no \\Seen")
    r, f = fetch(s, "FETCH 2 BODY[]")
    check(f[2].get("FLAGS") == ["\\Seen"], "BODY[] reports \\Seen %r"
          % f[2].keys())
    check(len(r.find(r"^2 FETCH")) == 1, "one response %r" % r.untagged)
    r, f = fetch(s, "FETCH 1 BODY[HEADER.FIELDS (Subject)]")
    check("\\Seen" in f[1]["FLAGS"] and "kwA" in f[1]["FLAGS"],
          "a non-PEEK section sets \\Seen %r" % f[1])
    ok(s.run("STORE 1:2 -FLAGS.SILENT (\\Seen)"), "clear")
    r, f = fetch(s, "UID FETCH 1:* RFC822.TEXT")
    check("\\Seen" in f[1]["FLAGS"] and "\\Seen" in f[2]["FLAGS"],
          "RFC822.TEXT sets \\Seen %r" % f)
    check(f[3].get("FLAGS") is None, "already seen: no FLAGS %r" % f[3])
    ok(s.run("STORE 2 -FLAGS.SILENT (\\Seen)"), "clear")
    ok(s.run("EXAMINE fbox"), "EXAMINE")
    fetch(s, "FETCH 2 BODY[]")
    check("\\Seen" not in flags_of(s, 2), "EXAMINE: BODY[] sets no \\Seen")
    # Durable: a new session sees it.
    ok(s.run("SELECT fbox"), "SELECT")
    fetch(s, "FETCH 2 RFC822")
    s.close()
    s = session("fuser3")
    ok(s.run("SELECT fbox"), "SELECT")
    check("\\Seen" in flags_of(s, 2), "\\Seen is durable")
    s.close()


def test_fetch_bad():
    s = session("fuser4")
    setup_fetch_box(s, "fuser4")
    for cmd in ("FETCH 4 FLAGS", "FETCH 0 FLAGS", "FETCH 1:9 FLAGS",
                "FETCH 1 BOGUS", "FETCH 1", "FETCH FLAGS",
                "FETCH 1 BODY[HEADER.FIELDS]", "FETCH 1 BODY[0]",
                "FETCH 1 BODY[]<1.0>", "FETCH 1 BODY[MIME]",
                "FETCH 1 (FLAGS", "FETCH 1 BODY[1.HEADER.BOGUS]",
                "UID FETCH 0 FLAGS", "FETCH 1 BODY.PEEK",
                "FETCH * BODY[]<4294967296.1>"):
        refused(s.run(cmd), cmd, ("BAD",))
        usable(s, cmd)
    # A section beyond the structure is empty, not an error.
    _, f = fetch(s, "FETCH 1 BODY.PEEK[7.3]")
    check(f[1].get("BODY[7.3]") == "", "missing part %r" % f[1])
    ok(s.run("UNSELECT"), "UNSELECT")
    refused(s.run("FETCH 1 FLAGS"), "FETCH without a mailbox", ("BAD",))
    s.close()


def test_expunged_meanwhile():
    a = session("fuser5")
    setup_fetch_box(a, "fuser5")
    b = session("fuser5")
    ok(b.run("SELECT fbox"), "B SELECT")
    ok(b.run("STORE 2 +FLAGS.SILENT (\\Deleted)"), "B mark")
    ok(b.run("EXPUNGE"), "B EXPUNGE")
    # A non-UID FETCH may not send EXPUNGE: message 2 keeps its number,
    # has no data left, and the command says so.
    r = a.run("FETCH 1:3 (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    check(r.status == "NO" and "[EXPUNGEISSUE]" in r.text,
          "FETCH of an expunged message %r" % r)
    check(not r.find("EXPUNGE$") and len(r.find(r"^[13] FETCH")) == 2 and
          not r.find(r"^2 FETCH"), "FETCH %r" % r.untagged)
    check(search(a, "ALL") == [1, 3], "SEARCH skips it")
    r = ok(a.run("UID FETCH 1:* UID"), "UID FETCH")
    check(r.untagged[-1] == "2 EXPUNGE" or "2 EXPUNGE" in r.untagged,
          "UID FETCH may report the EXPUNGE %r" % r.untagged)
    r = ok(a.run("COPY 1:2 INBOX"), "COPY")
    _, su, du = copyuid(r.text)
    check(len(su) == 2 and len(du) == 2, "COPYUID %r" % r.text)
    a.close()
    b.close()


# --------------------------------------------------------------------------
# SEARCH

def search(s, keys, uid=False):
    r = ok(s.run(("UID " if uid else "") + "SEARCH " + keys),
           "SEARCH " + keys)
    lines = r.find(r"^SEARCH")
    check(len(lines) == 1, "one SEARCH response %r" % r.untagged)
    return [int(x) for x in lines[0].split()[1:]]


def test_search():
    s = session("suser1")
    ok(s.run("CREATE sbox"), "CREATE")
    uids = [append(s, "sbox", SIMPLE, "\\Flagged kwA",
                   "07-Feb-1994 21:52:25 -0800"),
            append(s, "sbox", MULTI, "\\Answered",
                   "15-Mar-2022 10:00:00 +0000"),
            append(s, "sbox", RFC822_MSG, "\\Seen \\Deleted kwB",
                   "02-Jan-2020 12:00:00 +0100"),
            append(s, "sbox", b"Subject: tiny\r\n\r\nx\r\n", "\\Draft",
                   "01-Jan-2021 00:00:00 +0000")]
    ok(s.run("SELECT sbox"), "SELECT")
    sizes = [len(SIMPLE), len(MULTI), len(RFC822_MSG), 20]
    big = max(sizes)
    table = [
        ("ALL", [1, 2, 3, 4]),
        ("FLAGGED", [1]), ("UNFLAGGED", [2, 3, 4]),
        ("ANSWERED", [2]), ("UNANSWERED", [1, 3, 4]),
        ("SEEN", [3]), ("UNSEEN", [1, 2, 4]),
        ("DELETED", [3]), ("UNDELETED", [1, 2, 4]),
        ("DRAFT", [4]), ("UNDRAFT", [1, 2, 3]),
        ("KEYWORD kwA", [1]), ("KEYWORD KWA", [1]), ("KEYWORD nope", []),
        ("UNKEYWORD kwA", [2, 3, 4]),
        ("NEW", []), ("RECENT", []), ("OLD", [1, 2, 3, 4]),
        ("BEFORE 1-Jan-2020", [1]), ("BEFORE 3-Jan-2020", [1, 3]),
        ("ON 8-Feb-1994", [1]), ("ON 2-Jan-2020", [3]),
        ("SINCE 1-Jan-2021", [2, 4]), ("SINCE 16-Mar-2022", []),
        ("SENTBEFORE 2-Jan-2020", [1]), ("SENTON 7-Feb-1994", [1]),
        ("SENTON 2-Jan-2020", [3]), ("SENTSINCE 1-Jan-2020", [2, 3]),
        ("SENTON 15-Mar-2022", [2]),
        ("LARGER %d" % (big - 1), [sizes.index(big) + 1]),
        ("LARGER %d" % big, []), ("SMALLER %d" % len(SIMPLE),
                                  [n for n, z in enumerate(sizes, 1)
                                   if z < len(SIMPLE)]),
        ("SMALLER 30", [4]), ("LARGER 1000000", []),
        ("1:2", [1, 2]), ("2,4", [2, 4]), ("3:*", [3, 4]), ("*", [4]),
        ("UID %d:%d" % (uids[1], uids[2]), [2, 3]),
        ("UID 999", []),
        ("SUBJECT hello", [1]), ("SUBJECT \"multi PART\"", [2]),
        ("FROM alice", [1]), ("FROM example.net", [2]),
        ("TO carol", [1]), ("CC dave", [1]), ("BCC anybody", []),
        ("HEADER X-Custom findme", [1]), ("HEADER x-custom \"\"", [1]),
        ("HEADER Message-ID simple-1", [1]),
        ("BODY needleword", [1]), ("BODY partneedle", [2]),
        ("BODY \"Simple hello\"", []), ("TEXT \"Simple hello\"", [1]),
        ("TEXT needleword", [1]), ("TEXT hello", [1]),
        ("BODY \"inner body\"", [3]),
        ("OR FLAGGED SEEN", [1, 3]), ("NOT SEEN", [1, 2, 4]),
        ("NOT NOT SEEN", [3]), ("(FLAGGED SUBJECT hello)", [1]),
        ("FLAGGED SUBJECT multi", []),
        ("OR (SEEN DELETED) (DRAFT SMALLER 100)", [3, 4]),
        ("UNSEEN OR BODY needleword BODY partneedle", [1, 2]),
        ("NOT (OR 1 2)", [3, 4]),
        ("CHARSET UTF-8 SUBJECT hello", [1]),
        ("CHARSET us-ascii ALL", [1, 2, 3, 4]),
    ]
    for keys, want in table:
        got = search(s, keys)
        check(got == want, "SEARCH %s: %r, wanted %r" % (keys, got, want))
    # A literal search string.
    r = ok(s.run("SEARCH CHARSET UTF-8 BODY ", Lit("needleword")),
           "SEARCH with a literal")
    check(r.find(r"^SEARCH 1$"), "literal %r" % r.untagged)
    # UID SEARCH answers UIDs.
    got = search(s, "OR FLAGGED DRAFT", uid=True)
    check(got == [uids[0], uids[3]], "UID SEARCH %r" % got)
    got = search(s, "UID %d:*" % uids[2], uid=True)
    check(got == uids[2:], "UID SEARCH UID %r" % got)
    r = refused(s.run("SEARCH CHARSET KOI8-R ALL"), "BADCHARSET", ("NO",))
    check("[BADCHARSET" in r.text, "BADCHARSET %r" % r)
    for cmd in ("SEARCH", "SEARCH BOGUS", "SEARCH SINCE yesterday",
                "SEARCH LARGER x", "SEARCH OR SEEN", "SEARCH NOT",
                "SEARCH (SEEN", "SEARCH HEADER From", "SEARCH KEYWORD",
                "SEARCH UID 0", "SEARCH CHARSET", "SEARCH " +
                "NOT " * 100 + "ALL", "SEARCH ON 31-Feb-2020"):
        refused(s.run(cmd), cmd, ("BAD",))
        usable(s, cmd)
    # A number beyond the mailbox in SEARCH matches nothing.
    check(search(s, "7") == [], "SEARCH 7")
    s.close()


# --------------------------------------------------------------------------
# COPY and MOVE

def copyuid(text):
    m = re.search(r"\[COPYUID (\d+) ([\d:,]+) ([\d:,]+)\]", text)
    check(m is not None, "COPYUID in %r" % text)

    def expand(x):
        out = []
        for part in x.split(","):
            a, _, b = part.partition(":")
            out += list(range(int(a), int(b or a) + 1))
        return out
    return int(m.group(1)), expand(m.group(2)), expand(m.group(3))


def uidvalidity(s, box):
    r = ok(s.run("STATUS %s (UIDVALIDITY MESSAGES)" % box), "STATUS")
    m = re.search(r"UIDVALIDITY (\d+)", r.untagged[0])
    return int(m.group(1))


def test_copy_move():
    s = session("cuser1")
    ok(s.run("CREATE src"), "CREATE")
    ok(s.run("CREATE dst"), "CREATE")
    bodies = [SIMPLE, MULTI, RFC822_MSG, b"Subject: four\r\n\r\n4\r\n"]
    uids = [append(s, "src", b, fl, "0%d-Jan-2019 10:00:00 +0000" % (i + 1))
            for i, (b, fl) in enumerate(zip(bodies, ["\\Seen kwC", None,
                                                     "\\Flagged", None]))]
    ok(s.run("SELECT src"), "SELECT")
    r = ok(s.run("COPY 1,3 dst"), "COPY")
    v, su, du = copyuid(r.text)
    check(v == uidvalidity(s, "dst"), "COPYUID validity")
    check(su == [uids[0], uids[2]] and du == [1, 2], "COPYUID %r %r"
          % (su, du))
    check(not r.find("EXPUNGE"), "COPY expunges nothing")
    ok(s.run("EXAMINE dst"), "EXAMINE dst")
    _, f = fetch(s, "FETCH 1:2 (FLAGS INTERNALDATE BODY.PEEK[])")
    check(f[1]["BODY[]"] == s_(SIMPLE) and f[2]["BODY[]"] == s_(RFC822_MSG),
          "copied bytes")
    check(set(f[1]["FLAGS"]) == {"\\Seen", "kwC"} and
          f[2]["FLAGS"] == ["\\Flagged"], "copied flags %r" % f)
    check(f[1]["INTERNALDATE"] == " 1-Jan-2019 10:00:00 +0000",
          "copied date %r" % f[1]["INTERNALDATE"])
    # COPY from a read-only mailbox is allowed; MOVE is not.
    r = ok(s.run("COPY 1 src"), "COPY from EXAMINE")
    refused(s.run("MOVE 1 src"), "MOVE from EXAMINE", ("NO",))
    ok(s.run("SELECT src"), "SELECT")
    r = ok(s.run("NOOP"), "NOOP")
    # src: 4 originals + 1 copied back (uid 5).
    r = ok(s.run("UID COPY %d:%d dst" % (uids[1], uids[3])), "UID COPY")
    v, su, du = copyuid(r.text)
    check(su == uids[1:4] and du == [3, 4, 5], "UID COPY %r %r" % (su, du))
    r = ok(s.run("UID COPY 900:999 dst"), "UID COPY of nothing")
    check("COPYUID" not in r.text, "no COPYUID without a copy %r" % r)

    r = ok(s.run("MOVE 2:3 dst"), "MOVE")
    check(r.untagged[0].startswith("OK [COPYUID "), "COPYUID first %r"
          % r.untagged)
    v, su, du = copyuid(r.untagged[0])
    check(su == uids[1:3] and du == [6, 7], "MOVE COPYUID %r %r" % (su, du))
    check(r.untagged[1:] == ["3 EXPUNGE", "2 EXPUNGE"],
          "MOVE expunges %r" % r.untagged)
    r = ok(s.run("UID MOVE %d dst" % uids[3]), "UID MOVE")
    check(r.untagged[0].startswith("OK [COPYUID ") and
          r.untagged[1:] == ["2 EXPUNGE"], "UID MOVE %r" % r.untagged)
    r = ok(s.run("STATUS dst (MESSAGES)"), "STATUS")
    check("MESSAGES 8" in r.untagged[0], "dst %r" % r.untagged)
    # Left in src: message 1 and the copy made from EXAMINE.
    _, f = fetch(s, "FETCH 1:* UID")
    check(len(f) == 2, "src after MOVE %r" % f)

    # Errors.
    r = refused(s.run("COPY 1 nope"), "COPY to a missing mailbox", ("NO",))
    check("[TRYCREATE]" in r.text, "TRYCREATE %r" % r)
    r = refused(s.run("MOVE 1 nope"), "MOVE to a missing mailbox", ("NO",))
    check("[TRYCREATE]" in r.text, "TRYCREATE %r" % r)
    for cmd, want in (("COPY 9 dst", "BAD"), ("COPY 0 dst", "BAD"),
                      ("COPY 1", "BAD"), ("COPY dst", "BAD"),
                      ("MOVE 1:5 dst", "BAD"), ("UID MOVE 0 dst", "BAD"),
                      ('COPY 1 ""', "NO"), ('COPY 1 "a..b"', "NO"),
                      ("MOVE", "BAD"), ("COPY 1 dst extra", "BAD")):
        refused(s.run(cmd), cmd, (want,))
        usable(s, cmd)
    r = ok(s.run("STATUS dst (MESSAGES)"), "STATUS")
    check("MESSAGES 8" in r.untagged[0], "failed COPYs copied nothing")
    ok(s.run("UNSELECT"), "UNSELECT")
    refused(s.run("COPY 1 dst"), "COPY without a mailbox", ("BAD",))
    s.close()


# --------------------------------------------------------------------------
# IDLE

class Idler(threading.Thread):
    """Reads an idling session's lines and stamps them."""

    def __init__(self, sess):
        super().__init__(daemon=True)
        self.s = sess
        self.lines = []
        self.cond = threading.Condition()

    def run(self):
        try:
            while True:
                line = self.s.read_response_line()
                with self.cond:
                    self.lines.append((time.monotonic(), line))
                    self.cond.notify_all()
                if re.match(r"^I\d+ ", line):
                    return
        except (EOFError, OSError):
            return

    def wait_for(self, pattern, timeout=5):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for t, line in self.lines:
                    if re.search(pattern, line):
                        self.lines.remove((t, line))
                        return t, line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise h.Failure("no %r while idling; got %r"
                                    % (pattern, self.lines))
                self.cond.wait(left)


def test_idle():
    user = "iuser1"
    a = session(user)
    b = session(user)
    ok(a.run("CREATE ibox"), "CREATE")
    append(a, "ibox", SIMPLE)
    ok(a.run("SELECT ibox"), "SELECT")
    ok(b.run("SELECT ibox"), "B SELECT")
    a.send(b"I1 IDLE\r\n")
    check(a.read_response_line().startswith("+ "), "+ idling")
    idler = Idler(a)
    idler.start()
    lat = []
    t0 = time.monotonic()
    append(b, "ibox", MULTI)
    t, _ = idler.wait_for(r"^\* 2 EXISTS$")
    lat.append(t - t0)
    t0 = time.monotonic()
    ok(b.run("STORE 1 +FLAGS (\\Flagged)"), "B STORE")
    t, _ = idler.wait_for(r"^\* 1 FETCH \(FLAGS \(\\Flagged\)\)$")
    lat.append(t - t0)
    ok(b.run("STORE 1 +FLAGS.SILENT (\\Deleted)"), "B mark")
    t0 = time.monotonic()
    ok(b.run("EXPUNGE"), "B EXPUNGE")
    t, _ = idler.wait_for(r"^\* 1 EXPUNGE$")
    lat.append(t - t0)
    # Each latency includes the other session's durable write; what IDLE
    # adds must stay well under the ~100 ms the design asks for.
    check(max(lat) < 0.2, "IDLE latencies %r" % lat)
    sys.stdout.write("  IDLE latencies (ms): %s\n"
                     % ", ".join("%.1f" % (x * 1000) for x in lat))
    t0 = time.monotonic()
    a.send(b"DONE\r\n")
    t, line = idler.wait_for(r"^I1 ")
    check(line.startswith("I1 OK"), "DONE ends IDLE: %r" % line)
    check(t - t0 < 0.5, "DONE answered in %.3f s" % (t - t0))
    idler.join(2)
    r = ok(a.run("FETCH 1 UID"), "usable after IDLE")
    # DONE pipelined with the next command, lower case.
    a.send(b"I2 IDLE\r\n")
    check(a.read_response_line().startswith("+ "), "+ idling")
    a.send(b"done\r\nP1 NOOP\r\n")
    check(a.read_response_line().startswith("I2 OK"), "done")
    check(a.wait("P1").status == "OK", "pipelined after DONE")
    # Anything but DONE ends IDLE with BAD; the session goes on.
    a.send(b"I3 IDLE\r\n")
    check(a.read_response_line().startswith("+ "), "+ idling")
    a.send(b"I4 NOOP\r\n")
    line = a.read_response_line()
    check(line.startswith("I3 BAD"), "not DONE: %r" % line)
    usable(a, "a bad IDLE end")
    # IDLE without a mailbox selected waits for DONE all the same.
    ok(a.run("UNSELECT"), "UNSELECT")
    a.send(b"I5 IDLE\r\n")
    check(a.read_response_line().startswith("+ "), "+ idling")
    time.sleep(0.1)
    a.send(b"DONE\r\n")
    check(a.read_response_line().startswith("I5 OK"), "IDLE unselected")
    # A DONE split over two writes.
    ok(a.run("SELECT ibox"), "SELECT")
    a.send(b"I6 IDLE\r\n")
    check(a.read_response_line().startswith("+ "), "+ idling")
    a.send(b"DO")
    time.sleep(0.1)
    a.send(b"NE\r\n")
    check(a.read_response_line().startswith("I6 OK"), "split DONE")
    # The session closing while idling.
    a.send(b"I7 IDLE\r\n")
    check(a.read_response_line().startswith("+ "), "+ idling")
    a.close()
    time.sleep(0.2)
    ok(b.run("NOOP"), "the other session goes on")
    r = ok(b.run("CAPABILITY"), "CAPABILITY")
    caps = r.find("^CAPABILITY ")[0].split()
    for c in ("UIDPLUS", "MOVE", "IDLE"):
        check(c in caps, "%s advertised: %r" % (c, caps))
    b.close()


# --------------------------------------------------------------------------
# Python's imaplib

class PlutoIMAP(imaplib.IMAP4_SSL):
    """imaplib over the internal session port: the opening line goes out
    before imaplib reads the greeting, which is then the session's
    '* OK [PLUTO-SESSION]'."""

    def __init__(self, user):
        self.pluto_user = user
        super().__init__("127.0.0.1", W1["mail"], ssl_context=CTX)
        self.state = "AUTH"

    def _create_socket(self, timeout=None):
        sock = CTX.wrap_socket(
            __import__("socket").create_connection(("127.0.0.1",
                                                    W1["mail"]), 15),
            server_hostname="worker-1")
        sock.sendall(b"PLUTO-SESSION 1 %s 192.0.2.9:1\r\n"
                     % self.pluto_user.encode())
        return sock


def test_imaplib():
    M = PlutoIMAP("puser1")
    typ, _ = M.create("pbox")
    check(typ == "OK", "create")
    for body in (SIMPLE, MULTI):
        typ, _ = M.append("pbox", "(\\Flagged)", None, body)
        check(typ == "OK", "append")
    typ, _ = M.create("pdst")
    typ, data = M.select("pbox")
    check(typ == "OK" and data == [b"2"], "select %r" % data)
    typ, data = M.fetch("1:2", "(UID RFC822.SIZE BODY.PEEK[])")
    check(typ == "OK", "fetch %r" % typ)
    bodies = [d[1] for d in data if isinstance(d, tuple)]
    check(bodies == [SIMPLE, MULTI], "fetched bodies %r" % bodies)
    typ, data = M.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    check(data[0][1] == b"Subject: Simple hello\r\n\r\n", "%r" % data)
    typ, data = M.search(None, "SUBJECT", '"Multi part"')
    check(typ == "OK" and data == [b"2"], "search %r" % data)
    typ, data = M.search("UTF-8", "FLAGGED")
    check(data == [b"1 2"], "search charset %r" % data)
    typ, data = M.uid("SEARCH", "ALL")
    check(data == [b"1 2"], "uid search %r" % data)
    typ, data = M.copy("1", "pdst")
    check(typ == "OK", "copy %r" % typ)
    typ, data = M.uid("COPY", "2", "pdst")
    check(typ == "OK", "uid copy")
    typ, data = M.uid("FETCH", "1:*", "(FLAGS)")
    check(typ == "OK" and len(data) == 2 and b"UID 1" in data[0],
          "uid fetch %r" % data)
    typ, data = M.store("1", "+FLAGS", "\\Deleted")
    typ, data = M.expunge()
    check(data == [b"1"], "expunge %r" % data)
    typ, data = M.status("pdst", "(MESSAGES)")
    check(b"MESSAGES 2" in data[0], "status %r" % data)
    typ, data = M.fetch("1", "(RFC822)")
    check(data[0][1] == MULTI, "RFC822 %r" % data[0][:1])
    typ, data = M.search(None, "SEEN")
    check(data == [b"1"], "RFC822 set \\Seen %r" % data)
    try:
        M.fetch("9", "(FLAGS)")
        check(False, "FETCH 9 should fail")
    except imaplib.IMAP4.error:
        pass
    M.logout()


def test_shutdown_while_idling():
    s = session("iuser2")
    ok(s.run("SELECT INBOX"), "SELECT")
    s.send(b"I1 IDLE\r\n")
    check(s.read_response_line().startswith("+ "), "+ idling")
    rc = C.stop("worker-1")
    # Under ASan/LSan a leak would show in the exit status.
    check(rc == 0, "SIGTERM exit status %d" % rc)
    line = s.read_response_line()
    check(line.startswith("* BYE") and "shutting down" in line,
          "BYE to an idling session: %r" % line)
    s.close()


if __name__ == "__main__":
    h.run_tests([
        ("FETCH items", test_fetch_items),
        ("ENVELOPE BODY BODYSTRUCTURE", test_envelope_bodystructure),
        ("\\Seen by FETCH", test_seen),
        ("FETCH bad arguments", test_fetch_bad),
        ("FETCH SEARCH after another session's EXPUNGE",
         test_expunged_meanwhile),
        ("SEARCH", test_search),
        ("COPY MOVE UIDPLUS", test_copy_move),
        ("IDLE", test_idle),
        ("imaplib", test_imaplib),
        ("SIGTERM while idling", test_shutdown_while_idling),
    ])
