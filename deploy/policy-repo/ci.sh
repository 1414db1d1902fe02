#!/bin/sh
# Runs what CI and the pre-commit hook run: check, lint (warnings fail too) and test, on
# every policy file in this repository. Needs the `sekisho` binary on PATH (or $SEKISHO).
set -eu
SEKISHO=${SEKISHO:-sekisho}
cd "$(dirname "$0")"
status=0
for file in policy.toml; do
    "$SEKISHO" policy check "$file" || status=1
    "$SEKISHO" policy lint --deny-warnings "$file" || status=1
    "$SEKISHO" policy test "$file" || status=1
done
exit $status
