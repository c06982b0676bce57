#!/usr/bin/env bash
# The Linux guest's figure for `cargo xtask bench net`'s `tcp_rr` job, which the Linux baseline
# (bench/linux-baseline in the shared tree) does not measure: iperf3 has no request/response mode.
#
# It boots the baseline's Debian guest (/tmp/linux-baseline, built by `run.sh build` there) in
# its shell mode on the same QEMU device configuration as `bench net`, brings eth0 up at
# 10.0.2.15/24, and runs fio's network engine as a ping-pong client: `--rw=write --bs=1
# --pingpong=1 --nodelay=1` writes one byte and waits for it to come back, 2 s of warm-up and
# 10 s measured, so fio's IOPS are round trips per second. The host side is the very server
# Vireo's job talks to (`xtask peer-serve tcp_rr`: each byte answered with itself, TCP_NODELAY).
#
# usage: bench/linux-tcp-rr.sh [tap|user] [RUNS]     (root; from the repository root)
# prints one `linux-tcp-rr:` line per run and the median.
set -euo pipefail

backend=${1:-tap}
runs=${2:-3}
lb=${LB_OUT:-/tmp/linux-baseline}
xtask=target/debug/xtask
[ -f "$lb/vmlinuz" ] && [ -f "$lb/initramfs.img" ] || {
  echo "no Linux guest in $lb: run ../shared/bench/linux-baseline/run.sh build first" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (a network namespace and a tap)" >&2; exit 1; }
cargo build -q -p xtask

ns=vireo-linux-rr-$$
tap=lrrtap0
cleanup() { ip netns del "$ns" 2>/dev/null || true; }
trap cleanup EXIT

qemu=(qemu-system-x86_64 -nodefaults -no-user-config -machine q35 -accel tcg -cpu max -smp 1 -m 1G
      -display none -serial stdio -monitor none -no-reboot
      -device isa-debug-exit,iobase=0xf4,iosize=0x04
      -kernel "$lb/vmlinuz" -initrd "$lb/initramfs.img"
      -append 'console=ttyS0 quiet panic=-1 lb.mode=shell')
device=(-device virtio-net-pci,netdev=n0,disable-legacy=on,mac=52:54:00:12:34:56)
case $backend in
  tap)
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "$ns" tuntap add dev $tap mode tap
    ip -n "$ns" addr add 10.0.2.1/24 dev $tap
    ip -n "$ns" link set $tap up
    inside=(ip netns exec "$ns")
    peer_ip=10.0.2.1; bind=10.0.2.1
    netdev=(-netdev tap,id=n0,ifname=$tap,script=no,downscript=no) ;;
  user)
    inside=()
    peer_ip=10.0.2.2; bind=127.0.0.1
    netdev=(-netdev user,id=n0,net=10.0.2.0/24) ;;
  *) echo "backend: tap or user" >&2; exit 2 ;;
esac

results=()
for run in $(seq 1 "$runs"); do
  out=$(mktemp)
  # The peer serves one connection and ends after its lifetime (72 s) whatever happens.
  "${inside[@]}" "$xtask" peer-serve tcp_rr $bind 2 10 72 >"$out" 2>&1 &
  peer=$!
  for _ in $(seq 50); do grep -q '^peer-port:' "$out" && break; sleep 0.1; done
  port=$(sed -n 's/^peer-port: //p' "$out")
  [ -n "$port" ] || { echo "the peer did not start: $(cat "$out")" >&2; exit 1; }
  # Typed into the guest's shell once it is up (the first line wakes the console).
  script=$(cat <<CMDS

ip link set lo up; ip addr add 10.0.2.15/24 dev eth0; ip link set eth0 up; sleep 1
fio --name=rr --ioengine=net --hostname=$peer_ip --port=$port --protocol=tcp --rw=write --bs=1 --size=1G --pingpong=1 --nodelay=1 --time_based=1 --runtime=10 --ramp_time=2 --eta=never --output-format=json --output=/tmp/rr.json; echo "@@RR \$(grep '\"iops\" :' /tmp/rr.json | sed -n 2p | tr -d ' ,')"
printf '\\020' | dd of=/dev/port bs=1 seek=244 count=1
CMDS
)
  serial=$( (sleep 10; printf '%s\n' "$script"; sleep 32) |
            timeout 75 "${inside[@]}" "${qemu[@]}" "${netdev[@]}" "${device[@]}" 2>&1 || true)
  wait $peer || true
  [ -n "${RR_DEBUG:-}" ] && printf "%s\n" "$serial" >"$RR_DEBUG"
  line=$(printf '%s\n' "$serial" | tr '\r' '\n' | grep '^@@RR ' | tail -1 || true)
  # The JSON's second "iops" is the write side's (read, write, trim).
  iops=$(echo "$line" | sed -n 's/^@@RR "iops":\([0-9]*\).*/\1/p')
  echo "linux-tcp-rr: backend=$backend run=$run round_trips_per_s=${iops:-none} peer: $(grep '^peer-result' "$out" || echo none)"
  rm -f "$out"
  [ -n "$iops" ] && [ "$iops" != 0 ] && results+=("$iops")
done
[ ${#results[@]} -gt 0 ] || { echo "no run gave a figure" >&2; exit 1; }
sorted=($(printf '%s\n' "${results[@]}" | sort -n))
echo "linux-tcp-rr: backend=$backend median=${sorted[$(( ${#sorted[@]} / 2 ))]} of ${#sorted[@]} runs [${sorted[0]}-${sorted[-1]}] round trips/s"
