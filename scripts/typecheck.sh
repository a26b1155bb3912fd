#!/usr/bin/env bash
# ruff, mypy --strict and the import-linter layer contracts over the tree.  mypy
# (and import-linter) cannot follow setuptools' package-dir
# mapping (strategies/ installs as pgonline.strategies), so it checks a temporary
# copy laid out the way the package is installed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=$(cd "$root" && realpath -s "${PYTHON:-$root/.venv/bin/python}")
"$py" -m ruff check "$root"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$root/src/pgonline" "$tmp/pgonline"
rm -rf "$tmp/pgonline/strategies"
cp -r "$root/strategies" "$tmp/pgonline/strategies"
cd "$root" && "$py" -m mypy --config-file pyproject.toml "$tmp/pgonline" | sed "s#$tmp/##g"
# The layer contracts of [tool.importlinter] in pyproject.toml, on the same copy.
cd "$tmp" && PYTHONPATH="$tmp" "$(dirname "$py")/lint-imports" "$root/pyproject.toml"
