#!/bin/sh
# Installs, upgrades or removes the Argosy agent on this host.
#
#   curl -fsSL http://CONTROL-PLANE:8080/install.sh | sh -s -- --join 'argosy://…'
#
# The control plane fills in its own URL below when it serves this script.
# Re-running upgrades the binary in place and restarts the agent; the host
# keeps its identity (state directory). `--uninstall` stops and removes it.
set -eu

ARGOSY_URL="${ARGOSY_URL:-__ARGOSY_URL__}"
PREFIX=/usr/local
JOIN=""
STATE_DIR=""
CONFIG_DIR=""
INTERVAL=""
METRICS_LISTEN=""
UNINSTALL=0
PURGE=0
SUPERVISOR=auto

say() { printf 'argosy-install: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

usage() {
	cat >&2 <<USAGE
usage: install.sh [--join JOIN_STRING] [--prefix DIR] [--state-dir DIR] [--config-dir DIR]
                  [--interval 10s] [--metrics-listen ADDR] [--url URL] [--no-systemd]
       install.sh --uninstall [--purge] [--prefix DIR]
USAGE
}

while [ $# -gt 0 ]; do
	case "$1" in
	--join) JOIN="${2:?--join needs a join string}"; shift 2 ;;
	--prefix) PREFIX="${2:?--prefix needs a directory}"; shift 2 ;;
	--state-dir) STATE_DIR="${2:?}"; shift 2 ;;
	--config-dir) CONFIG_DIR="${2:?}"; shift 2 ;;
	--interval) INTERVAL="${2:?}"; shift 2 ;;
	--metrics-listen) METRICS_LISTEN="${2:?}"; shift 2 ;;
	--url) ARGOSY_URL="${2:?}"; shift 2 ;;
	--no-systemd) SUPERVISOR=simple; shift ;;
	--uninstall) UNINSTALL=1; shift ;;
	--purge) PURGE=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage; die "unknown option $1" ;;
	esac
done

case "$PREFIX" in /*) ;; *) PREFIX="$(pwd)/$PREFIX" ;; esac
if [ "$PREFIX" = /usr/local ] || [ "$PREFIX" = /usr ]; then
	: "${CONFIG_DIR:=/etc/argosy}"
	: "${STATE_DIR:=/var/lib/argosy-agent}"
	RUN_DIR=/run/argosy-agent
	LOG_FILE=/var/log/argosy-agent.log
else
	: "${CONFIG_DIR:=$PREFIX/etc/argosy}"
	: "${STATE_DIR:=$PREFIX/var/lib/argosy-agent}"
	RUN_DIR="$PREFIX/var/run/argosy-agent"
	LOG_FILE="$PREFIX/var/log/argosy-agent.log"
fi
BIN="$PREFIX/bin/argosy-agent"
CONFIG="$CONFIG_DIR/agent.toml"
UNIT=/etc/systemd/system/argosy-agent.service
PIDFILE="$RUN_DIR/supervisor.pid"

if [ "$SUPERVISOR" = auto ]; then
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
		SUPERVISOR=systemd
	else
		SUPERVISOR=simple
	fi
fi

# Whether a process runs (a zombie left for an init that does not reap
# orphans counts as stopped).
running() {
	kill -0 "$1" 2>/dev/null || return 1
	state="$(ps -o stat= -p "$1" 2>/dev/null || true)"
	case "$state" in Z*) return 1 ;; esac
	return 0
}

stop_simple() {
	if [ -f "$PIDFILE" ]; then
		pid="$(cat "$PIDFILE")"
		if running "$pid"; then
			kill "$pid" 2>/dev/null || true
			i=0
			while running "$pid" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
			if running "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
		fi
		rm -f "$PIDFILE"
	fi
}

stop_agent() {
	if [ "$SUPERVISOR" = systemd ] && [ -f "$UNIT" ]; then
		systemctl stop argosy-agent.service 2>/dev/null || true
	fi
	stop_simple
}

if [ "$UNINSTALL" = 1 ]; then
	stop_agent
	if [ -f "$UNIT" ] && command -v systemctl >/dev/null 2>&1; then
		systemctl disable argosy-agent.service 2>/dev/null || true
		rm -f "$UNIT"
		systemctl daemon-reload 2>/dev/null || true
	fi
	rm -f "$BIN" "$PREFIX/lib/argosy/supervise.sh" "$CONFIG"
	rmdir "$PREFIX/lib/argosy" "$CONFIG_DIR" 2>/dev/null || true
	if [ "$PURGE" = 1 ]; then
		rm -rf "$STATE_DIR"
		say "removed the agent and its identity ($STATE_DIR)"
	else
		say "removed the agent; its identity stays in $STATE_DIR (--purge removes it)"
	fi
	exit 0
fi

case "$ARGOSY_URL" in
__ARGOSY*) die "no control-plane URL: fetch this script from the control plane's /install.sh or pass --url" ;;
esac

os="$(uname -s | tr '[:upper:]' '[:lower:]')"
arch="$(uname -m)"
case "$arch" in amd64) arch=x86_64 ;; arm64) arch=aarch64 ;; esac
platform="$os-$arch"

fetch() {
	if command -v curl >/dev/null 2>&1; then
		curl -fsSL --retry 3 -o "$2" "$1"
	elif command -v wget >/dev/null 2>&1; then
		wget -q -O "$2" "$1"
	else
		die "neither curl nor wget is installed"
	fi
}

sha256_of() {
	if command -v sha256sum >/dev/null 2>&1; then
		sha256sum "$1" | cut -d' ' -f1
	elif command -v shasum >/dev/null 2>&1; then
		shasum -a 256 "$1" | cut -d' ' -f1
	else
		die "neither sha256sum nor shasum is installed, so the download cannot be verified"
	fi
}

if [ -z "$JOIN" ] && [ ! -f "$STATE_DIR/identity.json" ] && [ ! -f "$CONFIG" ]; then
	die "this host is not enrolled yet: pass --join 'argosy://…' (from \`argosy join-token create\`)"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
say "downloading argosy-agent for $platform from $ARGOSY_URL"
fetch "$ARGOSY_URL/downloads/argosy-agent-$platform" "$tmp/argosy-agent" ||
	die "could not download the agent for $platform from $ARGOSY_URL (is the URL right, and does the control plane have a binary for $platform?)"
fetch "$ARGOSY_URL/downloads/argosy-agent-$platform.sha256" "$tmp/argosy-agent.sha256" ||
	die "could not download the agent's checksum"
want="$(cut -d' ' -f1 <"$tmp/argosy-agent.sha256")"
got="$(sha256_of "$tmp/argosy-agent")"
[ "$want" = "$got" ] || die "checksum mismatch for the downloaded agent (expected $want, got $got): not installing"
chmod 0755 "$tmp/argosy-agent"
"$tmp/argosy-agent" version >/dev/null 2>&1 || die "the downloaded agent does not run on this host ($platform)"

stop_agent
mkdir -p "$PREFIX/bin" "$CONFIG_DIR" "$STATE_DIR"
chmod 0700 "$STATE_DIR"
mv -f "$tmp/argosy-agent" "$BIN"

if [ -n "$JOIN" ] || [ ! -f "$CONFIG" ]; then
	umask 077
	{
		printf '# Written by the Argosy install script.\n'
		printf 'state_dir = "%s"\n' "$STATE_DIR"
		[ -n "$JOIN" ] && printf 'join = "%s"\n' "$JOIN"
		[ -n "$INTERVAL" ] && printf 'interval = "%s"\n' "$INTERVAL"
		[ -n "$METRICS_LISTEN" ] && printf 'metrics_listen = "%s"\n' "$METRICS_LISTEN"
		true
	} >"$CONFIG.tmp"
	chmod 0600 "$CONFIG.tmp"
	mv -f "$CONFIG.tmp" "$CONFIG"
	umask 022
fi

if [ "$SUPERVISOR" = systemd ]; then
	cat >"$UNIT" <<UNITFILE
[Unit]
Description=Argosy agent
After=network-online.target docker.service
Wants=network-online.target

[Service]
ExecStart=$BIN run --config $CONFIG
Restart=always
RestartSec=2
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
UNITFILE
	systemctl daemon-reload
	systemctl enable argosy-agent.service >/dev/null 2>&1
	systemctl restart argosy-agent.service
	say "installed $BIN and started it with systemd (journalctl -u argosy-agent)"
else
	mkdir -p "$PREFIX/lib/argosy" "$RUN_DIR" "$(dirname "$LOG_FILE")"
	cat >"$PREFIX/lib/argosy/supervise.sh" <<SUPERVISE
#!/bin/sh
# Restarts the agent whenever it exits (used where systemd does not run).
child=""
trap 'if [ -n "\$child" ]; then kill "\$child" 2>/dev/null; wait "\$child" 2>/dev/null; fi; exit 0' TERM INT
while :; do
	"$BIN" run --config "$CONFIG" >>"$LOG_FILE" 2>&1 &
	child=\$!
	wait "\$child" || true
	sleep 2
done
SUPERVISE
	chmod 0755 "$PREFIX/lib/argosy/supervise.sh"
	if command -v setsid >/dev/null 2>&1; then
		setsid "$PREFIX/lib/argosy/supervise.sh" </dev/null >/dev/null 2>&1 &
	else
		nohup "$PREFIX/lib/argosy/supervise.sh" </dev/null >/dev/null 2>&1 &
	fi
	echo $! >"$PIDFILE"
	say "systemd is not running here: started $BIN under a simple supervisor (pid $(cat "$PIDFILE"), log $LOG_FILE)"
fi
say "done: this host will appear in \`argosy hosts list\`"
