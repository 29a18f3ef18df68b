//! One line per packet, in `tcpdump -n`'s words (UTC times): enough to
//! follow a DUT's traffic by eye; write pcap (`-w`) for anything deeper.
use std::{fmt::Write as _, net::Ipv4Addr, time::Duration};

/// The line for a packet captured at `ts` (since the Unix epoch).
#[must_use]
pub fn line(ts: Duration, frame: &[u8]) -> String {
    let secs = ts.as_secs() % 86_400;
    let mut out = format!(
        "{:02}:{:02}:{:02}.{:06} ",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ts.subsec_micros()
    );
    out.push_str(&describe(frame));
    out
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn ipv4(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    let o: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(o))
}

fn describe(frame: &[u8]) -> String {
    let Some(mut ethertype) = be16(frame, 12) else {
        return format!("truncated frame, length {}", frame.len());
    };
    let mut at = 14;
    let mut vlan = String::new();
    if ethertype == 0x8100 {
        let tag = be16(frame, 14).unwrap_or(0) & 0x0fff;
        let _ = write!(vlan, "vlan {tag}, ");
        ethertype = be16(frame, 16).unwrap_or(0);
        at = 18;
    }
    let body = frame.get(at..).unwrap_or(&[]);
    let text = match ethertype {
        0x0800 => ip(body),
        0x0806 => arp(body),
        0x86dd => format!("IP6, length {}", body.len()),
        other => format!("ethertype 0x{other:04x}, length {}", frame.len()),
    };
    vlan + &text
}

fn arp(b: &[u8]) -> String {
    let (Some(op), Some(sender), Some(target)) = (be16(b, 6), ipv4(b, 14), ipv4(b, 24)) else {
        return "ARP, truncated".to_owned();
    };
    match op {
        1 => format!(
            "ARP, Request who-has {target} tell {sender}, length {}",
            b.len()
        ),
        2 => format!(
            "ARP, Reply {sender} is-at {}, length {}",
            mac(b.get(8..14)),
            b.len()
        ),
        _ => format!("ARP, op {op}, length {}", b.len()),
    }
}

fn mac(b: Option<&[u8]>) -> String {
    b.map_or_else(String::new, |b| {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    })
}

fn ip(b: &[u8]) -> String {
    let (Some(&vihl), Some(src), Some(dst), Some(&proto)) =
        (b.first(), ipv4(b, 12), ipv4(b, 16), b.get(9))
    else {
        return "IP, truncated".to_owned();
    };
    let ihl = usize::from(vihl & 0x0f) * 4;
    let total = usize::from(be16(b, 2).unwrap_or(0));
    let l4 = b.get(ihl..total.clamp(ihl, b.len())).unwrap_or(&[]);
    let payload = total.saturating_sub(ihl);
    match proto {
        1 => {
            let (ty, code) = (l4.first().copied(), l4.get(1).copied());
            let echo = |what: &str| {
                format!(
                    "ICMP echo {what}, id {}, seq {}, length {payload}",
                    be16(l4, 4).unwrap_or(0),
                    be16(l4, 6).unwrap_or(0)
                )
            };
            let what = match ty {
                Some(8) => echo("request"),
                Some(0) => echo("reply"),
                Some(t) => format!("ICMP type {t} code {}, length {payload}", code.unwrap_or(0)),
                None => "ICMP, truncated".to_owned(),
            };
            format!("IP {src} > {dst}: {what}")
        }
        6 | 17 => {
            let (sp, dp) = (be16(l4, 0).unwrap_or(0), be16(l4, 2).unwrap_or(0));
            if proto == 17 {
                format!(
                    "IP {src}.{sp} > {dst}.{dp}: UDP, length {}",
                    payload.saturating_sub(8)
                )
            } else {
                let flags = l4.get(13).copied().unwrap_or(0);
                let names: String = [
                    (0x02, 'S'),
                    (0x01, 'F'),
                    (0x04, 'R'),
                    (0x08, 'P'),
                    (0x10, '.'),
                ]
                .iter()
                .filter(|(bit, _)| flags & bit != 0)
                .map(|&(_, c)| c)
                .collect();
                let doff = usize::from(l4.get(12).copied().unwrap_or(0) >> 4) * 4;
                format!(
                    "IP {src}.{sp} > {dst}.{dp}: Flags [{names}], length {}",
                    payload.saturating_sub(doff)
                )
            }
        }
        p => format!("IP {src} > {dst}: ip-proto-{p}, length {payload}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echo_request_reads_like_tcpdump() {
        let mut f = vec![0_u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        // IPv4, 20-byte header, total 28, ICMP, 192.168.100.50 > 10.0.0.9.
        f.extend_from_slice(&[0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0]);
        f.extend_from_slice(&[192, 168, 100, 50, 10, 0, 0, 9]);
        f.extend_from_slice(&[8, 0, 0, 0, 0, 7, 0, 3]);
        assert_eq!(
            line(Duration::new(3600 + 61, 5000), &f),
            "01:01:01.000005 IP 192.168.100.50 > 10.0.0.9: ICMP echo request, id 7, seq 3, length 8"
        );
        assert_eq!(describe(&f[..10]), "truncated frame, length 10");
        assert_eq!(describe(&f[..20]), "IP, truncated");
    }
}
