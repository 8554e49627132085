#!/bin/sh
# test_mime_dovecot.sh - compare pluto's ENVELOPE, BODY and BODYSTRUCTURE
# with Dovecot's for every sample message in tests/unit/data/mime.
#
# Dovecot is the reference IMAP server most clients are tested against, so
# agreeing with it on the structure of real messages is a strong check of
# src/mime.c that does not rely on our own reading of RFC 3501.  The sample
# messages are put in a private Maildir and Dovecot's imap binary is run
# directly in pre-authenticated mode over a pipe (no listener, no login, no
# system service touched).  pluto's answers come from
# `tests/unit/test_mime --dump`.  Both answers are parsed as IMAP values, so
# quoted string versus literal does not count as a difference.
#
# Deliberate differences (documented in src/mime.h) are listed in KNOWN
# below and compared leniently: Dovecot takes any line starting with
# "--boundary" as a boundary line (we follow RFC 2046: only white space may
# follow), keeps "Content-Type: text" as type "text" subtype "" (we apply
# RFC 2045's text/plain default to an invalid type), and unfolds header
# values collapsing the fold's white space (we only remove the line end, as
# RFC 5322 section 2.2.3 says).
#
# Exit status: 0 pass, 1 fail, 77 skip (no Dovecot or no python3).

top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
IMAP=${DOVECOT_IMAP:-/usr/lib/dovecot/imap}
DUMP=$top_builddir/tests/unit/test_mime

[ -x "$IMAP" ] || { echo "SKIP: no $IMAP"; exit 77; }
command -v python3 >/dev/null 2>&1 || { echo "SKIP: no python3"; exit 77; }
[ -x "$DUMP" ] || { echo "SKIP: build tests/unit/test_mime first"; exit 77; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pluto-mime-dovecot.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

# Dovecot refuses to serve mail as root: run it as nobody then.
if [ "$(id -u)" -eq 0 ]; then
	run_as="setpriv --reuid=nobody --regid=$(id -gn nobody) --clear-groups"
	command -v setpriv >/dev/null 2>&1 || { echo "SKIP: no setpriv"; exit 77; }
else
	run_as=
fi

mkdir -p "$tmp/Maildir/cur" "$tmp/Maildir/new" "$tmp/Maildir/tmp" \
	"$tmp/run" "$tmp/state"
cat >"$tmp/dovecot.conf" <<CONF
base_dir = $tmp/run
state_dir = $tmp/state
log_path = $tmp/dovecot.log
mail_location = maildir:$tmp/Maildir
CONF

: >"$tmp/files"
i=1000
for f in "$top_srcdir"/tests/unit/data/mime/*.eml; do
	i=$((i + 1))
	cp "$f" "$tmp/Maildir/cur/$i.M1P1.pluto:2,"
	echo "$f" >>"$tmp/files"
done
[ -n "$run_as" ] && chown -R nobody "$tmp" && chmod 755 "$tmp"

printf 'a SELECT INBOX\r\nb FETCH 1:* (ENVELOPE BODY BODYSTRUCTURE)\r\nc LOGOUT\r\n' |
	HOME=$tmp USER=$(id -un) timeout 20 $run_as "$IMAP" -c "$tmp/dovecot.conf" \
	>"$tmp/dovecot.out" 2>"$tmp/dovecot.err" ||
	{ echo "FAIL: dovecot imap: $(tail -3 "$tmp/dovecot.err")"; exit 1; }

# shellcheck disable=SC2046
"$DUMP" --dump $(cat "$tmp/files") >"$tmp/pluto.out" ||
	{ echo "FAIL: test_mime --dump"; exit 1; }

python3 - "$tmp/dovecot.out" "$tmp/pluto.out" "$tmp/files" <<'PY'
import re, sys

KNOWN = {
    # file: why the answers may differ
    "garbage_boundary.eml": "boundary prefix matching",
    "nodate.eml": "invalid Content-Type default",
}

def parse(data, i=0):
    """Parses one IMAP value at data[i:]: returns (value, next index)."""
    while data[i:i + 1] == b" ":
        i += 1
    c = data[i:i + 1]
    if c == b"(":
        out, i = [], i + 1
        while True:
            while data[i:i + 1] == b" ":
                i += 1
            if data[i:i + 1] == b")":
                return out, i + 1
            v, i = parse(data, i)
            out.append(v)
    if c == b'"':
        s, i = bytearray(), i + 1
        while data[i:i + 1] != b'"':
            if data[i:i + 1] == b"\\":
                i += 1
            s += data[i:i + 1]
            i += 1
        return bytes(s), i + 1
    if c == b"{":
        j = data.index(b"}", i)
        n = int(data[i + 1:j])
        start = data.index(b"\n", j) + 1
        return data[start:start + n], start + n
    m = re.compile(rb"[^ ()]+").match(data, i)
    tok = m.group(0)
    return (None if tok.upper() == b"NIL" else tok), m.end()

def items(data, i):
    """The (NAME value ...) list after "* n FETCH " as a dict."""
    lst, i = parse(data, i)
    return {lst[k].upper(): lst[k + 1] for k in range(0, len(lst), 2)}, i

def lenient(v, fold_case):
    """Whitespace-insensitive strings, for the fold difference; and
    case-insensitive ones in body structures, whose types, subtypes and
    parameter names are (RFC 2045): Dovecot itself answers "TEXT" in
    BODY and "text" in BODYSTRUCTURE for one message."""
    if isinstance(v, list):
        return [lenient(x, fold_case) for x in v]
    if isinstance(v, bytes):
        v = re.sub(rb"\s+", b" ", v)
        return v.lower() if fold_case else v
    return v

dc = open(sys.argv[1], "rb").read()
pl = open(sys.argv[2], "rb").read()
files = [l.strip().split("/")[-1] for l in open(sys.argv[3])]

dovecot = []
for m in re.finditer(rb"\* (\d+) FETCH ", dc):
    d, _ = items(dc, m.end())
    dovecot.append(d)
pluto = []
i = 0
while True:
    j = pl.find(b"(", i)
    if j < 0:
        break
    d, i = items(pl, j)
    pluto.append(d)

fail = 0
if len(dovecot) != len(files) or len(pluto) != len(files):
    print("FAIL: %d files, dovecot %d answers, pluto %d" %
          (len(files), len(dovecot), len(pluto)))
    sys.exit(1)
for name, d, p in zip(files, dovecot, pluto):
    for key in (b"ENVELOPE", b"BODY", b"BODYSTRUCTURE"):
        fold = key != b"ENVELOPE"
        a, b = lenient(d[key], fold), lenient(p[key], fold)
        if a == b:
            print("ok %s %s" % (name, key.decode()))
        elif name in KNOWN:
            print("ok %s %s (differs as documented: %s)" %
                  (name, key.decode(), KNOWN[name]))
        else:
            fail += 1
            print("FAIL %s %s\n  dovecot %r\n  pluto   %r" %
                  (name, key.decode(), d[key], p[key]))
sys.exit(1 if fail else 0)
PY
