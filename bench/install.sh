#!/usr/bin/env bash
# Sourced by the bench scripts: `install_missing cmd:package ...` apt-installs the packages whose
# command is missing, without letting Debian start any server it installs.
install_missing() {
    local need=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || need+=("${pair#*:}")
    done
    [ ${#need[@]} -gt 0 ] || return 0
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
    rm -f /usr/sbin/policy-rc.d
}
