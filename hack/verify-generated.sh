#!/usr/bin/env bash
# Fails when committed generated files (deepcopy, CRD, RBAC, docs/api.md, the chart's CRD, manager
# ClusterRole and values table) differ from what the code generates, or when Go files are not
# gofmt-ed. Generation runs in a scratch copy of the
# tree so the check never touches the work tree.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CONTROLLER_GEN:?set CONTROLLER_GEN to the controller-gen binary (make verify does)}"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# Everything git would commit (tracked or not ignored), so a fresh clone and a work tree agree.
git ls-files -co --exclude-standard -z | xargs -0 -I{} cp --parents {} "$scratch/" 2>/dev/null || true

(
  cd "$scratch"
  "$CONTROLLER_GEN" object:headerFile="hack/boilerplate.go.txt" paths="./api/..."
  "$CONTROLLER_GEN" rbac:roleName=manager-role crd paths="./api/..." paths="./controllers/..." \
    output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
  go run ./hack/apidocs api/v1alpha1 > docs/api.md
  # The chart's copies of the CRD and the manager's rules, and its README values table.
  go run ./hack/chartgen >/dev/null
)

status=0
for path in api/v1alpha1/zz_generated.deepcopy.go config/crd/bases config/rbac/role.yaml docs/api.md \
  charts/ftp-operator/templates/crds charts/ftp-operator/templates/rbac/manager-clusterrole.yaml charts/ftp-operator/README.md; do
  if ! diff -ruN "$path" "$scratch/$path" >/dev/null; then
    echo "verify: $path is out of date; run 'make manifests generate docs chart' and commit the result:" >&2
    diff -ruN "$path" "$scratch/$path" | head -40 >&2 || true
    status=1
  fi
done

unformatted="$(git ls-files -co --exclude-standard '*.go' | xargs gofmt -l)"
if [ -n "$unformatted" ]; then
  echo "verify: these files need gofmt (run 'make fmt'):" >&2
  echo "$unformatted" >&2
  status=1
fi
[ "$status" -eq 0 ] && echo "verify: generated files and formatting are up to date"
exit "$status"
