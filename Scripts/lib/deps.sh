# Shared by the scripts: install the Debian packages the build and the tests need, only those missing.
# shellcheck shell=bash
TIMELINE_APT_PACKAGES=(libssl-dev libsqlite3-dev pkg-config openssl sqlite3 sslscan jq zlib1g-dev chromium fonts-dejavu-core fonts-wqy-microhei postgresql systemd curl)

ensure_packages() {
    local missing=()
    for pkg in "${TIMELINE_APT_PACKAGES[@]}" "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        echo "installing: ${missing[*]}" >&2
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo=sudo
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if ! command -v swift >/dev/null; then
        if [ -x /opt/swift/usr/bin/swift ]; then export PATH=/opt/swift/usr/bin:$PATH
        else echo "swift is not installed (expected Swift 6.3 at /opt/swift)" >&2; exit 1; fi
    fi
}
