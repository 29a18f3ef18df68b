//! IPv4 addresses of an interface, with every attribute `ip addr add` can
//! set, so an address taken away can be put back exactly as it was.
//!
//! An address is more than `address/prefix`: on a point-to-point address the
//! interface's own address (IFA_LOCAL) differs from the peer (IFA_ADDRESS);
//! a broadcast address is there or not; labels, scope, flags such as
//! `noprefixroute`, a metric, a protocol and finite lifetimes are all part
//! of what the host had.
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt as _;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::{
    AddressFamily,
    address::{
        AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressProtocol,
        AddressScope, CacheInfo,
    },
};
use serde::{Deserialize, Serialize};

use super::links::{Netlink, NetlinkError, errno, error};

/// The kernel's "forever" in IFA_CACHEINFO lifetimes.
const FOREVER: u32 = u32::MAX;

/// Flags the kernel sets by itself, so they are neither kept nor sent back:
/// which address of a subnet came first (`secondary`), whether the valid
/// lifetime is infinite (`permanent`) or the preferred one ran out
/// (`deprecated`), and IPv6 duplicate-address-detection states.
const KERNEL_FLAGS: AddressFlags = AddressFlags::Secondary
    .union(AddressFlags::Permanent)
    .union(AddressFlags::Deprecated)
    .union(AddressFlags::Tentative)
    .union(AddressFlags::Dadfailed)
    .union(AddressFlags::Optimistic);

/// One IPv4 address of an interface, as `ip addr add` would set it again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv4Address {
    /// IFA_LOCAL: the interface's own address.
    pub local: Ipv4Addr,
    /// IFA_ADDRESS when it differs from `local`: the far end of a
    /// point-to-point address (`ip addr add LOCAL peer PEER/PREFIX`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<Ipv4Addr>,
    pub prefix_len: u8,
    /// IFA_BROADCAST; absent when the address had none (`ip addr add`
    /// without `brd` sets none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast: Option<Ipv4Addr>,
    /// IFA_LABEL (`eth0:1`); the kernel uses the interface name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The rtnetlink scope number (0 global, 200 site, 253 link, 254 host).
    #[serde(default)]
    pub scope: u8,
    /// IFA_F_* bits the user chose (`noprefixroute`, `autojoin`, `home`...),
    /// without [`KERNEL_FLAGS`].
    #[serde(default)]
    pub flags: u32,
    /// IFA_RT_PRIORITY: the metric of the prefix route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
    /// IFA_PROTO: who added the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u8>,
    /// When the valid lifetime ends, in CLOCK_MONOTONIC seconds; `None`:
    /// forever. A deadline rather than the seconds left because the kernel
    /// keeps counting down while the address is away; CLOCK_MONOTONIC
    /// because, like the kernel's jiffies, it stops during suspend. The
    /// journal is per boot, so the clock is the same one when it is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<u64>,
    /// When the preferred lifetime ends (the address becomes deprecated),
    /// as `valid_until`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_until: Option<u64>,
}

impl Ipv4Address {
    /// What `ip addr add ADDRESS/PREFIX dev X` sets: no peer, no broadcast,
    /// no label, global scope, forever. Also what an undo journal of the
    /// first format (which kept address/prefix only) restores.
    #[must_use]
    pub fn plain(net: Ipv4Net) -> Self {
        Self {
            local: net.addr(),
            peer: None,
            prefix_len: net.prefix_len(),
            broadcast: None,
            label: None,
            scope: 0,
            flags: 0,
            metric: None,
            protocol: None,
            valid_until: None,
            preferred_until: None,
        }
    }

    /// [`Self::plain`] with the subnet's broadcast address (below /31),
    /// as `ip addr add ADDRESS/PREFIX brd + dev X`: what dutnet puts on the
    /// interfaces it configures.
    #[must_use]
    pub fn with_broadcast(net: Ipv4Net) -> Self {
        Self {
            broadcast: (net.prefix_len() < 31).then(|| net.broadcast()),
            ..Self::plain(net)
        }
    }

    /// The interface's own address and prefix (`local/prefix`).
    #[must_use]
    pub fn net(&self) -> Ipv4Net {
        // The prefix came from the kernel or a journal this code wrote: at
        // most 32, else the host route is the honest reading.
        Ipv4Net::new(self.local, self.prefix_len).unwrap_or_else(|_| Ipv4Net::from(self.local))
    }

    /// The address as the kernel reported it in a dump at monotonic time
    /// `now` (seconds); `None` for another family or no address.
    #[must_use]
    pub fn from_message(message: &AddressMessage, now: u64) -> Option<Self> {
        if message.header.family != AddressFamily::Inet {
            return None;
        }
        let mut local = None;
        let mut address = None;
        let mut broadcast = None;
        let mut label = None;
        let mut metric = None;
        let mut protocol = None;
        let mut valid_until = None;
        let mut preferred_until = None;
        let mut flags = AddressFlags::from_bits_retain(u32::from(message.header.flags.bits()));
        for attribute in &message.attributes {
            match attribute {
                AddressAttribute::Local(IpAddr::V4(ip)) => local = Some(*ip),
                AddressAttribute::Address(IpAddr::V4(ip)) => address = Some(*ip),
                AddressAttribute::Broadcast(ip) => broadcast = Some(*ip),
                AddressAttribute::Label(text) => label = Some(text.clone()),
                // The 32-bit flags supersede the header's byte when present.
                AddressAttribute::Flags(all) => flags = *all,
                AddressAttribute::RoutePriority(priority) => metric = Some(*priority),
                AddressAttribute::Protocol(by) => protocol = Some(u8::from(*by)),
                AddressAttribute::CacheInfo(info) => {
                    let deadline =
                        |left: u32| (left != FOREVER).then(|| now.saturating_add(u64::from(left)));
                    valid_until = deadline(info.ifa_valid);
                    preferred_until = deadline(info.ifa_preferred);
                }
                _ => {}
            }
        }
        // IFA_LOCAL is missing only where it equals IFA_ADDRESS.
        let local = local.or(address)?;
        Some(Self {
            local,
            peer: address.filter(|peer| *peer != local),
            prefix_len: message.header.prefix_len,
            broadcast,
            label,
            scope: u8::from(message.header.scope),
            flags: (flags - KERNEL_FLAGS).bits(),
            metric,
            protocol,
            valid_until,
            preferred_until,
        })
    }

    /// The RTM_NEWADDR message that adds this address to link `index` at
    /// monotonic time `now`; `None` when its valid lifetime is over (the
    /// kernel would have removed it by now).
    #[must_use]
    pub fn to_message(&self, index: u32, now: u64) -> Option<AddressMessage> {
        let left = |deadline: Option<u64>| match deadline {
            None => FOREVER,
            Some(deadline) => u32::try_from(deadline.saturating_sub(now))
                .unwrap_or(FOREVER - 1)
                .min(FOREVER - 1),
        };
        let valid = left(self.valid_until);
        if valid == 0 {
            return None;
        }
        let flags = AddressFlags::from_bits_retain(self.flags) - KERNEL_FLAGS;
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.prefix_len = self.prefix_len;
        message.header.scope = AddressScope::from(self.scope);
        message.header.index = index;
        message.header.flags = AddressHeaderFlags::from_bits_truncate(
            u8::try_from(flags.bits() & 0xff).unwrap_or_default(),
        );
        let attributes = &mut message.attributes;
        attributes.push(AddressAttribute::Local(IpAddr::V4(self.local)));
        attributes.push(AddressAttribute::Address(IpAddr::V4(
            self.peer.unwrap_or(self.local),
        )));
        if let Some(broadcast) = self.broadcast {
            attributes.push(AddressAttribute::Broadcast(broadcast));
        }
        if let Some(label) = &self.label {
            attributes.push(AddressAttribute::Label(label.clone()));
        }
        attributes.push(AddressAttribute::Flags(flags));
        if let Some(metric) = self.metric {
            attributes.push(AddressAttribute::RoutePriority(metric));
        }
        if let Some(protocol) = self.protocol {
            attributes.push(AddressAttribute::Protocol(AddressProtocol::from(protocol)));
        }
        if self.valid_until.is_some() || self.preferred_until.is_some() {
            let mut info = CacheInfo::default();
            info.ifa_valid = valid;
            // The kernel refuses a preferred lifetime longer than the valid one.
            info.ifa_preferred = left(self.preferred_until).min(valid);
            attributes.push(AddressAttribute::CacheInfo(info));
        }
        Some(message)
    }
}

/// CLOCK_MONOTONIC in whole seconds: the clock of [`Ipv4Address`] deadlines.
#[must_use]
pub fn monotonic_now() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into memory we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut now) };
    u64::try_from(now.tv_sec).unwrap_or_default()
}

impl Netlink {
    /// The IPv4 addresses on link `index`, `local/prefix` each (a
    /// point-to-point address's own end, not its peer).
    pub async fn ipv4_addresses(&self, index: u32) -> Result<Vec<Ipv4Net>, NetlinkError> {
        Ok(self
            .exact_ipv4_addresses(index)
            .await?
            .iter()
            .map(Ipv4Address::net)
            .collect())
    }

    /// The IPv4 addresses on link `index` with every attribute, in the
    /// kernel's order (primaries before the secondaries of their subnet).
    pub async fn exact_ipv4_addresses(&self, index: u32) -> Result<Vec<Ipv4Address>, NetlinkError> {
        let now = monotonic_now();
        Ok(self
            .ipv4_address_messages(index)
            .await?
            .iter()
            .filter_map(|m| Ipv4Address::from_message(m, now))
            .collect())
    }

    async fn ipv4_address_messages(&self, index: u32) -> Result<Vec<AddressMessage>, NetlinkError> {
        let messages: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|e| error("list addresses", index, e))?;
        Ok(messages
            .into_iter()
            .filter(|m| m.header.family == AddressFamily::Inet)
            .collect())
    }

    /// Adds `address` (with its broadcast address) to link `index`;
    /// already present is fine (idempotent).
    pub async fn add_address(&self, index: u32, address: Ipv4Net) -> Result<(), NetlinkError> {
        self.add_exact_address(index, &Ipv4Address::with_broadcast(address))
            .await
    }

    /// Adds `address` with every attribute it has; already present is fine,
    /// an address whose valid lifetime ran out is skipped.
    pub async fn add_exact_address(
        &self,
        index: u32,
        address: &Ipv4Address,
    ) -> Result<(), NetlinkError> {
        let Some(message) = address.to_message(index, monotonic_now()) else {
            tracing::info!(address = %address.net(), "valid lifetime over: not added back");
            return Ok(());
        };
        let mut request =
            self.handle
                .address()
                .add(index, IpAddr::V4(address.local), address.prefix_len);
        *request.message_mut() = message;
        match request.execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(error("add address", address.net(), e)),
        }
    }

    /// Removes `address` (`local/prefix`) from link `index`; already absent
    /// is fine.
    pub async fn remove_address(&self, index: u32, address: Ipv4Net) -> Result<(), NetlinkError> {
        let now = monotonic_now();
        for message in self.ipv4_address_messages(index).await? {
            if Ipv4Address::from_message(&message, now).map(|a| a.net()) == Some(address) {
                self.delete_address(message, address).await?;
            }
        }
        Ok(())
    }

    async fn delete_address(
        &self,
        message: AddressMessage,
        subject: Ipv4Net,
    ) -> Result<(), NetlinkError> {
        match self.handle.address().del(message).execute().await {
            Ok(()) => Ok(()),
            // Gone already: deleting a primary takes its secondaries along
            // unless `promote_secondaries` is set.
            Err(e) if matches!(errno(&e), Some(libc::EADDRNOTAVAIL | libc::ENODEV)) => Ok(()),
            Err(e) => Err(error("remove address", subject, e)),
        }
    }

    /// Gives link `index` exactly the IPv4 addresses `wanted`, in that order:
    /// every present one is deleted, then each wanted one added. Order makes
    /// the same address primary again (the first of its subnet); deleting
    /// newest first removes secondaries before their primary, so none is
    /// promoted or lost on the way.
    pub async fn replace_ipv4_addresses(
        &self,
        index: u32,
        wanted: &[Ipv4Address],
    ) -> Result<(), NetlinkError> {
        let now = monotonic_now();
        for message in self.ipv4_address_messages(index).await?.into_iter().rev() {
            let subject = Ipv4Address::from_message(&message, now)
                .map(|a| a.net())
                .unwrap_or_default();
            self.delete_address(message, subject).await?;
        }
        for address in wanted {
            self.add_exact_address(index, address).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point_to_point() -> Ipv4Address {
        Ipv4Address {
            peer: Some(Ipv4Addr::new(172, 31, 8, 2)),
            label: Some("dn-dut1:p2p".into()),
            scope: 253,
            flags: AddressFlags::Noprefixroute.bits(),
            metric: Some(50),
            protocol: Some(7),
            valid_until: Some(1_000 + 3_600),
            preferred_until: Some(1_000 + 1_800),
            ..Ipv4Address::plain("172.31.8.1/32".parse().unwrap())
        }
    }

    #[test]
    fn every_attribute_survives_a_round_trip_through_a_message() {
        let address = point_to_point();
        let message = address.to_message(7, 1_000).unwrap();
        assert_eq!(message.header.index, 7);
        assert_eq!(Ipv4Address::from_message(&message, 1_000).unwrap(), address);
        let plain = Ipv4Address::plain("10.1.2.3/24".parse().unwrap());
        let message = plain.to_message(7, 1_000).unwrap();
        assert!(
            !message.attributes.iter().any(|a| matches!(
                a,
                AddressAttribute::Broadcast(_) | AddressAttribute::CacheInfo(_)
            )),
            "{message:?}"
        );
        assert_eq!(Ipv4Address::from_message(&message, 1_000).unwrap(), plain);
    }

    #[test]
    fn the_peer_is_not_taken_for_the_local_address() {
        let mut message = point_to_point().to_message(7, 1_000).unwrap();
        // The order the kernel dumps them in: IFA_ADDRESS first.
        message.attributes.reverse();
        let read = Ipv4Address::from_message(&message, 1_000).unwrap();
        assert_eq!(read.net(), "172.31.8.1/32".parse::<Ipv4Net>().unwrap());
        assert_eq!(read.peer, Some(Ipv4Addr::new(172, 31, 8, 2)));
    }

    #[test]
    fn lifetimes_keep_counting_down_and_an_expired_address_is_not_added() {
        let address = point_to_point();
        let later = address.to_message(7, 1_000 + 600).unwrap();
        let info = later
            .attributes
            .iter()
            .find_map(|a| match a {
                AddressAttribute::CacheInfo(info) => Some(*info),
                _ => None,
            })
            .unwrap();
        assert_eq!((info.ifa_valid, info.ifa_preferred), (3_000, 1_200));
        let deprecated = address.to_message(7, 1_000 + 2_000).unwrap();
        assert!(deprecated.attributes.iter().any(
            |a| matches!(a, AddressAttribute::CacheInfo(i) if i.ifa_preferred == 0 && i.ifa_valid == 1_600)
        ));
        assert!(address.to_message(7, 1_000 + 3_600).is_none());
    }

    #[test]
    fn kernel_kept_flags_are_not_restored() {
        let mut message = Ipv4Address::plain("10.1.2.4/24".parse().unwrap())
            .to_message(7, 0)
            .unwrap();
        for attribute in &mut message.attributes {
            if let AddressAttribute::Flags(flags) = attribute {
                *flags =
                    AddressFlags::Secondary | AddressFlags::Permanent | AddressFlags::Noprefixroute;
            }
        }
        let read = Ipv4Address::from_message(&message, 0).unwrap();
        assert_eq!(read.flags, AddressFlags::Noprefixroute.bits());
    }

    #[test]
    fn dutnet_s_own_addresses_carry_the_subnet_broadcast() {
        let gateway = Ipv4Address::with_broadcast("192.168.100.1/24".parse().unwrap());
        assert_eq!(gateway.broadcast, Some(Ipv4Addr::new(192, 168, 100, 255)));
        let host = Ipv4Address::with_broadcast("10.99.0.60/32".parse().unwrap());
        assert_eq!(host.broadcast, None);
    }
}
