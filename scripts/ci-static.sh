#!/usr/bin/env bash
# The cheap, always-on checks of the deployment files (seconds, no VM, no container):
#   ansible-lint --profile production (ansible/.ansible-lint), the playbook's syntax check,
#   the role's real-systemd test script and every vagrant/ script parse (bash -n),
#   `ruby -c vagrant/Vagrantfile`, and `vagrant validate` (with the libvirt provider plugin).
# Tools: ansible + ansible-lint in a venv under $IKEMGR_CI_CACHE (created on first use;
# the PyPI "ansible" bundle carries the collections, Galaxy is not needed).
# Usage: bash scripts/ci-static.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
CACHE=${IKEMGR_CI_CACHE:-/var/cache/ikemgr-ci}
TOOLS=${IKEMGR_TOOLS_VENV:-$CACHE/tools}
t0=$(date +%s)
step() { echo "ci-static: $*"; }

# vagrant-libvirt is the Vagrantfile's provider: without a provider plugin `vagrant validate`
# stops at "No usable default provider" before it reads the file
if ! command -v ruby >/dev/null || ! command -v vagrant >/dev/null \
   || ! dpkg-query -W -f='${Status}' vagrant-libvirt 2>/dev/null | grep -q "ok installed"; then
  step "installing ruby, vagrant and vagrant-libvirt (Debian packages) for the Vagrantfile checks"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ruby vagrant vagrant-libvirt >/dev/null \
    || { apt-get update -q >/dev/null
         DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ruby vagrant vagrant-libvirt >/dev/null; }
fi
if [ ! -x "$TOOLS/bin/ansible-lint" ] || [ ! -x "$TOOLS/bin/ansible-playbook" ]; then
  step "creating the tools venv $TOOLS"
  mkdir -p "$(dirname "$TOOLS")"; python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install -q ansible ansible-lint
fi
export PATH="$TOOLS/bin:$PATH" ANSIBLE_HOME="${TMPDIR:-/tmp}/ikemgr-ci-static-ansible" ANSIBLE_NOCOLOR=1

step "ansible-lint --profile production"
(cd ansible && ansible-lint --offline --profile production -q)

step "ansible-playbook --syntax-check"
(cd ansible && ANSIBLE_CONFIG=ansible.cfg ansible-playbook -i inventory.example.ini --syntax-check site.yml >/dev/null)

step "bash -n on the deployment scripts"
for f in scripts/role-systemd.sh scripts/vagrant-smoke.sh vagrant/*.sh vagrant/provision/*.sh; do
  [ -e "$f" ] || continue
  bash -n "$f"
done

if command -v ruby >/dev/null; then
  step "ruby -c vagrant/Vagrantfile"
  ruby -c vagrant/Vagrantfile >/dev/null
else
  step "ruby not installed: Vagrantfile syntax not checked"
fi

if command -v vagrant >/dev/null; then
  step "vagrant validate"
  # no box and no libvirtd needed; VAGRANT_HOME keeps it away from ~/.vagrant.d
  (cd vagrant && VAGRANT_HOME="${TMPDIR:-/tmp}/ikemgr-ci-static-vagrant" vagrant validate >/dev/null)
else
  step "vagrant not installed: vagrant validate skipped"
fi
step "ok in $(( $(date +%s) - t0 )) s ($REPO)"
