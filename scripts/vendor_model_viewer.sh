#!/usr/bin/env bash
# Refresh static/vendor/model-viewer from the npm registry (run by `make vendor`).
# The bundle (dist/model-viewer.min.js) includes three.js, so both licences are kept beside it.
set -euo pipefail
MODEL_VIEWER_VERSION="${MODEL_VIEWER_VERSION:-4.4.0}"
THREE_VERSION="${THREE_VERSION:-0.183.0}"
target="$(cd "$(dirname "$0")/.." && pwd)/static/vendor/model-viewer"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "@google/model-viewer@${MODEL_VIEWER_VERSION}" "three@${THREE_VERSION}" >/dev/null
mkdir mv three
tar xzf "google-model-viewer-${MODEL_VIEWER_VERSION}.tgz" -C mv
tar xzf "three-${THREE_VERSION}.tgz" -C three
mkdir -p "$target"
# The source map is not shipped; drop the comment that points at it (collectstatic's manifest
# storage would otherwise look for the missing file).
sed '/^\/\/# sourceMappingURL=/d' mv/package/dist/model-viewer.min.js > "$target/model-viewer.min.js"
cp mv/package/LICENSE "$target/LICENSE"
cp three/package/LICENSE "$target/LICENSE.three"
printf '@google/model-viewer %s (bundles three.js %s), from the npm registry.\n' \
  "$MODEL_VIEWER_VERSION" "$THREE_VERSION" > "$target/VERSION"
echo "vendored model-viewer ${MODEL_VIEWER_VERSION} into ${target}"
