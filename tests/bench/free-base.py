#!/usr/bin/env python3
"""free-base.py - prints a base port whose pluto-local ports are all free.

pluto-local puts a cluster on BASE+143, +201/202, +211/212, +221/222 and
+993; the benchmark scripts start clusters next to whatever else runs on
this machine, so they ask for a base whose ports nobody holds.  Prints
nothing (and exits 1) when 200 random tries found none.
"""

import random
import socket
import sys

OFFSETS = (143, 201, 202, 211, 212, 221, 222, 993)


def free(base):
    for off in OFFSETS:
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", base + off))
        except OSError:
            return False
        finally:
            s.close()
    return True


def main():
    for _ in range(200):
        base = random.randrange(20000, 60000, 1000)
        if free(base):
            print(base)
            return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
