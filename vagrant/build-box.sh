#!/bin/bash
# Build the lab's Debian 12 vagrant-libvirt box offline: only the Debian mirror is needed,
# no box download. Usage (root): bash vagrant/build-box.sh [WORKDIR]
#   -> WORKDIR/debian12-ikemgr.box (default WORKDIR: /var/cache/ikemgr-ci/box)
# Needs (host): mmdebstrap grub-pc-bin qemu-utils vagrant (for its insecure public key).
# Uses two loop devices (whole disk + an offset one for the partition: the build host's
# kernel may lack MSDOS partition support), no nbd.
# The box already carries the lab's Debian packages (strongSwan, FreeRADIUS, slapd's
# tools, nftables …): under qemu's software emulation an apt run inside a VM costs minutes.
set -euo pipefail
W=${1:-/var/cache/ikemgr-ci/box}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
BOX=debian12-ikemgr
SIZE=${SIZE:-10G}
PUB=$(ls /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub 2>/dev/null | tail -1)
[ -n "$PUB" ] || { echo "build-box: vagrant's insecure key not found (apt-get install vagrant)" >&2; exit 1; }
LAB_PKGS=strongswan-charon,strongswan-swanctl,strongswan-pki,charon-systemd,libstrongswan-standard-plugins,libstrongswan-extra-plugins,libcharon-extra-plugins,libcharon-extauth-plugins,freeradius,freeradius-utils,freeradius-ldap,ldap-utils,nftables,iptables,conntrack,python3-venv,python3-apt,curl,tcpdump
mkdir -p "$W"; cd "$W"
t0=$(date +%s)
if [ "${SKIP_ROOTFS:-0}" != 1 ]; then rm -rf rootfs
# the lab's packages are unpacked, not started (no init while building); their units are
# enabled or not as Debian ships them, the role decides at provisioning time

# 1. root filesystem (systemd init, stock Debian kernel, ssh, sudo, python3 for Ansible)
mmdebstrap --variant=minbase --components=main \
  --include=systemd-sysv,udev,dbus,kmod,linux-image-amd64,initramfs-tools,openssh-server,sudo,python3,iproute2,iputils-ping,ifupdown,isc-dhcp-client,procps,less,ca-certificates,rsync,$LAB_PKGS \
  --customize-hook='echo debian12 > "$1/etc/hostname"' \
  bookworm rootfs "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" \
  "deb ${SECURITY_MIRROR:-http://deb.debian.org/debian-security} bookworm-security main"
fi
t1=$(date +%s); echo "rootfs: $((t1-t0)) s"

# 2. configuration for Vagrant
R=rootfs
printf '127.0.0.1 localhost\n127.0.1.1 debian12\n' > $R/etc/hosts
echo '/dev/vda1 / ext4 errors=remount-ro 0 1' > $R/etc/fstab
cat > $R/etc/network/interfaces <<'EOF'
auto lo
iface lo inet loopback
# first NIC (vagrant-libvirt management network) via DHCP; vagrant configures the others
allow-hotplug eth0
iface eth0 inet dhcp
EOF
chroot $R id vagrant >/dev/null 2>&1 || chroot $R useradd -m -s /bin/bash -U vagrant
echo 'vagrant:vagrant' | chroot $R chpasswd
echo 'root:vagrant' | chroot $R chpasswd
install -d -m700 -o 1000 -g 1000 $R/home/vagrant/.ssh
install -m600 -o 1000 -g 1000 "$PUB" $R/home/vagrant/.ssh/authorized_keys
echo 'vagrant ALL=(ALL) NOPASSWD:ALL' > $R/etc/sudoers.d/vagrant; chmod 440 $R/etc/sudoers.d/vagrant
echo 'UseDNS no' > $R/etc/ssh/sshd_config.d/vagrant.conf
rm -f $R/etc/ssh/ssh_host_*            # regenerated at first boot (see unit below)
cat > $R/etc/systemd/system/ssh-hostkeys.service <<'EOF'
[Unit]
Description=Generate SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
[Install]
WantedBy=multi-user.target
EOF
chroot $R systemctl enable ssh-hostkeys.service ssh.service
rm -f $R/etc/machine-id; touch $R/etc/machine-id
chroot $R apt-get clean; rm -rf $R/var/lib/apt/lists/*

# 3. partitioned raw disk: msdos label, one ext4 partition, GRUB (BIOS) in the MBR
rm -f disk.raw; truncate -s "$SIZE" disk.raw
echo 'start=2048, type=83, bootable' | sfdisk -q disk.raw
# host kernel has no MSDOS partition support (no loop0p1): map the partition with an offset loop
LOOP=$(losetup -f --show disk.raw)
LOOPP=$(losetup -f --show -o $((2048*512)) disk.raw)
trap 'umount -R mnt 2>/dev/null || true; losetup -d $LOOPP $LOOP 2>/dev/null || true' EXIT
mkfs.ext4 -q -L root -d $R $LOOPP
mkdir -p mnt; mount $LOOPP mnt
KVER=$(ls mnt/boot/ | sed -n 's/^vmlinuz-//p' | sort -V | tail -1)
grub-install --target=i386-pc --boot-directory=mnt/boot --modules='part_msdos ext2 search search_label biosdisk' $LOOP
cat > mnt/boot/grub/grub.cfg <<EOF
set timeout=0
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
menuentry 'Debian 12' {
  insmod part_msdos
  insmod ext2
  search --no-floppy --label root --set=root
  linux /boot/vmlinuz-$KVER root=/dev/vda1 ro console=tty0 console=ttyS0,115200n8 net.ifnames=0 biosdevname=0
  initrd /boot/initrd.img-$KVER
}
EOF
umount mnt; losetup -d $LOOPP $LOOP; trap - EXIT
t2=$(date +%s); echo "disk: $((t2-t1)) s"

# 4. vagrant-libvirt box: box.img (qcow2) + metadata.json + Vagrantfile
rm -rf box; mkdir box
qemu-img convert -c -O qcow2 disk.raw box/box.img
rm -f disk.raw
VS=$(( $(qemu-img info --output=json box/box.img | python3 -c 'import json,sys;print(json.load(sys.stdin)["virtual-size"])') / 1073741824 ))
echo "{\"provider\":\"libvirt\",\"format\":\"qcow2\",\"virtual_size\":$VS}" > box/metadata.json
cat > box/Vagrantfile <<'EOF'
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.driver = "qemu"   # TCG: stock kernels do not boot on this host's kvm (PVM)
  end
end
EOF
tar -C box -czf $BOX.box metadata.json Vagrantfile box.img
t3=$(date +%s); echo "box: $((t3-t2)) s; total $((t3-t0)) s"
ls -la $BOX.box box/box.img
