//! Incremental Internet checksum update (RFC 1624, eqn. 3), shared by the
//! programs (IPv4 header, the headers quoted inside ICMP errors) and tested
//! here on the host.
//!
//! The ones'-complement sum does not depend on byte order as long as every
//! word is read the same way (RFC 1071 §2(B)), so callers pass 16- and 32-bit
//! values exactly as they load them from the packet and store the result back
//! the same way: no swapping anywhere.

/// Folds a 32-bit ones'-complement accumulator to 16 bits.
#[inline(always)]
#[must_use]
pub const fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The checksum `check` becomes when one 16-bit word of the covered data
/// changes from `old` to `new`.
#[inline(always)]
#[must_use]
pub const fn replace16(check: u16, old: u16, new: u16) -> u16 {
    !fold(!check as u32 + !old as u32 + new as u32)
}

/// The checksum `check` becomes when one 32-bit field (an IPv4 address) of
/// the covered data changes from `old` to `new`.
#[inline(always)]
#[must_use]
pub const fn replace32(check: u16, old: u32, new: u32) -> u16 {
    let check = replace16(check, old as u16, new as u16);
    replace16(check, (old >> 16) as u16, (new >> 16) as u16)
}

/// As [`replace16`] for a UDP checksum, where 0 means "no checksum": a zero
/// stays zero and a computed zero is sent as 0xffff (RFC 768).
#[inline(always)]
#[must_use]
pub const fn replace16_udp(check: u16, old: u16, new: u16) -> u16 {
    if check == 0 {
        return 0;
    }
    match replace16(check, old, new) {
        0 => 0xffff,
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The full RFC 1071 checksum over big-endian words: the independent oracle.
    fn full(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for chunk in data.chunks(2) {
            let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
        !fold(sum)
    }

    fn header(src: [u8; 4], ttl: u8) -> [u8; 20] {
        let mut h = [
            0x45, 0, 0, 84, 0x12, 0x34, 0x40, 0, ttl, 17, 0, 0, src[0], src[1], src[2], src[3], 10,
            99, 0, 1,
        ];
        let c = full(&h).to_be_bytes();
        h[10] = c[0];
        h[11] = c[1];
        h
    }

    #[test]
    fn updating_an_address_and_the_ttl_matches_a_full_recompute() {
        let before = header([192, 168, 100, 10], 64);
        let after = header([10, 99, 0, 2], 63);
        // Values as the programs load them: native-endian views of the bytes.
        let check = u16::from_ne_bytes([before[10], before[11]]);
        let check = replace32(
            check,
            u32::from_ne_bytes([192, 168, 100, 10]),
            u32::from_ne_bytes([10, 99, 0, 2]),
        );
        let check = replace16(
            check,
            u16::from_ne_bytes([64, 17]),
            u16::from_ne_bytes([63, 17]),
        );
        assert_eq!(check.to_ne_bytes(), [after[10], after[11]]);
    }

    #[test]
    fn every_single_word_change_matches_a_full_recompute() {
        // Exhaustive over one word's old/new values on a sample of headers,
        // including the ones that produce 0x0000 and 0xffff sums.
        for seed in 0u16..64 {
            let mut data = [0u8; 20];
            for (i, b) in data.iter_mut().enumerate() {
                *b = (seed as u8).wrapping_mul(37).wrapping_add(i as u8 * 11);
            }
            data[10] = 0;
            data[11] = 0;
            let c = full(&data).to_be_bytes();
            data[10] = c[0];
            data[11] = c[1];
            for new in (0u16..=0xffff).step_by(257) {
                let old = u16::from_be_bytes([data[4], data[5]]);
                let mut changed = data;
                changed[4..6].copy_from_slice(&new.to_be_bytes());
                changed[10] = 0;
                changed[11] = 0;
                let expected = full(&changed);
                let got = replace16(u16::from_be_bytes(c), old, new);
                // 0x0000 and 0xffff are the same number in ones' complement;
                // a receiver accepts either.
                assert!(
                    got == expected
                        || (got == 0 && expected == 0xffff)
                        || (got == 0xffff && expected == 0),
                    "seed {seed} new {new:#x}: {got:#x} != {expected:#x}"
                );
            }
        }
    }

    #[test]
    fn a_udp_checksum_of_zero_stays_zero_and_never_becomes_zero() {
        assert_eq!(replace16_udp(0, 0x1234, 0x4321), 0);
        // A change that makes the sum come out as 0 is sent as 0xffff.
        let check = 0x1234;
        let old = 0x0000;
        let new = !fold(!check as u32) ^ 0xffff;
        assert_ne!(replace16_udp(check, old, new), 0);
    }
}
