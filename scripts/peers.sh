# Installs the peers the tests talk to, when missing. Sourced by scripts/test.
# Each peer is a real program started by the tests on 127.0.0.1 with ephemeral ports.

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "missing $*; install it with: sudo apt-get install -y $*" >&2
    return 1
  fi
  if [ -z "${GITSTATE_APT_UPDATED:-}" ]; then
    apt-get update -qq >/dev/null
    export GITSTATE_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_peers() {
  # git itself, `git daemon` (git://) and `git http-backend` (smart HTTP).
  if ! command -v git >/dev/null; then apt_install git; fi
  local core
  core=$(git --exec-path)
  if [ ! -x "$core/git-daemon" ] || [ ! -x "$core/git-http-backend" ]; then
    apt_install git
  fi
  [ -x "$core/git-daemon" ] || { echo "git daemon is missing from $core" >&2; return 1; }
  [ -x "$core/git-http-backend" ] || { echo "git http-backend is missing from $core" >&2; return 1; }

  # gpg, to make OpenPGP keys and sign commits in the signature tests (SPEC §18).
  if ! command -v gpg >/dev/null; then apt_install gnupg; fi

  # OpenSSH's server and client (ssh-keygen), for ssh:// remotes and SSH signatures.
  if [ ! -x /usr/sbin/sshd ]; then apt_install openssh-server; fi
  if ! command -v ssh-keygen >/dev/null || ! command -v ssh >/dev/null; then apt_install openssh-client; fi

  # moto (the AWS API emulator) and boto3 (to seed it), in the project's .venv.
  if [ ! -x .venv/bin/moto_server ] || ! .venv/bin/python -c 'import boto3, moto' 2>/dev/null; then
    rm -rf .venv
    python3 -m venv .venv || { apt_install python3-venv && python3 -m venv .venv; }
    .venv/bin/pip install -q --disable-pip-version-check 'moto[server]>=5,<6' boto3
  fi

  # promtool (Debian's prometheus), to check and unit-test examples/prometheus.
  if ! command -v promtool >/dev/null; then apt_install prometheus; fi

  # Alertmanager, for the alarm tests (Debian's prometheus-alertmanager).
  if ! command -v prometheus-alertmanager >/dev/null && [ ! -x /usr/bin/prometheus-alertmanager ]; then
    apt_install prometheus-alertmanager
  fi

  # A headless Chromium, for the dashboard tests (Debian's chromium).
  if ! command -v chromium >/dev/null; then apt_install chromium; fi

  # PostgreSQL's server programs (initdb, pg_ctl), for the replica tests; the tests start
  # throw-away servers of their own, never the system's cluster.
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then apt_install postgresql; fi
}
