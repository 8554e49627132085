#!/bin/sh
# tools/setup.sh - set up, build and run pluto on a fresh Debian 12 machine.
#
#   tools/setup.sh run     install what is missing, build, and start a
#                          local cluster (README.md, Quick start line 1)
#   tools/setup.sh check   install what is missing, build, and run the whole
#                          test suite (README.md, Quick start line 2)
#   tools/setup.sh build   install what is missing and build
#   tools/setup.sh deps    only install what is missing
#
# Debian packages are installed with apt-get only when absent.  The build
# goes to $PLUTO_BUILDDIR (default: build/ in the source tree) so the source
# tree stays clean; extra configure flags come from $PLUTO_CONFIGURE_FLAGS.
set -eu

srcdir=$(cd "$(dirname "$0")/.." && pwd)
builddir=${PLUTO_BUILDDIR:-$srcdir/build}
configure_flags=${PLUTO_CONFIGURE_FLAGS:-}
jobs=$(nproc 2>/dev/null || echo 2)

# What building and testing need, by Debian package name: the build,
# certtool for certificate checks, a PostgreSQL server for the AuthPostgres
# tests, curl as an independent IMAP client, Dovecot to compare with and
# gnuplot for pluto-bench's latency plots.
packages="gcc make autoconf automake pkgconf libgnutls28-dev gnutls-bin
libiniparser-dev libcunit1-dev libcrypt-dev libpq-dev python3 curl
postgresql dovecot-imapd gnuplot-nox"

say() { printf 'setup: %s\n' "$*"; }

missing_packages() {
	for p in $packages; do
		status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
		case $status in
		*" installed") ;;
		*) printf '%s ' "$p" ;;
		esac
	done
}

install_deps() {
	missing=$(missing_packages)
	if [ -z "$missing" ]; then
		say "all Debian packages present"
		return 0
	fi
	say "installing missing Debian packages: $missing"
	sudo=
	if [ "$(id -u)" -ne 0 ]; then
		sudo=sudo
	fi
	$sudo apt-get update -qq
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing
}

build() {
	if [ ! -x "$srcdir/configure" ] ||
	   [ "$srcdir/configure.ac" -nt "$srcdir/configure" ]; then
		say "autoreconf"
		(cd "$srcdir" && autoreconf -fi)
	fi
	mkdir -p "$builddir"
	cd "$builddir"
	if [ ! -f Makefile ] || [ "$srcdir/configure" -nt Makefile ] ||
	   [ "$(cat .configure-flags 2>/dev/null)" != "$configure_flags" ]; then
		say "configure $configure_flags"
		# shellcheck disable=SC2086
		"$srcdir/configure" $configure_flags
		printf '%s' "$configure_flags" > .configure-flags
	fi
	say "make -j$jobs"
	make -j"$jobs"
}

# pluto's main job: a local cluster (storage, two workers, the
# distributor) on 127.0.0.1 with its own PKI and demo users; pluto-local
# prints how to connect.
run_local() {
	"$srcdir/tools/pluto-local" up --dir "$srcdir/local"
}

case ${1:-} in
deps)
	install_deps
	;;
build)
	install_deps
	build
	;;
run)
	install_deps
	build
	run_local
	;;
check)
	install_deps
	build
	say "make check"
	make -j"$jobs" check
	;;
*)
	sed -n '2,15p' "$0" >&2
	exit 2
	;;
esac
