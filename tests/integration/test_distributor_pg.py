#!/usr/bin/env python3
"""test_distributor_pg - logins through the distributor with the
AuthPostgres adapter, against a real PostgreSQL server.

pg_server.sh starts a throw-away server (TLS on, a `tlsonly` role that it
turns away without TLS); the users table gets crypt(3) hashes for users
of both workers.  A real cluster (storage, two workers, the distributor)
runs on 127.0.0.1, and Python's imaplib logs in over implicit TLS, twice:
with UseTLS = false as the table's owner, then, after a distributor
restart, with UseTLS = true as `tlsonly`, so that the second round only
passes when the link to the database is encrypted.  Each round: right
passwords log in and land on the worker whose UserStart..UserEnd holds
the id (APPEND, then the Maildir is there and not on the other worker);
a wrong password and an unknown user get the same NO
[AUTHENTICATIONFAILED]; with the database stopped a right password gets
NO [UNAVAILABLE]; with it started again the login works.  At the end no
password is in any node's log.

Without a PostgreSQL server this test FAILS: AuthPostgres was built, so
it must be tested.  The server and every node are stopped on exit.
"""

import atexit
import imaplib
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import pluto_harness as h  # noqa: E402
from pluto_harness import check  # noqa: E402

PG_SERVER = os.path.join(HERE, "pg_server.sh")

# Python 3.13 dropped crypt; openssl makes $6$ hashes as well.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import crypt
    except ImportError:
        crypt = None


def fatal(what):
    print("FAIL: %s" % what)
    sys.stdout.flush()
    sys.exit(1)


# SIGTERM (make's timeout, ^C in another terminal) runs the atexit
# handlers too: the server and the nodes must not outlive the test.
def _on_signal(signum, _frame):
    sys.exit(128 + signum)


for _sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
    signal.signal(_sig, _on_signal)


def pg(*args, stdin=None, timeout=60):
    return subprocess.run([PG_SERVER] + list(args), input=stdin,
                          capture_output=True, text=True, timeout=timeout)


# Under /tmp whatever TMPDIR says: as root, the server runs as the
# postgres user, which must reach the directory.
PG_DIR = tempfile.mkdtemp(prefix="pluto-pg.",
                          dir="/tmp" if os.getuid() == 0 else None)


def _pg_destroy():
    try:
        pg("destroy", PG_DIR)
    finally:
        shutil.rmtree(PG_DIR, ignore_errors=True)


atexit.register(_pg_destroy)


def pg_start():
    # The first start may install PostgreSQL with apt-get.
    try:
        r = pg("start", PG_DIR, timeout=1800)
    except subprocess.TimeoutExpired:
        fatal("pg_server.sh start timed out")
    if r.returncode != 0:
        fatal("cannot run a PostgreSQL server to test AuthPostgres "
              "against:\n%s" % r.stderr.strip())
    return int(r.stdout.split()[-1])


def pg_stop():
    r = pg("stop", PG_DIR)
    check(r.returncode == 0, "stopping PostgreSQL: %s" % r.stderr.strip())


def sha512_hash(password):
    if crypt is not None:
        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))
    r = subprocess.run(["openssl", "passwd", "-6", "-stdin"],
                       input=password, capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0 or not r.stdout.startswith("$6$"):
        fatal("cannot make a $6$ hash: %s" % r.stderr.strip())
    return r.stdout.strip()


def yescrypt_hash(password):
    """$y$ when libcrypt can (Debian's default method), else $6$."""
    if crypt is None:
        return sha512_hash(password)
    salt = crypt.mksalt(crypt.METHOD_SHA512).split("$")[2][:16]
    hashed = crypt.crypt(password, "$y$j9T$%s$" % salt)
    if hashed is None or not hashed.startswith("$y$"):
        return sha512_hash(password)
    return hashed


PG_PORT = pg_start()
with open(os.path.join(PG_DIR, "password")) as _f:
    PG_PASSWORD = _f.read().strip()

# (id, name, password, hash): ids 1..10 are worker-1's, 11..20
# worker-2's.  One pair per round, so that each round's Maildirs are new.
USERS = [
    (3, "alice", "alice-Secret-3", sha512_hash),
    (14, "bob", "bob's secret \"14\"", yescrypt_hash),
    (5, "carol", "carol-Secret-5", yescrypt_hash),
    (17, "dave", "dave secret 17", sha512_hash),
]
PASSWORDS = {name: pw for _, name, pw, _ in USERS}
WORKER_OF = {"alice": "worker-1", "bob": "worker-2",
             "carol": "worker-1", "dave": "worker-2"}

_sql = "".join("INSERT INTO users VALUES (%d, '%s', '%s');\n"
               % (uid, name, make(pw)) for uid, name, pw, make in USERS)
_r = pg("psql", PG_DIR, stdin=_sql)
if _r.returncode != 0:
    fatal("cannot fill the users table: %s" % _r.stderr.strip())


def auth_postgres(use_tls):
    # tlsonly may read the table, and pg_hba.conf rejects it without TLS.
    return {
        "IP": "127.0.0.1",
        "Port": str(PG_PORT),
        "Database": "plutoauth",
        "User": "tlsonly" if use_tls else "pluto",
        "Password": PG_PASSWORD,
        "UseTLS": "true" if use_tls else "false",
    }


# users.txt (AuthFile's, unused here) names a user the table does not: a
# login as that user must fail.
C = h.Cluster(workers=2, users=[("fileonly", "fileonly-password")],
              auth_postgres=auth_postgres(False))
os.chmod(C.config, 0o600)
C.make_pki()
C.start("storage", "--storage", wait_port_num=C.ports["storage_mail"])
for _w in C.workers:
    C.start(_w["name"], "--worker", _w["name"], wait_port_num=_w["mail"])
C.start("distributor", "--distributor", wait_port_num=C.ports["distributor"])
PORT = C.ports["distributor"]
PUBLIC_CA = C.path("pki", "public.pem")


def imaps():
    ctx = ssl.create_default_context(cafile=PUBLIC_CA)
    return imaplib.IMAP4_SSL("127.0.0.1", PORT, ssl_context=ctx, timeout=30)


def login_fails(user, password, code):
    """Logs in and expects NO [code]; returns the response text."""
    m = imaps()
    try:
        m.login(user, password)
    except imaplib.IMAP4.error as e:
        text = e.args[0]
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        check(text.startswith("[%s]" % code),
              "%s: wanted NO [%s], got %r" % (user, code, text))
        typ, _ = m.noop()
        check(typ == "OK", "connection usable after the refusal")
        m.logout()
        return text
    m.logout()
    raise h.Failure("%s logged in, wanted NO [%s]" % (user, code))


def message(name):
    return ("From: tester@example.org\r\nTo: %s@example.org\r\n"
            "Subject: AuthPostgres\r\n\r\nhello %s\r\n"
            % (name, name)).encode()


def maildir(node, user):
    return C.path("data", node, "maildirs", user)


def good_login(user):
    """Logs in, APPENDs, checks the Maildir is on the right worker."""
    node = WORKER_OF[user]
    other = "worker-2" if node == "worker-1" else "worker-1"
    m = imaps()
    typ, _ = m.login(user, PASSWORDS[user])
    check(typ == "OK", "%s logs in" % user)
    typ, data = m.append("INBOX", None, None, message(user))
    check(typ == "OK", "APPEND for %s: %r" % (user, data))
    typ, data = m.select("INBOX")
    check(typ == "OK" and int(data[0]) >= 1, "SELECT: %r" % data)
    m.logout()
    check(os.path.isdir(maildir(node, user)),
          "%s's Maildir on %s" % (user, node))
    check(not os.path.exists(maildir(other, user)),
          "%s's Maildir not on %s" % (user, other))


def restart_distributor(use_tls):
    check(C.stop("distributor") == 0, "distributor exits 0 on SIGTERM")
    C.auth_postgres = auth_postgres(use_tls)
    C.write_config()
    C.start("distributor", "--distributor",
            wait_port_num=C.ports["distributor"])


def round_(use_tls, users):
    log = C.log_text("distributor")
    check("AuthPostgres" in log or "plutoauth" in log,
          "the distributor uses AuthPostgres")
    for user in users:
        good_login(user)
    if use_tls:
        check("tls=yes" in C.log_text("distributor"),
              "the database link is TLS")
    bad = login_fails(users[0], PASSWORDS[users[0]] + "x",
                      "AUTHENTICATIONFAILED")
    unknown = login_fails("nosuchuser", "wrong-secret-unknown",
                          "AUTHENTICATIONFAILED")
    check(bad == unknown, "unknown user and wrong password look alike: "
          "%r vs %r" % (bad, unknown))
    pg_stop()
    try:
        login_fails(users[1], PASSWORDS[users[1]], "UNAVAILABLE")
    finally:
        pg_start()
    # The pooled connections died with the server: a new one is made.
    m = imaps()
    typ, _ = m.login(users[1], PASSWORDS[users[1]])
    check(typ == "OK", "%s logs in once the database is back" % users[1])
    m.logout()


def test_plain_link():
    round_(False, ["alice", "bob"])
    login_fails("fileonly", "fileonly-password", "AUTHENTICATIONFAILED")


def test_tls_link():
    restart_distributor(True)
    round_(True, ["carol", "dave"])


def test_no_password_in_any_log():
    secrets = list(PASSWORDS.values()) + [PG_PASSWORD,
                                          "wrong-secret-unknown"]
    secrets += [pw + "x" for pw in PASSWORDS.values()]
    for name in ["distributor", "storage", "worker-1", "worker-2"]:
        log = C.log_text(name)
        for secret in secrets:
            check(secret not in log, "a password in %s's log" % name)
    log = C.log_text("distributor")
    check("nosuchuser" in log, "failed login logged with the user name")


if __name__ == "__main__":
    h.run_tests([
        ("AuthPostgres, UseTLS = false", test_plain_link),
        ("AuthPostgres, UseTLS = true", test_tls_link),
        ("no password in any log", test_no_password_in_any_log),
    ])
