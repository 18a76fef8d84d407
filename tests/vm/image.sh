#!/usr/bin/env bash
# The Debian 12 guest the VM tests boot (tests/it/vm.rs), built from Debian's packages only
# (../shared/design/vm-rig.md): debootstrap, Debian's kernel, systemd as PID 1, cgroup v2,
# Debian's containerd, runc, CNI plugins, etcd (their services enabled, as installing them
# leaves them), tmux, and qemu-guest-agent as the command channel. No network outside the
# test's own 198.18.0.0/24.
#
#   tests/vm/image.sh OUT_DIR    writes OUT_DIR/{base.qcow2,vmlinuz,initrd.img}
#
# The caller caches OUT_DIR by a hash of this file (its package list is here). Needs root,
# debootstrap, e2fsprogs and qemu-utils. DMUC_VM_MIRROR overrides the Debian mirror; the
# downloaded .debs are kept in target/vm/debs for the next build.
set -euo pipefail
out=$1
mirror=${DMUC_VM_MIRROR:-http://deb.debian.org/debian}
packages=(
  # the host: systemd as PID 1, its kernel, the command channel
  systemd systemd-sysv udev dbus kmod linux-image-amd64 qemu-guest-agent
  iproute2 iputils-ping procps xz-utils curl
  # a Kubernetes node from Debian's packages (../shared/k8s/README.md) and dmuc's needs
  containerd runc containernetworking-plugins etcd-server etcd-client
  iptables conntrack ipset tmux
)
here=$(cd "$(dirname "$0")" && pwd)
cache=$(cd "$here/../.." && pwd)/target/vm/debs
mkdir -p "$out" "$cache"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
include=$(IFS=,; echo "${packages[*]}")
debootstrap --variant=minbase --cache-dir="$cache" --include="$include" bookworm "$root" "$mirror" \
  >"$work/debootstrap.log" 2>&1 || { tail -40 "$work/debootstrap.log"; exit 1; }

echo dmuc-vm >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 dmuc-vm\n' >"$root/etc/hosts"
# The share of the host (the package under test, ../shared/k8s): mounted on first use, so a
# guest without one attached still boots clean.
mkdir -p "$root/mnt/host"
cat >"$root/etc/fstab" <<'FSTAB'
/dev/vda / ext4 rw,errors=remount-ro 0 1
hostshare /mnt/host 9p trans=virtio,version=9p2000.L,msize=262144,x-systemd.automount,nofail 0 0
FSTAB
# The test's network: DHCP from qemu's user network (198.18.0.0/24, restricted), or the
# static address a multi-guest test gives on the kernel command line (ip=): named 99- so that
# systemd-network-generator's 90-IFACE.network wins. Restricted, qemu's DHCP offers no router:
# the default route is written here, as a real host has one (the API server and the kubelet
# take the node's address from it; packets to it go nowhere, restrict=on drops them).
mkdir -p "$root/etc/systemd/network"
cat >"$root/etc/systemd/network/99-dhcp.network" <<'NET'
[Match]
Name=en*
[Network]
DHCP=ipv4
Gateway=198.18.0.2
NET
chroot "$root" systemctl enable systemd-networkd.service >/dev/null 2>&1
# The modules a node needs, at every boot (what docs/operations.md tells a host).
printf 'overlay\nbr_netfilter\n9p\n9pnet_virtio\n' >"$root/etc/modules-load.d/dmuc-vm.conf"
# No root password, no login: the tests speak through the guest agent.
chroot "$root" apt-get clean

cp -L "$root/vmlinuz" "$out/vmlinuz"
cp -L "$root/initrd.img" "$out/initrd.img"
mkfs.ext4 -q -F -L root -d "$root" "$work/root.raw" 4G
qemu-img convert -O qcow2 "$work/root.raw" "$out/base.qcow2.tmp"
mv "$out/base.qcow2.tmp" "$out/base.qcow2"
echo "guest image: $out/base.qcow2"
