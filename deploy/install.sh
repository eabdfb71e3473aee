#!/usr/bin/env bash
# Install edgewatch on a gateway as a systemd service, or remove it. Safe to run again: an
# existing agent.toml is kept, the venv is upgraded in place, the unit is replaced.
#
#   sudo deploy/install.sh                      install from this checkout, enable the unit
#   sudo deploy/install.sh --start              ... and (re)start it
#   sudo deploy/install.sh --source 'edgewatch==0.1.0'   install from the package index
#   sudo deploy/install.sh --uninstall [--purge]          remove it (--purge: config and state too)
#   deploy/install.sh --root /tmp/image         into a file-system tree, e.g. an image being built
#
# What goes where:
#   /opt/edgewatch/                  a virtualenv with the edge install (no scikit-learn, no TensorFlow)
#   /etc/edgewatch/agent.toml        the config, from deploy/agent.example.toml on first install
#   /etc/credstore/                  secrets for LoadCredential= (MQTT password, client key)
#   /etc/systemd/system/edgewatch.service
#   /var/lib/edgewatch, /var/cache/edgewatch   made by systemd for the service's dynamic user
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
root=""
source_spec="$here"
action=install
purge=0
start=0
python=${PYTHON:-python3}

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

die() {
    echo "install.sh: $*" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
    --root) root=${2:?--root needs a directory}; shift 2 ;;
    --source) source_spec=${2:?--source needs a path or a requirement}; shift 2 ;;
    --uninstall) action=uninstall; shift ;;
    --purge) purge=1; shift ;;
    --start) start=1; shift ;;
    -h | --help) usage 0 ;;
    *) echo "install.sh: unknown option $1" >&2; usage 2 ;;
    esac
done

if [ -n "$root" ]; then
    [ -d "$root" ] || die "--root $root: no such directory"
    root=$(cd "$root" && pwd)
    [ "$start" = 0 ] || die "--start starts the service of this machine; it does not go with --root"
elif [ "$(id -u)" != 0 ]; then
    die "run as root (or give --root DIR to install into a file-system tree)"
fi

venv="$root/opt/edgewatch"
config="$root/etc/edgewatch"
credstore="$root/etc/credstore"
unit_dir="$root/etc/systemd/system"
unit="$unit_dir/edgewatch.service"

# systemctl on this machine's running manager, or on the files of --root.
live() { [ -z "$root" ] && [ -d /run/systemd/system ]; }
systemctl_() {
    if [ -n "$root" ]; then systemctl --root="$root" "$@"; else systemctl "$@"; fi
}

do_install() {
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "$python is older than 3.11; edgewatch needs 3.11 or later"
    "$python" -m venv --help >/dev/null 2>&1 || die "$python has no venv module: apt install python3-venv"

    if [ ! -x "$venv/bin/python" ]; then
        echo "creating the virtualenv $venv"
        mkdir -p "$(dirname "$venv")"
        "$python" -m venv "$venv"
    fi
    echo "installing edgewatch from $source_spec"
    # pip builds a source tree in place, and setuptools would pack whatever an older build left
    # in build/ (modules since removed or moved) into the new install.
    if [ "$source_spec" = "$here" ]; then rm -rf "$here/build"; fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$source_spec"
    # edgewatch warmup compiles the native kernels at the first start; without them the agent
    # runs Numba's JIT kernels, which keep about 110 MB more in memory.
    missing=$("$venv/bin/python" -c 'from edgewatch.kernels.native import missing_tools; print(missing_tools() or "")')
    if [ -n "$missing" ]; then
        echo "warning: $missing: the agent will run the JIT kernels, about 110 MB larger;" \
            "apt install gcc g++ python3-dev" >&2
    fi

    mkdir -p "$config"
    if [ -e "$config/agent.toml" ]; then
        echo "keeping $config/agent.toml"
    else
        install -m 0644 "$here/deploy/agent.example.toml" "$config/agent.toml"
        echo "wrote $config/agent.toml: edit it, then check it with edgewatch check-config"
    fi
    mkdir -p "$credstore"
    chmod 0700 "$credstore"

    mkdir -p "$unit_dir"
    install -m 0644 "$here/systemd/edgewatch.service" "$unit"
    if live; then
        systemctl daemon-reload
    fi
    systemctl_ enable edgewatch.service
    if [ "$start" = 1 ]; then
        systemctl restart edgewatch.service
        echo "started: journalctl -u edgewatch -f"
    fi
    echo "installed $("$venv/bin/edgewatch" --version) in $venv"
}

do_uninstall() {
    if [ -e "$unit" ]; then
        if live; then
            systemctl disable --now edgewatch.service
        else
            systemctl_ disable edgewatch.service
        fi
        rm -f "$unit"
        if live; then
            systemctl daemon-reload
        fi
    fi
    rm -rf "$venv"
    if [ "$purge" = 1 ]; then
        rm -rf "$config" "$root/var/lib/edgewatch" "$root/var/lib/private/edgewatch" \
            "$root/var/cache/edgewatch" "$root/var/cache/private/edgewatch"
        echo "removed edgewatch, its config and its state"
    else
        echo "removed edgewatch; kept $config and $root/var/lib/edgewatch (--purge removes them)"
    fi
}

"do_$action"
