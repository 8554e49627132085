"""pluto_harness - start real pluto nodes on 127.0.0.1 for integration tests.

A Cluster writes a complete configuration into a private temporary
directory (ports picked free at creation time), creates its PKI with the
real pluto-pki, and starts, stops (SIGTERM) or kills (SIGKILL) real pluto
processes.  Every process is killed when the test ends, so tests stop by
themselves even when they fail.

The binaries come from $PLUTO and $PLUTO_PKI (set by `make check`), or
from the build tree next to this file.
"""

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def binary(env_name, default_name):
    path = os.environ.get(env_name)
    if path:
        return path
    top = os.environ.get("top_builddir") or os.path.join(HERE, "..", "..")
    return os.path.join(top, default_name)


PLUTO = binary("PLUTO", "pluto")
PLUTO_PKI = binary("PLUTO_PKI", "pluto-pki")


_given_ports = set()


def free_port():
    """A TCP port that nothing listens on right now (the kernel picks it
    from the ephemeral range, which keeps parallel tests apart), and that
    this process has not handed out before: the kernel may offer a port
    again once the probing socket is closed, and a config naming one port
    twice is refused."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _given_ports:
            _given_ports.add(port)
            return port


def wait_port(port, timeout=10.0, proc=None):
    """Waits until something accepts on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %d before listening"
                               % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("nothing listens on port %d" % port)


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


class Cluster:
    """A configuration for storage, n workers and a distributor."""

    def __init__(self, workers=2, users_per_worker=10, users=None,
                 extra=None, auth_postgres=None):
        """auth_postgres: None for AuthFile (users.txt, from `users`), or
        the keys of [Distributor.AuthPostgres] (IP, Port, Database, User,
        Password, UseTLS) to make AuthPostgres the adapter.  users.txt
        and its section are written either way.  The attribute of the
        same name may be changed later, then write_config() called and
        the distributor restarted."""
        self.dir = tempfile.mkdtemp(prefix="pluto-it.")
        self.procs = {}
        self.logs = {}
        self.ports = {
            "distributor": free_port(),
            "distributor_starttls": free_port(),
            "storage_mail": free_port(),
            "storage_sync": free_port(),
        }
        self.workers = []
        for i in range(workers):
            name = "worker-%d" % (i + 1)
            start = i * users_per_worker + 1
            self.workers.append({
                "name": name,
                "mail": free_port(),
                "sync": free_port(),
                "start": start,
                "end": start + users_per_worker - 1,
            })
        self.users = users or [("user%d" % i, "password%d" % i)
                               for i in range(1, workers * users_per_worker
                                              + 1)]
        self.extra = extra or {}
        self.auth_postgres = auth_postgres
        self.config = os.path.join(self.dir, "pluto.ini")
        self.write_config()
        atexit.register(self.destroy)

    def write_config(self):
        with open(os.path.join(self.dir, "users.txt"), "w") as f:
            for name, password in self.users:
                f.write("%s:%s\n" % (name, password))
        lines = [
            "[Pluto]",
            "RootCertLoc = pki/internal-ca.pem",
            "IntlConnTimeout = 500",
            "IntlConnRetry = 2",
            "LogLevel = debug",
            "",
            "[IMAP]",
            "Greeting = Pluto ready.",
            "HierarchySeparator = .",
            "",
            "[Distributor]",
            "PublicIP = 127.0.0.1",
            "ListenIP = 127.0.0.1",
            "Port = %d" % self.ports["distributor"],
            "StartTLSPort = %d" % self.ports["distributor_starttls"],
            "AuthAdapter = %s" % ("AuthFile" if self.auth_postgres is None
                                  else "AuthPostgres"),
            "",
            "[Distributor.PublicTLS]",
            "CertLoc = pki/public.pem",
            "KeyLoc = pki/public.key",
            "",
            "[Distributor.InternalTLS]",
            "CertLoc = pki/distributor.pem",
            "KeyLoc = pki/distributor.key",
            "",
            "[Distributor.AuthFile]",
            "File = users.txt",
            "Separator = :",
            "",
        ]
        if self.auth_postgres is not None:
            lines.append("[Distributor.AuthPostgres]")
            for k, v in self.auth_postgres.items():
                lines.append("%s = %s" % (k, v))
            lines.append("")
        for w in self.workers:
            lines += [
                "[Workers.%s]" % w["name"],
                "PublicIP = 127.0.0.1",
                "ListenIP = 127.0.0.1",
                "MailPort = %d" % w["mail"],
                "SyncPort = %d" % w["sync"],
                "UserStart = %d" % w["start"],
                "UserEnd = %d" % w["end"],
                "MaildirRoot = data/%s/maildirs" % w["name"],
                "CRDTLayerRoot = data/%s/crdt" % w["name"],
                "",
                "[Workers.%s.TLS]" % w["name"],
                "CertLoc = pki/%s.pem" % w["name"],
                "KeyLoc = pki/%s.key" % w["name"],
                "",
            ]
        lines += [
            "[Storage]",
            "PublicIP = 127.0.0.1",
            "ListenIP = 127.0.0.1",
            "MailPort = %d" % self.ports["storage_mail"],
            "SyncPort = %d" % self.ports["storage_sync"],
            "MaildirRoot = data/storage/maildirs",
            "CRDTLayerRoot = data/storage/crdt",
            "",
            "[Storage.TLS]",
            "CertLoc = pki/storage.pem",
            "KeyLoc = pki/storage.key",
            "",
        ]
        for section, keys in self.extra.items():
            lines.append("[%s]" % section)
            for k, v in keys.items():
                lines.append("%s = %s" % (k, v))
            lines.append("")
        with open(self.config, "w") as f:
            f.write("\n".join(lines))

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def pki(self, *args):
        return subprocess.run([PLUTO_PKI, "-c", self.config] + list(args),
                              capture_output=True, text=True, timeout=60)

    def make_pki(self):
        r = self.pki("--public-selfsigned")
        if r.returncode != 0:
            raise Failure("pluto-pki failed: %s" % r.stderr)

    def pluto(self, *args, timeout=30):
        return subprocess.run([PLUTO, "-c", self.config] + list(args),
                              capture_output=True, text=True,
                              timeout=timeout)

    def start(self, name, *args, wait_port_num=None):
        """Starts `pluto -c CONFIG ARGS` as node `name`, logging into
        DIR/name.log, and waits until it accepts on wait_port_num."""
        log = open(self.path(name + ".log"), "ab")
        proc = subprocess.Popen([PLUTO, "-c", self.config] + list(args),
                                stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        self.procs[name] = proc
        self.logs[name] = log
        if wait_port_num is not None:
            wait_port(wait_port_num, proc=proc)
        return proc

    def stop(self, name, sig=signal.SIGTERM, timeout=20):
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise Failure("%s did not stop within %ds" % (name, timeout))
        self.logs.pop(name).close()
        return proc.returncode

    def kill(self, name):
        return self.stop(name, signal.SIGKILL)

    def log_text(self, name):
        with open(self.path(name + ".log"), errors="replace") as f:
            return f.read()

    def destroy(self):
        for name in list(self.procs):
            try:
                self.kill(name)
            except Exception:
                pass
        if os.environ.get("PLUTO_KEEP_TEST_DIRS"):
            sys.stderr.write("kept %s\n" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def run_tests(tests):
    """Runs (name, function) pairs; prints one line per test and the
    closing 'N passed, N failed' line; exits 0 or 1."""
    passed = failed = 0
    for name, fn in tests:
        try:
            fn()
        except Exception as e:  # any failure, including harness errors
            failed += 1
            print("FAIL: %s: %s: %s" % (name, type(e).__name__, e))
        else:
            passed += 1
            print("PASS: %s" % name)
        sys.stdout.flush()
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(0 if failed == 0 else 1)
