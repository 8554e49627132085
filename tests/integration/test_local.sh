#!/bin/sh
# test_local.sh - tools/pluto-local as a new user meets it: `up` in a fresh
# directory gives a cluster that `curl -k imaps://127.0.0.1:PORT/ -u
# USER:PASSWORD` lists, with a welcome message in the INBOX, served by the
# right worker; `status` tells what runs; `up` again changes nothing;
# `down` stops everything.
set -eu

say() { printf 'test_local: %s\n' "$*"; }
fail() { printf 'test_local: FAIL: %s\n' "$*" >&2; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
srcdir=${top_srcdir:-$here/../..}
builddir=${top_builddir:-$here/../..}
PLUTO=${PLUTO:-$builddir/pluto}
PLUTO_PKI=${PLUTO_PKI:-$builddir/pluto-pki}
export PLUTO PLUTO_PKI
local_cmd=$srcdir/tools/pluto-local

dir=$(mktemp -d "${TMPDIR:-/tmp}/pluto-local-test.XXXXXX")
cleanup() {
	"$local_cmd" down --dir "$dir/state" >/dev/null 2>&1 || true
	if [ -n "${PLUTO_KEEP_TEST_DIRS:-}" ]; then
		echo "kept $dir" >&2
	else
		rm -rf "$dir"
	fi
}
trap cleanup EXIT INT TERM

# A base port whose eight ports are all free right now.
base=$(python3 - <<'EOF'
import random, socket
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()
for _ in range(200):
    b = random.randrange(20000, 60000)
    if all(free(b + o) for o in (143, 201, 202, 211, 212, 221, 222, 993)):
        print(b)
        break
EOF
)
[ -n "$base" ] || fail "no free base port"
port=$((base + 993))

say "up (base port $base)"
out=$(timeout 120 "$local_cmd" up --dir "$dir/state" --base-port "$base" 2>&1) ||
	fail "up failed: $out"
printf '%s\n' "$out" | grep -q "imaps://127.0.0.1:$port" ||
	fail "up does not print the URL: $out"
for f in pluto.ini users.txt demo-passwords.txt pki/internal-ca.pem \
	 pki/public.pem; do
	[ -f "$dir/state/$f" ] || fail "$f missing"
done
mode=$(stat -c %a "$dir/state/demo-passwords.txt" 2>/dev/null ||
       stat -f %Lp "$dir/state/demo-passwords.txt")
[ "$mode" = 600 ] || fail "demo-passwords.txt is mode $mode"

user=$(awk 'NR==1 { print $1 }' "$dir/state/demo-passwords.txt")
pass=$(awk 'NR==1 { print $2 }' "$dir/state/demo-passwords.txt")
printf '%s\n' "$out" | grep -qF -e "$pass" || fail "password not printed"
grep -qF -e "$pass" "$dir/state/users.txt" &&
	say "note: users.txt holds plaintext (no crypt module)"

say "curl -k imaps://127.0.0.1:$port/ -u $user:..."
list=$(curl -sS -k --max-time 30 "imaps://127.0.0.1:$port/" \
	-u "$user:$pass") || fail "curl LIST failed"
printf '%s\n' "$list" | grep -q INBOX || fail "no INBOX in: $list"

msg=$(curl -sS -k --max-time 30 "imaps://127.0.0.1:$port/INBOX;UID=1" \
	-u "$user:$pass") || fail "curl FETCH failed"
printf '%s\n' "$msg" | grep -q "Subject: Welcome to pluto, $user" ||
	fail "no welcome message: $msg"

# The first two users live on worker-1, the others on worker-2.
u3=$(awk 'NR==3 { print $1 }' "$dir/state/demo-passwords.txt")
[ -d "$dir/state/data/worker-1/maildirs/$user" ] ||
	fail "$user's Maildir is not on worker-1"
[ -d "$dir/state/data/worker-2/maildirs/$u3" ] ||
	fail "$u3's Maildir is not on worker-2"
[ ! -d "$dir/state/data/worker-1/maildirs/$u3" ] ||
	fail "$u3's Maildir is on worker-1"

say "a wrong password is refused"
if curl -sS -k --max-time 30 "imaps://127.0.0.1:$port/" \
	-u "$user:wrong" >/dev/null 2>&1; then
	fail "a wrong password was accepted"
fi

say "status"
st=$("$local_cmd" status --dir "$dir/state") || fail "status: $st"
[ "$(printf '%s\n' "$st" | grep -c ' running ')" -eq 4 ] ||
	fail "status does not show four running nodes: $st"

say "up again reuses everything"
out2=$(timeout 60 "$local_cmd" up --dir "$dir/state" 2>&1) ||
	fail "second up failed: $out2"
printf '%s\n' "$out2" | grep -q "already running" ||
	fail "second up restarted nodes: $out2"
printf '%s\n' "$out2" | grep -qF -e "$pass" || fail "password changed"
curl -sS -k --max-time 30 "imaps://127.0.0.1:$port/INBOX" \
	-X 'EXAMINE INBOX' -u "$user:$pass" | grep -q '^\* 1 EXISTS' ||
	fail "the INBOX was seeded twice"

say "down"
timeout 60 "$local_cmd" down --dir "$dir/state" >/dev/null ||
	fail "down failed"
if "$local_cmd" status --dir "$dir/state" >/dev/null; then
	fail "status says running after down"
fi
for node in storage worker-1 worker-2 distributor; do
	[ ! -f "$dir/state/run/$node.pid" ] || fail "$node.pid left behind"
done
if curl -sS -k --max-time 5 "imaps://127.0.0.1:$port/" \
	-u "$user:$pass" >/dev/null 2>&1; then
	fail "something still answers on $port"
fi

say "a directory not made by pluto-local is left alone"
mkdir -p "$dir/other"
echo "[Pluto]" > "$dir/other/pluto.ini"
if "$local_cmd" up --dir "$dir/other" >/dev/null 2>&1; then
	fail "up took over a foreign pluto.ini"
fi

say "PASS"
