#!/bin/sh
# report.sh STATUS [NAME=VALUE ...]
# Tells dockmaster how this Jenkins build ended, through the generic build
# hook (webhooks/GENERIC.md). NAME=VALUE pairs become build parameters
# (the build job sends IMAGE and IMAGE_DIGEST). Needs DOCKMASTER_URL and
# DOCKMASTER_HOOK_TOKEN (from withCredentials), and Jenkins' JOB_NAME and
# BUILD_NUMBER.
set -eu
status=${1:?usage: report.sh STATUS [NAME=VALUE ...]}
shift
: "${DOCKMASTER_URL:?DOCKMASTER_URL is not set}"
: "${DOCKMASTER_HOOK_TOKEN:?DOCKMASTER_HOOK_TOKEN is not set (bind it with withCredentials)}"
: "${JOB_NAME:?JOB_NAME is not set (run from Jenkins or set it)}"
: "${BUILD_NUMBER:?BUILD_NUMBER is not set}"

# json_escape VALUE: the JSON string body of VALUE.
json_escape() {
	printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/	/\\t/g' | awk 'BEGIN { ORS = "" } NR > 1 { print "\\n" } { print }'
}

params=""
for kv in "$@"; do
	case $kv in
	*=*) ;;
	*) echo "report.sh: parameter $kv: want NAME=VALUE" >&2; exit 2 ;;
	esac
	params="$params${params:+,}\"$(json_escape "${kv%%=*}")\":\"$(json_escape "${kv#*=}")\""
done
scm=""
if [ -n "${GIT_COMMIT:-}" ]; then
	scm=",\"scm\":{\"url\":\"$(json_escape "${GIT_URL:-}")\",\"branch\":\"$(json_escape "${GIT_BRANCH:-}")\",\"commit\":\"$(json_escape "$GIT_COMMIT")\"}"
fi
url=""
if [ -n "${BUILD_URL:-}" ]; then
	url=",\"url\":\"$(json_escape "$BUILD_URL")\""
fi
body="{\"job\":\"$(json_escape "$JOB_NAME")\",\"number\":$BUILD_NUMBER,\"phase\":\"FINALIZED\",\"status\":\"$(json_escape "$status")\"$url$scm,\"parameters\":{$params}}"

# The token reaches curl as a config on stdin, not in argv (argv shows in
# ps and in Jenkins' process list).
printf 'header = "X-Dockmaster-Token: %s"\n' "$DOCKMASTER_HOOK_TOKEN" |
	curl -fsS -K - -H "Content-Type: application/json" --data "$body" "${DOCKMASTER_URL%/}/webhooks/generic"
echo
