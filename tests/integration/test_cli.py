#!/usr/bin/env python3
"""The pluto and pluto-pki programs as an operator meets them: options,
--check-config on good and broken files, PKI creation and its refusals,
and the shipped example configuration."""

import os
import re
import shutil
import signal
import stat
import subprocess

from pluto_harness import (PLUTO, PLUTO_PKI, Cluster, check, run_tests)

TOP_SRCDIR = os.environ.get("top_srcdir",
                            os.path.join(os.path.dirname(__file__), "..",
                                         ".."))


def run(*args, timeout=30):
    return subprocess.run(list(args), capture_output=True, text=True,
                          timeout=timeout)


def test_version_and_help():
    r = run(PLUTO, "--version")
    check(r.returncode == 0, "--version exits 0")
    check(re.match(r"pluto \d+\.\d+", r.stdout), "--version prints it")
    r = run(PLUTO, "--help")
    check(r.returncode == 0 and "--check-config" in r.stdout,
          "--help lists the options")
    r = run(PLUTO_PKI, "--help")
    check(r.returncode == 0 and "--force" in r.stdout,
          "pluto-pki --help lists the options")


def test_bad_options():
    check(run(PLUTO).returncode != 0, "no role is an error")
    r = run(PLUTO, "--storage", "--distributor")
    check(r.returncode != 0, "two roles are an error")
    r = run(PLUTO, "--failover")
    check(r.returncode != 0 and "--worker" in r.stderr,
          "--failover needs --worker")
    r = run(PLUTO, "--bogus")
    check(r.returncode != 0, "an unknown option is an error")


def test_pki_and_check_config():
    c = Cluster()
    r = c.pluto("--check-config")
    check(r.returncode != 0, "check-config fails while certificates are"
          " missing")
    check("CertLoc" in r.stderr, "the missing certificate is named: "
          + r.stderr)
    c.make_pki()
    r = c.pluto("--check-config")
    check(r.returncode == 0, "check-config passes: " + r.stderr)
    check("OK" in r.stdout, "check-config says OK")
    for name in ("internal-ca", "distributor", "storage", "worker-1",
                 "worker-2", "public"):
        key = c.path("pki", name + ".key")
        if name == "internal-ca" and not os.path.exists(key):
            continue
        mode = stat.S_IMODE(os.stat(key).st_mode)
        check(mode == 0o600, "%s is 0600, not %o" % (key, mode))
    before = open(c.path("pki", "storage.pem")).read()
    r = c.pki("--public-selfsigned")
    check(r.returncode != 0, "pluto-pki refuses to overwrite")
    check("force" in r.stderr, "and says how to force it: " + r.stderr)
    check(open(c.path("pki", "storage.pem")).read() == before,
          "nothing was overwritten")
    r = c.pki("--public-selfsigned", "--force")
    check(r.returncode == 0, "--force overwrites: " + r.stderr)
    check(open(c.path("pki", "storage.pem")).read() != before,
          "a new certificate was written")
    check(c.pluto("--check-config").returncode == 0, "still valid")


def test_verify_with_certtool():
    """An independent tool accepts the node certificates as issued by the
    internal CA (skipped when GnuTLS's certtool is absent)."""
    if shutil.which("certtool") is None:
        return
    c = Cluster(workers=1)
    c.make_pki()
    r = run("certtool", "--verify",
            "--load-ca-certificate", c.path("pki", "internal-ca.pem"),
            "--infile", c.path("pki", "worker-1.pem"))
    check(r.returncode == 0, "certtool verifies worker-1: " + r.stdout)
    r = run("certtool", "-i", "--infile", c.path("pki", "worker-1.pem"))
    check("CN=worker-1" in r.stdout, "the CN names the node")
    check("127.0.0.1" in r.stdout, "the address is a subjectAltName")


def test_all_errors_at_once():
    c = Cluster(workers=2)
    c.make_pki()
    with open(c.config) as f:
        text = f.read()
    w1 = c.workers[0]
    text = text.replace("MailPort = %d" % w1["mail"], "MailPort = 12abc")
    text = text.replace("UserStart = 11", "UserStart = 5")
    text = text.replace("[IMAP]\n", "[IMAP]\nColour = blue\n")
    with open(c.config, "w") as f:
        f.write(text)
    r = c.pluto("--check-config")
    check(r.returncode != 0, "a broken config fails")
    err = r.stderr
    check("[Workers.worker-1] MailPort" in err, "bad port named: " + err)
    check("overlap" in err.lower(), "overlapping ranges named: " + err)
    check("Colour" in err or "colour" in err, "unknown key named: " + err)


def test_roles_start_and_stop():
    """Every role runs in the foreground, listens, and stops gracefully
    with status 0 on SIGTERM, as service managers expect."""
    c = Cluster(workers=1)
    c.make_pki()
    w = c.workers[0]
    c.start("storage", "--storage", wait_port_num=c.ports["storage_mail"])
    c.start("worker-1", "--worker", "worker-1", wait_port_num=w["mail"])
    c.start("distributor", "--distributor",
            wait_port_num=c.ports["distributor"])
    for name in ("distributor", "worker-1", "storage"):
        code = c.stop(name)
        check(code == 0, "%s exits 0 on SIGTERM, not %s" % (name, code))
    # The failover node stands in on the stopped worker's port.
    c.start("failover", "--worker", "worker-1", "--failover",
            wait_port_num=w["mail"])
    check(c.stop("failover", signal.SIGINT) == 0,
          "the failover node exits 0 on SIGINT")
    r = c.pluto("--worker", "nosuch", timeout=10)
    check(r.returncode != 0 and "nosuch" in r.stderr,
          "an unknown worker is named")


def test_example_config():
    """conf/pluto.ini.example passes --check-config once its certificate
    files exist: the file checks are real, the example is not exempt."""
    c = Cluster(workers=1)
    example = os.path.join(TOP_SRCDIR, "conf", "pluto.ini.example")
    shutil.copy(example, c.config)
    r = c.pluto("--check-config")
    check(r.returncode != 0, "the example fails without certificates")
    # The example names its AuthFile; give it one, then the PKI.
    m = re.search(r"(?im)^\s*File\s*=\s*(\S+)", open(c.config).read())
    if m:
        path = os.path.join(c.dir, m.group(1))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("alice:secret\n")
    c.make_pki()
    r = c.pluto("--check-config")
    check(r.returncode == 0, "the example passes: " + r.stderr)


run_tests([
    ("version and help", test_version_and_help),
    ("bad options", test_bad_options),
    ("pki and check-config", test_pki_and_check_config),
    ("certtool verifies", test_verify_with_certtool),
    ("all errors at once", test_all_errors_at_once),
    ("roles start and stop", test_roles_start_and_stop),
    ("example config", test_example_config),
])
