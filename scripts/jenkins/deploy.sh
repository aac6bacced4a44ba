#!/bin/sh
# deploy.sh: upgrade APP to VERSION in DOCKMASTER_ENV with dockmaster and
# wait until the upgrade is held in upgraded, then print where to confirm.
#
# The compose files are docker/docker-compose.yml and
# docker/rancher-compose.yml in the workspace, else
# $DOCKERFILES_DIR/$APP/ (default /opt/abc/dockerfiles), as the
# rancher-compose deploy jobs looked for them. Needs DOCKMASTER_URL,
# DOCKMASTER_ACCESS_KEY and DOCKMASTER_SECRET_KEY (withCredentials), and
# DOCKMASTER_TICKET (DEPLOY-n; or TICKET) when dockmaster started the job.
# The stack is DOCKMASTER_STACK, default APP in lower case (the stack
# dockmaster's deploys use for the app unless deploys.stacks names one).
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

stack=${DOCKMASTER_STACK:-$(printf '%s' "$APP" | tr '[:upper:]' '[:lower:]')}
ticket=${DOCKMASTER_TICKET:-${TICKET:-}}
base=${DOCKMASTER_URL%/}
echo "Deploying $APP $VERSION to $DOCKMASTER_ENV (stack $stack) from $docker_dir"
# Attached: up returns once the upgrade is held in upgraded (or, for a
# first version, running) and exits non-zero when it failed (rolled back).
"$dm" up -f "$docker_dir/docker-compose.yml" -r "$docker_dir/rancher-compose.yml" \
	-e "$DOCKMASTER_ENV" -s "$stack" --set "VERSION=$VERSION" --upgrade
state=$("$dm" status -e "$DOCKMASTER_ENV" -s "$stack" | sed -n '1s/^stack [^:]*: //p')
if [ "$state" != upgraded ]; then
	echo "Deployed $VERSION ($stack is $state): nothing held to confirm."
	exit 0
fi
if [ -z "$ticket" ]; then
	echo "Upgraded and held. Confirm or roll back: $base/environments/$DOCKMASTER_ENV"
	echo "  or: dockmaster finish -e $DOCKMASTER_ENV -s $stack | dockmaster rollback -e $DOCKMASTER_ENV -s $stack"
	exit 0
fi
# Started by dockmaster for a ticket: dockmaster sees the hold, opens the
# ticket's approval request and signs its links; print them. wait fails
# the job when the ticket ends failed or rolled back instead.
"$dm" wait "$ticket" --for upgraded --timeout "${DOCKMASTER_WAIT:-10m}"
json=$("$dm" ticket show "$ticket" -o json)
finish=$(printf '%s\n' "$json" | sed -n 's/^ *"finish_url": "\([^"]*\)".*/\1/p')
rollback=$(printf '%s\n' "$json" | sed -n 's/^ *"rollback_url": "\([^"]*\)".*/\1/p')
if [ -z "$finish" ]; then
	# Links are shown to approvers only; this key is not one.
	echo "Upgraded and held. Approve or roll back: $base/tickets/$ticket"
	exit 0
fi
echo "Upgraded and held ($ticket). Finish the upgrade: $finish"
echo "Roll back: $rollback"
