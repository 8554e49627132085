#!/bin/bash
# private-dovecot.sh - a Dovecot of our own on 127.0.0.1, for tests and
# benchmarks; the system's service and configuration are never touched.
#
#   private-dovecot.sh start DIR TLS_PORT [STARTTLS_PORT] <USERS
#   private-dovecot.sh stop DIR
#
# start: everything goes into DIR (created if missing): a self-signed
# ECDSA certificate for localhost and 127.0.0.1, a passwd-file of the
# users read from standard input ("name password" per line, stored as
# plain text so that no password hash is paid at LOGIN), Maildir storage
# in DIR/mail, base and state directories, the log DIR/dovecot.log and
# DIR/dovecot.conf.  Implicit TLS on TLS_PORT, plain IMAP with STARTTLS on
# STARTTLS_PORT if given (none otherwise).  Returns once the listeners
# answer, or exits 1 with the reason on standard error.  As root, Dovecot
# runs its processes as its own accounts and stores mail as nobody; as
# anyone else, everything runs as the caller.  Otherwise Dovecot's
# defaults: mail_fsync = optimized fsyncs the message file before an
# APPEND's OK, but neither directories nor index files.
#
# As root, DIR and every directory above it must be open to others
# (mode 755): Dovecot's own accounts read the passwd-file there.
#
# stop: stops the instance in DIR, if one runs.
#
# Needs dovecot-imapd and gnutls-bin (certtool); installing them is the
# caller's business.
set -u

DOVECOT=/usr/sbin/dovecot
DOVEADM=$(command -v doveadm || echo /usr/bin/doveadm)

die() {
	echo "private-dovecot.sh: $*" >&2
	exit 1
}

stop() {
	local dir=$1 pid

	[ -f "$dir/dovecot.conf" ] || return 0
	timeout 10 "$DOVEADM" -c "$dir/dovecot.conf" stop >/dev/null 2>&1
	pid=$(cat "$dir/run/master.pid" 2>/dev/null)
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill "$pid" 2>/dev/null
		sleep 1
		kill -9 "$pid" 2>/dev/null
	fi
	return 0
}

make_certificate() {
	local dir=$1

	cat >"$dir/cert.cfg" <<CFG
cn = "localhost"
dns_name = "localhost"
ip_address = "127.0.0.1"
expiration_days = 2
tls_www_server
signing_key
encryption_key
CFG
	timeout 60 certtool --generate-privkey --key-type=ecdsa \
		--outfile "$dir/key.pem" >/dev/null 2>&1 ||
		die "certtool could not make a key"
	timeout 60 certtool --generate-self-signed \
		--load-privkey "$dir/key.pem" --template "$dir/cert.cfg" \
		--outfile "$dir/cert.pem" >/dev/null 2>&1 ||
		die "certtool could not make a certificate"
}

listening() {
	timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

start() {
	local dir=$1 port_tls=$2 port_starttls=${3:-0}
	local internal_user login_user mail_user mail_group chroot_lines
	local starttls_address=

	[ -x "$DOVECOT" ] || die "no $DOVECOT (apt-get install dovecot-imapd)"
	mkdir -p "$dir/mail" "$dir/run" "$dir/state" || die "mkdir $dir"
	chmod 755 "$dir"
	make_certificate "$dir"
	if [ "$(id -u)" -eq 0 ]; then
		internal_user=dovecot
		login_user=dovenull
		mail_user=nobody
		mail_group=$(id -gn nobody)
		chroot_lines=
	else
		internal_user=$(id -un)
		login_user=$internal_user
		mail_user=$internal_user
		mail_group=$(id -gn)
		chroot_lines="service anvil {
  chroot =
}
service imap-login {
  chroot =
}"
	fi
	id "$internal_user" >/dev/null 2>&1 || die "no account $internal_user"
	id "$login_user" >/dev/null 2>&1 || die "no account $login_user"
	[ "$(id -u)" -eq 0 ] && chown "$mail_user:$mail_group" "$dir/mail"
	awk 'NF >= 2 { print $1 ":{PLAIN}" $2 }' >"$dir/passwd"
	chmod 644 "$dir/passwd"
	[ "$port_starttls" -ne 0 ] && starttls_address="address = 127.0.0.1"
	cat >"$dir/dovecot.conf" <<CONF
# private-dovecot.sh: a private Dovecot, nothing shared with the system's.
protocols = imap
listen = 127.0.0.1
base_dir = $dir/run
state_dir = $dir/state
instance_name = private-dovecot-$$
log_path = $dir/dovecot.log
default_internal_user = $internal_user
default_login_user = $login_user
ssl = yes
ssl_cert = <$dir/cert.pem
ssl_key = <$dir/key.pem
disable_plaintext_auth = yes
auth_mechanisms = plain
mail_location = maildir:$dir/mail/%u
mail_max_userip_connections = 1000
first_valid_uid = 1
passdb {
  driver = passwd-file
  args = scheme=PLAIN $dir/passwd
}
userdb {
  driver = static
  args = uid=$mail_user gid=$mail_group home=$dir/mail/%u
}
service imap-login {
  inet_listener imap {
    $starttls_address
    port = $port_starttls
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $port_tls
    ssl = yes
  }
}
$chroot_lines
CONF
	timeout 30 "$DOVECOT" -c "$dir/dovecot.conf" ||
		die "dovecot did not start: $(tail -5 "$dir/dovecot.log" 2>/dev/null)"
	for _ in $(seq 1 100); do
		if listening "$port_tls" &&
		   { [ "$port_starttls" -eq 0 ] ||
		     listening "$port_starttls"; }; then
			return 0
		fi
		sleep 0.1
	done
	die "dovecot is not listening: $(tail -5 "$dir/dovecot.log" 2>/dev/null)"
}

case ${1:-} in
start)
	[ $# -ge 3 ] && [ $# -le 4 ] ||
		die "usage: private-dovecot.sh start DIR TLS_PORT [STARTTLS_PORT]"
	start "$2" "$3" "${4:-0}"
	;;
stop)
	[ $# -eq 2 ] || die "usage: private-dovecot.sh stop DIR"
	stop "$2"
	;;
*)
	die "usage: private-dovecot.sh start DIR TLS_PORT [STARTTLS_PORT] | stop DIR"
	;;
esac
