#!/bin/sh
# deploy.sh: upgrade APP to VERSION in DOCKMASTER_ENV with dockmaster and
# wait until the upgrade is held in upgraded, then print where to confirm.
#
# The compose files are docker/docker-compose.yml and
# docker/rancher-compose.yml in the workspace, else
# $DOCKERFILES_DIR/$APP/ (default /opt/abc/dockerfiles), as the
# rancher-compose deploy jobs looked for them. Needs DOCKMASTER_URL,
# DOCKMASTER_ACCESS_KEY and DOCKMASTER_SECRET_KEY (withCredentials); TICKET
# (DEPLOY-n) when dockmaster started the job.
set -eu
: "${APP:?APP is not set}"
: "${VERSION:?the VERSION parameter is empty}"
: "${DOCKMASTER_ENV:?DOCKMASTER_ENV is not set}"
: "${DOCKMASTER_URL:?DOCKMASTER_URL is not set}"
dockerfiles=${DOCKERFILES_DIR:-/opt/abc/dockerfiles}
dm=${DOCKMASTER_BIN:-dockmaster}

if [ -f docker/docker-compose.yml ]; then
	docker_dir=docker
elif [ -f "$dockerfiles/$APP/docker-compose.yml" ]; then
	docker_dir=$dockerfiles/$APP
else
	echo "No docker-compose.yml found. Can't continue!"
	exit 1
fi
if [ ! -f "$docker_dir/rancher-compose.yml" ]; then
	echo "No rancher-compose.yml found. Can't continue!"
	exit 1
fi

echo "Deploying $APP $VERSION to $DOCKMASTER_ENV from $docker_dir"
base=${DOCKMASTER_URL%/}
if [ -n "${TICKET:-}" ]; then
	# Started by dockmaster for a ticket: hand over, then follow the ticket
	# (it fails the job on a failed upgrade or a rollback).
	"$dm" up -f "$docker_dir/docker-compose.yml" -r "$docker_dir/rancher-compose.yml" \
		-e "$DOCKMASTER_ENV" -s "$APP" --set "VERSION=$VERSION" -d --upgrade
	"$dm" wait "$TICKET" --for upgraded
	echo "Upgraded and held. Approve or roll back: $base/tickets/$TICKET"
else
	# No ticket to follow: stay attached; up exits non-zero if the upgrade
	# fails (and was rolled back).
	"$dm" up -f "$docker_dir/docker-compose.yml" -r "$docker_dir/rancher-compose.yml" \
		-e "$DOCKMASTER_ENV" -s "$APP" --set "VERSION=$VERSION" --upgrade
	echo "Upgraded and held. Confirm or roll back: $base/environments/$DOCKMASTER_ENV"
	echo "  or: dockmaster finish -e $DOCKMASTER_ENV -s $APP | dockmaster rollback -e $DOCKMASTER_ENV -s $APP"
fi
