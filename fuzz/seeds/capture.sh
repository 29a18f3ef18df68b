#!/bin/sh
# Captures what real clients send, as fuzzing seeds: dhclient and udhcpc
# (DISCOVER, REQUEST, RELEASE) and dig (A, AAAA, PTR, ANY, EDNS with DO
# and a cookie, TCP-sized buffer), each in a namespace of its own with
# nothing answering, so only the clients' own packets are recorded.
# Also ntpdig (NTP) and tftp-hpa and curl (TFTP) when installed.
# Writes fuzz/seeds/<target>/<client>-<n>.bin (UDP payloads). Run as root:
#   sh fuzz/seeds/capture.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
ns=fzcap$$
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "/etc/netns/$ns"; }
trap cleanup EXIT INT TERM
ip netns add "$ns"
mkdir -p "/etc/netns/$ns"
echo "nameserver 192.0.2.1" > "/etc/netns/$ns/resolv.conf"
ip -n "$ns" link add c0 type veth peer name c1
ip -n "$ns" link set c0 up
ip -n "$ns" link set c1 up
ip -n "$ns" link set lo up
ip -n "$ns" addr add 192.0.2.2/24 dev c0
# Nothing answers ARP: a static neighbour lets the queries leave.
ip -n "$ns" neigh add 192.0.2.1 lladdr 02:00:00:00:00:01 dev c0
pcap=$(mktemp)
ip netns exec "$ns" tcpdump -i c1 -U -w "$pcap" udp 2>/dev/null &
dump=$!
sleep 1
run() { ip netns exec "$ns" timeout "$@" >/dev/null 2>&1 || true; }
lease=$(mktemp)
run 4 unshare --uts dhclient -1 -d -sf /bin/true -lf "$lease" -pf "$lease.pid" c0
run 4 unshare --uts udhcpc -i c0 -n -q -t 2 -T 1 -s /bin/true -x hostname:board1 -F board1
run 4 unshare --uts udhcpc -i c0 -n -q -t 1 -T 1 -s /bin/true -r 192.0.2.77
for q in "board1.lab A" "controller.lab.local AAAA" "-x 192.168.100.10" "lab ANY" \
         "+dnssec +cookie example.com A" "+bufsize=4096 +nsid big.lab TXT" "+noedns _http._tcp.lab SRV"; do
    # shellcheck disable=SC2086
    run 3 dig +tries=1 +time=1 @192.0.2.1 $q
done
# NTP (ntpdig, as the ntp.rs tests run it) and TFTP (tftp-hpa, curl with
# the blksize and tsize options), when installed.
if command -v ntpdig >/dev/null; then run 3 ntpdig -t 1 192.0.2.1; fi
if command -v tftp >/dev/null; then run 3 tftp -m binary 192.0.2.1 -c get pxelinux.0; fi
if command -v curl >/dev/null; then
    run 3 curl -s --tftp-blksize 1468 tftp://192.0.2.1/boards/board1/boot.scr
fi
sleep 1
kill "$dump"; wait "$dump" 2>/dev/null || true
python3 - "$pcap" "$here" <<'PY'
import struct, sys, os, collections
pcap, out = sys.argv[1], sys.argv[2]
data = open(pcap, 'rb').read()
n = collections.Counter()
off = 24
while off + 16 <= len(data):
    _, _, incl, _ = struct.unpack('<IIII', data[off:off + 16])
    frame = data[off + 16:off + 16 + incl]
    off += 16 + incl
    if len(frame) < 42 or frame[12:14] != b'\x08\x00':
        continue
    ihl = (frame[14] & 15) * 4
    udp = frame[14 + ihl:]
    dport = struct.unpack('>H', udp[2:4])[0]
    target, client = {67: ('dhcp', 'client'), 53: ('dns', 'dig'), 123: ('ntp', 'ntpdig'),
                      69: ('tftp', 'client')}.get(dport, (None, None))
    if not target:
        continue
    payload = udp[8:]
    if target == 'dhcp':
        # udhcpc and dhclient both: tell them by option 60 (udhcpc sends one).
        client = 'udhcpc' if b'udhcp' in payload else 'dhclient'
    if target == 'tftp':
        client = 'curl' if b'blksize' in payload else 'tftp-hpa'
    name = f'{client}-{n[(target, client)]}.bin'
    n[(target, client)] += 1
    os.makedirs(os.path.join(out, target), exist_ok=True)
    open(os.path.join(out, target, name), 'wb').write(payload)
for (t, c), k in sorted(n.items()):
    print(f'{t}: {k} from {c}')
PY
rm -f "$pcap" "$lease" "$lease.pid"
