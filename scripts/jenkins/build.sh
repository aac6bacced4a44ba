#!/bin/sh
# build.sh IMAGE VERSION [CONTEXT]
# Builds IMAGE:VERSION from CONTEXT (default .), pushes it and writes
# dockmaster-build.env with IMAGE=... and IMAGE_DIGEST=sha256:..., the
# parameters report.sh sends so that dockmaster deploys exactly that
# digest.
set -eu
image=${1:?usage: build.sh IMAGE VERSION [CONTEXT]}
version=${2:?usage: build.sh IMAGE VERSION [CONTEXT]}
context=${3:-.}
docker=${DOCKER_BIN:-docker}

"$docker" build -t "$image:$version" "$context"
"$docker" push "$image:$version"
repo_digest=$("$docker" image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$image:$version" | grep -F "$image@" | head -n 1)
digest=${repo_digest#*@}
case $digest in
sha256:*) ;;
*) echo "build.sh: no registry digest for $image:$version after push" >&2; exit 1 ;;
esac
printf 'IMAGE=%s:%s\nIMAGE_DIGEST=%s\n' "$image" "$version" "$digest" > dockmaster-build.env
cat dockmaster-build.env
