#!/usr/bin/env bash
# Installs everything kiln needs on a Debian machine that has only Python 3:
# apt's python3-venv and packer (each only when missing; Debian's Packer 1.6.6 is the floor),
# debootstrap and ssh-keygen for provider=local and the provisioned sandbox, graphviz for doit
# graph, then a .venv in
# this checkout with kiln, Ansible, moto and the test tools.
set -euo pipefail
cd "$(dirname "$0")"

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

packer_ok() {
  command -v packer >/dev/null 2>&1 || return 1
  local v
  v=$(packer version 2>/dev/null | sed -n 's/^Packer v\([0-9.]*\).*/\1/p' | head -n 1)
  [ -n "$v" ] && [ "$(printf '%s\n1.6.6\n' "$v" | sort -V | head -n 1)" = "1.6.6" ]
}

missing=()
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
packer_ok || missing+=(packer)
command -v git >/dev/null 2>&1 || missing+=(git)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
command -v dot >/dev/null 2>&1 || missing+=(graphviz)  # doit graph (svg, png)
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]} with apt-get" >&2
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
echo "bootstrap: ready ($(packer version | head -n 1), $(.venv/bin/python --version))" >&2
