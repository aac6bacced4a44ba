#!/usr/bin/env bash
# Prepares a Debian 12 machine (root, with Go and make) for dockmaster's tests:
# system packages, a running dockerd on /var/run/docker.sock, and the base
# image dockmaster-test/busybox:1 that every Docker test builds on (no image
# can be pulled in CI). Idempotent: a second run only checks and prints.
set -euo pipefail

# Debian packages the tests need. Other areas add theirs here (one list, one
# apt-get run): e.g. ansible-core, postgresql.
PACKAGES=(
	docker.io
	docker-registry
	busybox-static
	git
	chromium
	iptables
	iproute2
	ca-certificates
	ansible-core
	docker-compose
	postgresql
)

BASE_IMAGE=dockmaster-test/busybox:1
# Keep in sync with busyboxApplets in internal/testenv/image.go.
APPLETS=(sh echo sleep cat ls httpd nc wget env true false test printf mkdir rm cp mv ln
	chmod touch ps kill grep sed head tail wc sort tee date id hostname uname pwd)
DOCKERD_LOG=/var/log/dockmaster-dockerd.log
SOCK=/var/run/docker.sock

say() { printf 'setup: %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
	say "must run as root" >&2
	exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -eq 0 ]; then
	say "packages: all ${#PACKAGES[@]} present"
else
	say "packages: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

docker_answers() { timeout 10 docker -H "unix://$SOCK" info >/dev/null 2>&1; }

if docker_answers; then
	say "dockerd: answering on $SOCK"
else
	say "dockerd: starting in the background, log $DOCKERD_LOG"
	# setsid: the daemon must outlive this script and its caller's process group.
	setsid dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
	for _ in $(seq 1 60); do
		docker_answers && break
		sleep 0.5
	done
	if ! docker_answers; then
		say "dockerd: no answer on $SOCK after 30s; last log lines:" >&2
		tail -n 20 "$DOCKERD_LOG" >&2 || true
		exit 1
	fi
	say "dockerd: answering on $SOCK"
fi

if docker -H "unix://$SOCK" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
	say "image $BASE_IMAGE: present"
else
	say "image $BASE_IMAGE: importing from /usr/bin/busybox"
	dir=$(mktemp -d)
	trap 'rm -rf "$dir"' EXIT
	mkdir -p "$dir/bin" "$dir/etc" "$dir/tmp"
	chmod 1777 "$dir/tmp"
	cp /usr/bin/busybox "$dir/bin/busybox"
	for a in "${APPLETS[@]}"; do
		ln -s busybox "$dir/bin/$a"
	done
	tar -C "$dir" --numeric-owner --owner=0 --group=0 -c . |
		docker -H "unix://$SOCK" import - "$BASE_IMAGE" >/dev/null
	say "image $BASE_IMAGE: imported"
fi

# PostgreSQL for the second store and the replica tests
# (DOCKMASTER_TEST_POSTGRES, set by `make test`): a cluster answering on
# 127.0.0.1:5432 with role and database dockmaster/dockmaster. The role may
# create databases, because each test makes and drops its own.
PG_PORT=5432
pg_answers() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT" -t 2 >/dev/null 2>&1; }
if pg_answers; then
	say "postgresql: answering on 127.0.0.1:$PG_PORT"
else
	pg_version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
	if ! pg_lsclusters -h 2>/dev/null | awk '{print $1"/"$2}' | grep -qx "$pg_version/main"; then
		say "postgresql: creating cluster $pg_version/main"
		pg_createcluster "$pg_version" main -p "$PG_PORT" >/dev/null
	fi
	say "postgresql: starting cluster $pg_version/main"
	pg_ctlcluster "$pg_version" main start
	for _ in $(seq 1 60); do
		pg_answers && break
		sleep 0.5
	done
	if ! pg_answers; then
		say "postgresql: no answer on 127.0.0.1:$PG_PORT after 30s" >&2
		exit 1
	fi
	say "postgresql: answering on 127.0.0.1:$PG_PORT"
fi
pg_sql() { (cd / && runuser -u postgres -- psql -p "$PG_PORT" -qtAX -v ON_ERROR_STOP=1 "$@"); }
if [ "$(pg_sql -c "SELECT 1 FROM pg_roles WHERE rolname = 'dockmaster'")" != 1 ]; then
	pg_sql -c "CREATE ROLE dockmaster LOGIN CREATEDB PASSWORD 'dockmaster'"
	say "postgresql: role dockmaster created"
fi
if [ "$(pg_sql -c "SELECT 1 FROM pg_database WHERE datname = 'dockmaster'")" != 1 ]; then
	pg_sql -c "CREATE DATABASE dockmaster OWNER dockmaster"
	say "postgresql: database dockmaster created"
fi
