#!/usr/bin/env bash
# Builds connector.wasm, a component for the world
# sluice:connector/records-connector@0.3.0, from connector.js with
# componentize-js (pinned, with jco, in package.json and package-lock.json).
#
#   components/examples/js-hello/build.sh
#   npm run wit        # the component's imports and exports, through jco
#
# package.json also pins @bytecodealliance/preview2-shim 0.25.0:
# componentize-js 0.23.0 runs on it without declaring it, and needs the
# 0.25 line, whose Node filesystem lets it read the WIT and the source (the
# 0.26 line grants no directory by default, which is also why this calls
# componentize-js rather than `jco componentize`).
#
# The component embeds the StarlingMonkey JS engine. `--disable http
# fetch-event` leaves out `fetch` and its wasi:http imports, which Sluice's
# host does not provide; what remains imports WASI 0.2's cli, clocks,
# filesystem, io and random, and the sluice:connector interfaces.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
wit="$here/../../../wit"
world="sluice:connector/records-connector@0.3.0"

cd "$here"
if [ ! -d node_modules ]; then
    npm ci --no-audit --no-fund
fi
node_modules/.bin/componentize-js connector.js \
    --wit "$wit" \
    --world-name "$world" \
    --disable http fetch-event \
    -o connector.wasm
echo "built $here/connector.wasm"
