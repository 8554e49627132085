"""intl_client - a test client for the internal session protocol.

Speaks doc/protocol.md to a worker's or the storage node's MailPort:
mutual TLS with a certificate of the cluster's internal CA, the opening
line, then IMAP.  The IMAP side is a small line-oriented client (not
imaplib) so that tests see every untagged response in order, can send
malformed commands and can hang up anywhere.
"""

import re
import socket
import ssl


class Lit:
    """A synchronising literal in a command: {n}, wait for '+', bytes."""

    def __init__(self, data, plus=False):
        self.data = data if isinstance(data, bytes) else data.encode()
        self.plus = plus  # {n+}: LITERAL+, no round trip


class Response:
    def __init__(self, tag, status, text, untagged):
        self.tag = tag
        self.status = status      # "OK", "NO", "BAD"
        self.text = text          # rest of the tagged line (str)
        self.untagged = untagged  # list of str, "* " stripped

    def find(self, pattern):
        """Untagged lines matching the regular expression."""
        return [u for u in self.untagged if re.search(pattern, u)]

    def __repr__(self):
        return "<%s %s %r untagged=%r>" % (self.tag, self.status,
                                          self.text, self.untagged)


def tls_context(cluster, cert_name="distributor", ca=None, certs_dir=None):
    """A client context trusting the internal CA, presenting cert_name's
    certificate (None: no certificate)."""
    pki = certs_dir or cluster.path("pki")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca or cluster.path("pki", "internal-ca.pem"))
    if cert_name is not None:
        ctx.load_cert_chain(f"{pki}/{cert_name}.pem",
                            f"{pki}/{cert_name}.key")
    return ctx


def connect(port, ctx, server_name, timeout=15):
    sock = socket.create_connection(("127.0.0.1", port), timeout)
    try:
        return ctx.wrap_socket(sock, server_hostname=server_name)
    except Exception:
        sock.close()
        raise


class Session:
    """One internal session.  Raises EOFError when the server closes."""

    def __init__(self, sock):
        self.sock = sock
        self.f = sock.makefile("rb")
        self.n = 0
        self.greeting = None

    @classmethod
    def open(cls, port, ctx, server_name, user, client="192.0.2.7:4242",
             worker=None, expect_ok=True):
        s = cls(connect(port, ctx, server_name))
        line = "PLUTO-SESSION 1 %s %s" % (user, client)
        if worker:
            line += " " + worker
        s.send((line + "\r\n").encode())
        s.greeting = s.readline().decode(errors="replace")
        if expect_ok and not s.greeting.startswith("* OK [PLUTO-SESSION]"):
            raise AssertionError("session refused: %r" % s.greeting)
        return s

    def send(self, data):
        self.sock.sendall(data)

    def readline(self):
        line = self.f.readline()
        if not line:
            raise EOFError("server closed the session")
        return line

    def read_response_line(self):
        """One response line with the literals it carries inlined."""
        out = b""
        while True:
            line = self.readline()
            out += line
            m = re.search(rb"\{(\d+)\}\r\n$", line)
            if not m:
                return out.rstrip(b"\r\n").decode(errors="replace")
            out += self.f.read(int(m.group(1)))

    def next_tag(self):
        self.n += 1
        return "T%d" % self.n

    def run(self, *parts, tag=None):
        """Sends one command made of str/bytes parts and Lit literals and
        returns its Response."""
        tag = tag or self.next_tag()
        buf = tag.encode() + b" "
        untagged = []
        for p in parts:
            if isinstance(p, Lit):
                buf += b"{%d%s}\r\n" % (len(p.data), b"+" if p.plus else b"")
                if not p.plus:
                    self.send(buf)
                    buf = b""
                    while True:
                        line = self.read_response_line()
                        if line.startswith("+"):
                            break
                        if line.startswith(tag + " "):
                            return self._tagged(tag, line, untagged)
                        untagged.append(line[2:])
                buf += p.data
            else:
                buf += p if isinstance(p, bytes) else p.encode()
        self.send(buf + b"\r\n")
        return self.wait(tag, untagged)

    def wait(self, tag, untagged=None):
        untagged = [] if untagged is None else untagged
        while True:
            line = self.read_response_line()
            if line.startswith(tag + " "):
                return self._tagged(tag, line, untagged)
            if line.startswith("* "):
                untagged.append(line[2:])
            else:
                untagged.append(line)

    @staticmethod
    def _tagged(tag, line, untagged):
        rest = line[len(tag) + 1:]
        status, _, text = rest.partition(" ")
        return Response(tag, status, text, untagged)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def quote(name):
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
