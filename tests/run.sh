#!/usr/bin/env bash
# Install what the test suite needs, then run it.
#
# The Python dependencies come from the dev extra. The real Redis tests need the
# redis-server program; on Debian or Ubuntu it is installed here when missing (as root,
# or through sudo). The tests start and stop their own servers on 127.0.0.1, so no service
# has to be running beforehand. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[dev]'

if ! command -v redis-server >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        if [ "$(id -u)" -eq 0 ]; then sudo_cmd=(); else sudo_cmd=(sudo); fi
        "${sudo_cmd[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq redis-server >/dev/null
    else
        echo "redis-server not found: install Redis 6.2 or newer; the Redis tests will be skipped" >&2
    fi
fi

python3 -m pytest "$@"
