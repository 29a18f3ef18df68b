//! Allocation state: bound leases, pending offers, declined addresses and the
//! static table. Pure data; time is always passed in.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

use super::{DhcpConfig, DhcpError, Lease, StaticLease, format_mac};

/// How long an offered address stays reserved for the client it was offered
/// to, so that two DISCOVERs in a row never get the same address.
pub const OFFER_HOLD: Duration = Duration::from_secs(30);
/// How long a declined address (RFC 2131 4.3.3: another host uses it) is
/// kept out of allocation.
pub const DECLINE_QUARANTINE: Duration = Duration::from_secs(600);

/// Who a request comes from. RFC 2131 4.2: the client identifier (option
/// 61) identifies the client when present, chaddr otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub mac: [u8; 6],
    pub client_id: Option<Vec<u8>>,
}

impl Client {
    /// Whether `lease` belongs to this client. A lease recorded without a
    /// client identifier still matches by MAC (the client may have started
    /// sending one, e.g. after a firmware update); a lease recorded with one
    /// only matches that identifier, so two clients sharing a MAC (PXE
    /// firmware and the OS) keep separate leases.
    fn owns(&self, lease: &Lease) -> bool {
        match (&self.client_id, &lease.client_id) {
            (Some(mine), Some(theirs)) => mine == theirs,
            (_, None) => self.mac == lease.mac,
            (None, Some(_)) => self.mac == lease.mac,
        }
    }

    fn same_key(&self, other: &Client) -> bool {
        match (&self.client_id, &other.client_id) {
            (Some(a), Some(b)) => a == b,
            _ => self.mac == other.mac,
        }
    }
}

#[derive(Debug, Clone)]
struct Offer {
    client: Client,
    until: SystemTime,
}

/// The server's view of its address pool.
#[derive(Debug, Default)]
pub struct LeaseState {
    bindings: BTreeMap<Ipv4Addr, Lease>,
    offers: BTreeMap<Ipv4Addr, Offer>,
    declined: BTreeMap<Ipv4Addr, SystemTime>,
    statics: Vec<StaticLease>,
    /// Addresses never handed out dynamically (entries without a MAC: 1:1
    /// only), from the config and changed at run time.
    reserved: BTreeSet<Ipv4Addr>,
    /// Set when `bindings` changed: the caller must persist before replying.
    dirty: bool,
}

impl LeaseState {
    /// Starts from the config's static table and the leases read from disk;
    /// expired leases and leases that clash with the static table are dropped.
    pub fn new(config: &DhcpConfig, persisted: Vec<Lease>, now: SystemTime) -> Self {
        let mut state = LeaseState {
            statics: config.static_leases.clone(),
            reserved: config.reserved.iter().copied().collect(),
            ..LeaseState::default()
        };
        for mut lease in persisted {
            if lease.expires <= now
                || !config.is_host_addr(lease.ip)
                || lease.ip == config.server_ip
            {
                continue;
            }
            match state.static_for_mac(&lease.mac) {
                Some(s) if s.ip != lease.ip => continue,
                Some(s) => {
                    lease.is_static = true;
                    if s.hostname.is_some() {
                        lease.hostname = s.hostname.clone();
                    }
                }
                None if state.is_static_ip(lease.ip) => continue,
                None => lease.is_static = false,
            }
            state.bindings.insert(lease.ip, lease);
        }
        state
    }

    /// All bound leases, by address.
    pub fn leases(&self) -> Vec<Lease> {
        self.bindings.values().cloned().collect()
    }

    /// Returns and clears the "bindings changed" flag.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Asks for another write (the last one failed).
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Drops expired leases, offers and quarantines (RFC 2131 4.3.1: an
    /// expired lease's address may be reused).
    pub fn expire(&mut self, now: SystemTime) {
        let before = self.bindings.len();
        self.bindings.retain(|_, l| l.expires > now);
        if self.bindings.len() != before {
            self.dirty = true;
        }
        self.offers.retain(|_, o| o.until > now);
        self.declined.retain(|_, until| *until > now);
    }

    pub fn static_for_mac(&self, mac: &[u8; 6]) -> Option<&StaticLease> {
        self.statics.iter().find(|s| &s.mac == mac)
    }

    fn is_static_ip(&self, ip: Ipv4Addr) -> bool {
        self.statics.iter().any(|s| s.ip == ip)
    }

    /// The client's current binding (even if it asked for something else).
    pub fn binding_for(&self, client: &Client) -> Option<&Lease> {
        // Prefer an exact client-id match over a MAC fallback.
        let exact = self
            .bindings
            .values()
            .find(|l| client.client_id.is_some() && l.client_id.is_some() && client.owns(l));
        exact.or_else(|| self.bindings.values().find(|l| client.owns(l)))
    }

    fn offer_for(&self, client: &Client, now: SystemTime) -> Option<Ipv4Addr> {
        self.offers
            .iter()
            .find(|(_, o)| o.until > now && o.client.same_key(client))
            .map(|(ip, _)| *ip)
    }

    /// Whether `ip` may be offered to `client` right now: free, or its own.
    pub fn is_available(
        &self,
        ip: Ipv4Addr,
        client: &Client,
        now: SystemTime,
        config: &DhcpConfig,
    ) -> bool {
        self.is_bindable(ip, client, now, config)
            && !self
                .offers
                .get(&ip)
                .is_some_and(|o| o.until > now && !o.client.same_key(client))
    }

    /// [`Self::is_available`] without the pending offers: an offer is a
    /// short reservation, not a lease, so the first client to REQUEST an
    /// address only offered to another gets it (the other's REQUEST is
    /// NAKed and it starts over).
    fn is_bindable(
        &self,
        ip: Ipv4Addr,
        client: &Client,
        now: SystemTime,
        config: &DhcpConfig,
    ) -> bool {
        if !config.in_dynamic_range(ip)
            || ip == config.server_ip
            || self.reserved.contains(&ip)
            || self.is_static_ip(ip)
        {
            return false;
        }
        if self.declined.get(&ip).is_some_and(|until| *until > now) {
            return false;
        }
        if let Some(l) = self.bindings.get(&ip)
            && l.expires > now
            && !client.owns(l)
        {
            return false;
        }
        true
    }

    /// The address to offer to `client` (RFC 2131 4.3.1 order): its static
    /// address, its current binding, its pending offer, the address it
    /// requested if free, else the lowest free address of the range; with
    /// none free, the address of the oldest pending offer to another
    /// client. So DISCOVERs alone (a flood from random MACs) can never
    /// leave a DUT without an offer: only bound leases fill the pool.
    pub fn choose(
        &self,
        client: &Client,
        requested: Option<Ipv4Addr>,
        now: SystemTime,
        config: &DhcpConfig,
    ) -> Option<Ipv4Addr> {
        if let Some(s) = self.static_for_mac(&client.mac) {
            return Some(s.ip);
        }
        if let Some(l) = self.binding_for(client)
            && self.is_available(l.ip, client, now, config)
        {
            return Some(l.ip);
        }
        if let Some(ip) = self.offer_for(client, now) {
            return Some(ip);
        }
        if let Some(ip) = requested
            && self.is_available(ip, client, now, config)
        {
            return Some(ip);
        }
        let (start, end) = (u32::from(config.range_start), u32::from(config.range_end));
        (start..=end)
            .map(Ipv4Addr::from)
            .find(|ip| self.is_available(*ip, client, now, config))
            .or_else(|| {
                self.offers
                    .iter()
                    .filter(|(ip, _)| self.is_bindable(**ip, client, now, config))
                    .min_by_key(|(_, o)| o.until)
                    .map(|(ip, _)| *ip)
            })
    }

    /// Whether `client` may be acknowledged for `ip` (a REQUEST): its static
    /// address, its own binding, or a free address. We are the only server on
    /// the DUT network, so the answer is authoritative.
    pub fn may_bind(
        &self,
        client: &Client,
        ip: Ipv4Addr,
        now: SystemTime,
        config: &DhcpConfig,
    ) -> bool {
        if let Some(s) = self.static_for_mac(&client.mac) {
            return s.ip == ip;
        }
        // A client may have its own binding back; another's offer does
        // not stop it.
        self.is_bindable(ip, client, now, config)
    }

    /// Holds `ip` for `client` for [`OFFER_HOLD`] (taking it from an older
    /// offer to another client, when [`Self::choose`] reclaimed it).
    pub fn offer(&mut self, client: &Client, ip: Ipv4Addr, now: SystemTime) {
        self.offers.retain(|_, o| !o.client.same_key(client));
        self.offers.insert(
            ip,
            Offer {
                client: client.clone(),
                until: now + OFFER_HOLD,
            },
        );
    }

    /// Forgets a pending offer (the client chose another server).
    pub fn withdraw_offer(&mut self, client: &Client) {
        self.offers.retain(|_, o| !o.client.same_key(client));
    }

    /// Binds `ip` to `client` until `now + lease_time`; a client holds one
    /// lease, so any other binding of it goes.
    pub fn bind(
        &mut self,
        client: &Client,
        ip: Ipv4Addr,
        client_hostname: Option<String>,
        now: SystemTime,
        lease_time: Duration,
    ) -> Lease {
        self.bindings
            .retain(|bound_ip, l| *bound_ip == ip || !client.owns(l));
        self.withdraw_offer(client);
        // Another client's offer of this address is void now.
        self.offers.remove(&ip);
        let static_entry = self.static_for_mac(&client.mac).filter(|s| s.ip == ip);
        let hostname = static_entry
            .and_then(|s| s.hostname.clone())
            .or(client_hostname)
            .or_else(|| {
                self.bindings
                    .get(&ip)
                    .filter(|l| client.owns(l))
                    .and_then(|l| l.hostname.clone())
            });
        let lease = Lease {
            mac: client.mac,
            ip,
            hostname,
            client_id: client.client_id.clone(),
            expires: now + lease_time,
            is_static: static_entry.is_some(),
            acked: Some(now),
        };
        self.bindings.insert(ip, lease.clone());
        self.dirty = true;
        lease
    }

    /// RELEASE: frees `ip` if `client` holds it. Returns whether it did.
    pub fn release(&mut self, client: &Client, ip: Ipv4Addr) -> bool {
        if self.bindings.get(&ip).is_some_and(|l| client.owns(l)) {
            self.bindings.remove(&ip);
            self.dirty = true;
            return true;
        }
        false
    }

    /// DECLINE: someone else answers ARP for `ip`; keep it out of
    /// allocation for [`DECLINE_QUARANTINE`] and drop the client's binding.
    pub fn decline(&mut self, client: &Client, ip: Ipv4Addr, now: SystemTime) {
        self.release(client, ip);
        self.offers.remove(&ip);
        self.declined.insert(ip, now + DECLINE_QUARANTINE);
    }

    pub fn is_quarantined(&self, ip: Ipv4Addr, now: SystemTime) -> bool {
        self.declined.get(&ip).is_some_and(|until| *until > now)
    }

    /// Adds a static entry at run time. A dynamic lease or offer another
    /// client holds on that address is dropped: its renewal will be NAKed.
    pub fn add_static(&mut self, entry: StaticLease, config: &DhcpConfig) -> Result<(), DhcpError> {
        if !config.is_host_addr(entry.ip) || entry.ip == config.server_ip {
            return Err(DhcpError::StaticOutsideSubnet {
                ip: entry.ip,
                subnet: config.subnet.trunc(),
            });
        }
        if let Some(other) = self
            .statics
            .iter()
            .find(|s| (s.ip == entry.ip) != (s.mac == entry.mac))
        {
            return Err(DhcpError::StaticConflict {
                ip: entry.ip,
                mac: format_mac(&entry.mac),
                other_ip: other.ip,
                other_mac: format_mac(&other.mac),
            });
        }
        self.statics.retain(|s| s.mac != entry.mac);
        let before = self.bindings.len();
        self.bindings.retain(|ip, l| {
            (*ip != entry.ip || l.mac == entry.mac) && !(l.mac == entry.mac && *ip != entry.ip)
        });
        if let Some(l) = self.bindings.get_mut(&entry.ip) {
            l.is_static = true;
            if entry.hostname.is_some() {
                l.hostname = entry.hostname.clone();
            }
            self.dirty = true;
        }
        if self.bindings.len() != before {
            self.dirty = true;
        }
        self.offers.remove(&entry.ip);
        self.offers.retain(|_, o| o.client.mac != entry.mac);
        self.statics.push(entry);
        Ok(())
    }

    /// Removes the static entry for `ip` and its binding; the client's next
    /// renewal is NAKed and it gets a dynamic address.
    /// Keeps `ip` out of (`reserved`) or back in the dynamic pool. A dynamic
    /// lease already on it runs until it expires or is released.
    pub fn set_reserved(&mut self, ip: Ipv4Addr, reserved: bool) {
        if reserved {
            self.reserved.insert(ip);
            self.offers.remove(&ip);
        } else {
            self.reserved.remove(&ip);
        }
    }

    pub fn remove_static(&mut self, ip: Ipv4Addr) -> Result<(), DhcpError> {
        let before = self.statics.len();
        self.statics.retain(|s| s.ip != ip);
        if self.statics.len() == before {
            return Err(DhcpError::StaticNotFound { ip });
        }
        if self.bindings.remove(&ip).is_some() {
            self.dirty = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::config;
    use super::*;

    fn client(last: u8) -> Client {
        Client {
            mac: [0x02, 0, 0, 0, 0, last],
            client_id: None,
        }
    }

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(192, 168, 50, last)
    }

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn sequential_skips_reserved() {
        let c = config();
        let mut s = LeaseState::new(&c, vec![], t0());
        let a = s.choose(&client(1), None, t0(), &c).unwrap();
        assert_eq!(a, ip(100));
        s.offer(&client(1), a, t0());
        // .101 is reserved
        assert_eq!(s.choose(&client(2), None, t0(), &c), Some(ip(102)));
    }

    #[test]
    fn an_address_reserved_at_run_time_is_skipped_until_released() {
        let c = config();
        let mut s = LeaseState::new(&c, vec![], t0());
        s.set_reserved(ip(100), true);
        assert_eq!(s.choose(&client(1), None, t0(), &c), Some(ip(102)));
        s.set_reserved(ip(100), false);
        assert_eq!(s.choose(&client(1), None, t0(), &c), Some(ip(100)));
    }

    #[test]
    fn offer_hold_expires() {
        let c = config();
        let mut s = LeaseState::new(&c, vec![], t0());
        s.offer(&client(1), ip(100), t0());
        assert_eq!(s.choose(&client(2), None, t0(), &c), Some(ip(102)));
        let later = t0() + OFFER_HOLD + Duration::from_secs(1);
        assert_eq!(s.choose(&client(2), None, later, &c), Some(ip(100)));
    }

    #[test]
    fn exhaustion() {
        let mut c = config();
        c.range_end = ip(102);
        let mut s = LeaseState::new(&c, vec![], t0());
        s.bind(&client(1), ip(100), None, t0(), c.lease_time);
        s.bind(&client(2), ip(102), None, t0(), c.lease_time);
        assert_eq!(s.choose(&client(3), None, t0(), &c), None);
        // Expiry reclaims.
        let later = t0() + c.lease_time + Duration::from_secs(1);
        s.expire(later);
        assert_eq!(s.choose(&client(3), None, later, &c), Some(ip(100)));
    }

    #[test]
    fn discovers_alone_never_exhaust_the_pool() {
        let mut c = config();
        c.range_end = ip(102);
        let mut s = LeaseState::new(&c, vec![], t0());
        // A flood: every address offered to a client that never REQUESTs.
        for k in 10..60 {
            let ip = s.choose(&client(k), None, t0(), &c).unwrap();
            s.offer(&client(k), ip, t0());
        }
        // A DUT still gets an offer (the oldest one's address), and its
        // REQUEST is granted over the flooder's offer.
        let offered = s.choose(&client(1), None, t0(), &c).unwrap();
        s.offer(&client(1), offered, t0());
        assert!(s.may_bind(&client(1), offered, t0(), &c));
        s.bind(&client(1), offered, None, t0(), c.lease_time);
        // A bound lease is never reclaimed: the next DUT gets the other one.
        let other = s.choose(&client(2), None, t0(), &c).unwrap();
        assert_ne!(other, offered);
        s.bind(&client(2), other, None, t0(), c.lease_time);
        assert_eq!(s.choose(&client(3), None, t0(), &c), None);
        assert!(!s.may_bind(&client(3), offered, t0(), &c));
    }

    #[test]
    fn server_ip_inside_range_is_skipped() {
        let mut c = config();
        c.server_ip = ip(100);
        let s = LeaseState::new(&c, vec![], t0());
        assert_eq!(s.choose(&client(1), None, t0(), &c), Some(ip(102)));
    }

    #[test]
    fn client_id_separates_clients_sharing_a_mac() {
        let c = config();
        let mut s = LeaseState::new(&c, vec![], t0());
        let pxe = Client {
            mac: [2, 0, 0, 0, 0, 1],
            client_id: Some(vec![0, 1]),
        };
        let os = Client {
            mac: [2, 0, 0, 0, 0, 1],
            client_id: Some(vec![0, 2]),
        };
        s.bind(&pxe, ip(100), None, t0(), c.lease_time);
        assert_eq!(s.choose(&os, None, t0(), &c), Some(ip(102)));
        assert_eq!(s.choose(&pxe, None, t0(), &c), Some(ip(100)));
    }

    #[test]
    fn persisted_leases_filtered() {
        let c = config();
        let lease = |mac_last, last, expires| Lease {
            mac: [2, 0, 0, 0, 0, mac_last],
            ip: ip(last),
            hostname: None,
            client_id: None,
            expires,
            is_static: false,
            acked: None,
        };
        let s = LeaseState::new(
            &c,
            vec![
                lease(1, 100, t0() + Duration::from_secs(10)),
                lease(2, 102, t0() - Duration::from_secs(10)), // expired
                lease(3, 10, t0() + Duration::from_secs(10)),  // static ip of another mac
                lease(0x99, 10, t0() + Duration::from_secs(10)), // the static owner
            ],
            t0(),
        );
        let got = s.leases();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].ip, ip(10));
        assert!(got[0].is_static);
        assert_eq!(got[0].hostname.as_deref(), Some("board-a"));
        assert_eq!(got[1].ip, ip(100));
    }

    #[test]
    fn add_and_remove_static() {
        let c = config();
        let mut s = LeaseState::new(&c, vec![], t0());
        s.bind(&client(1), ip(100), None, t0(), c.lease_time);
        s.take_dirty();
        s.add_static(
            StaticLease {
                mac: [2, 0, 0, 0, 0, 2],
                ip: ip(100),
                hostname: None,
                options: Default::default(),
            },
            &c,
        )
        .unwrap();
        assert!(s.take_dirty());
        assert!(
            s.leases().is_empty(),
            "the dynamic holder loses the address"
        );
        assert_eq!(s.choose(&client(2), None, t0(), &c), Some(ip(100)));
        assert_eq!(s.choose(&client(1), None, t0(), &c), Some(ip(102)));
        // Same ip, other mac: conflict.
        let err = s
            .add_static(
                StaticLease {
                    mac: [2, 0, 0, 0, 0, 3],
                    ip: ip(100),
                    hostname: None,
                    options: Default::default(),
                },
                &c,
            )
            .unwrap_err();
        assert!(matches!(err, DhcpError::StaticConflict { .. }));
        assert!(matches!(
            s.add_static(
                StaticLease {
                    mac: [2, 0, 0, 0, 0, 3],
                    ip: Ipv4Addr::new(10, 0, 0, 1),
                    hostname: None,
                    options: Default::default(),
                },
                &c
            ),
            Err(DhcpError::StaticOutsideSubnet { .. })
        ));
        s.remove_static(ip(100)).unwrap();
        assert!(matches!(
            s.remove_static(ip(100)),
            Err(DhcpError::StaticNotFound { .. })
        ));
        assert_eq!(s.choose(&client(2), None, t0(), &c), Some(ip(100)));
    }
}
