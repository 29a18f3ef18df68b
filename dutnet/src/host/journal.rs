//! The undo journal.
//!
//! Before dutnet changes anything on the host it appends how to undo it. A clean exit undoes by replaying the journal backwards, and so does
//! the next `dutnet load` or `dutnet down` after a dutnet killed with SIGKILL:
//! one mechanism for both. Each line is JSON; the first names the boot, so a
//! journal from before a reboot (whose changes the reboot already undid) is
//! discarded instead of replayed.
//!
//! An entry is written, not fsynced: everything dutnet changes (addresses,
//! sysctls, nftables, TC links, NetworkManager's runtime state) lives only
//! in the running kernel, and what ends the kernel (a power loss, a crash)
//! ends those changes with it, while a killed dutnet leaves the entry in the
//! page cache for the next start to read. An fsync per entry cost 2 to 5 ms
//! each, most of a network's bring-up.
//!
//! The header also says which format the lines are in ([`FORMAT`]). Format
//! 1 kept an interface's addresses as `address/prefix` strings; format 2
//! keeps every attribute ([`Ipv4Address`]). Both are read; a journal of a
//! newer format is refused rather than half understood.
use std::{
    collections::HashSet,
    fs::{File, OpenOptions},
    io::Write as _,
    path::{Path, PathBuf},
};

use ipnet::Ipv4Net;
use serde::{Deserialize, Deserializer, Serialize};

use super::{
    change::{HostChange, LocalChange, Prior},
    error::HostError,
};
use crate::{
    netlink::{Ipv4Address, Netlink},
    state::{atomic_write, private, sync_dir},
};

/// The format this dutnet writes, and the newest it reads.
pub const FORMAT: u32 = 2;

/// How to put back one thing dutnet changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "undo", rename_all = "snake_case")]
pub enum UndoStep {
    /// Give `interface` exactly these IPv4 addresses again, in this order.
    Ipv4Addresses {
        interface: String,
        #[serde(deserialize_with = "addresses_of_either_format")]
        addresses: Vec<Ipv4Address>,
    },
    /// Set `interface` administratively down again.
    LinkDown { interface: String },
    /// Write `value` back to sysctl `key`.
    Sysctl { key: String, value: String },
    /// Hand `interface` back to NetworkManager.
    NmManaged { interface: String },
    /// Remove dutnet's bpffs pin directory.
    PinDir { path: PathBuf },
    /// Remove an address dutnet added to an interface (a 1:1 public IP).
    AddressAlias { interface: String, address: Ipv4Net },
    /// Remove the policy rule for DUT NIC replies marked `mark`, and the
    /// routes of its `table`.
    MarkRule { mark: u32, table: u32 },
    /// Delete the VLAN sub-interface dutnet created.
    VlanLink { interface: String },
    /// Flush route table `table` (a 1:1 DUT's policy route).
    PolicyTable { table: u32 },
    /// Remove the rule sending DUT `source` on NIC `iif` to `table`.
    SourceRule {
        source: std::net::Ipv4Addr,
        iif: String,
        table: u32,
    },
    /// Delete dutnet's nftables table.
    NftTable { table: String },
    /// Delete the rules commented `comment` that dutnet inserted in another
    /// table's chain (a Docker-style drop-policy forward chain). Found by
    /// comment, then deleted by handle: recorded before the handles exist,
    /// and never matches a rule of the other table's own.
    NftRules {
        family: String,
        table: String,
        chain: String,
        comment: String,
    },
}

impl UndoStep {
    /// Steps with the same key undo the same thing: only the first (the
    /// state before dutnet) is kept.
    fn key(&self) -> String {
        match self {
            Self::Ipv4Addresses { interface, .. } => format!("addr:{interface}"),
            Self::LinkDown { interface } => format!("link:{interface}"),
            Self::Sysctl { key, .. } => format!("sysctl:{key}"),
            Self::NmManaged { interface } => format!("nm:{interface}"),
            Self::PinDir { path } => format!("pins:{}", path.display()),
            Self::NftTable { table } => format!("nft:{table}"),
            Self::NftRules {
                family,
                table,
                chain,
                comment,
            } => format!("nftrules:{family}:{table}:{chain}:{comment}"),
            Self::MarkRule { mark, .. } => format!("rule:{mark}"),
            Self::AddressAlias { interface, address } => format!("alias:{interface}:{address}"),
            Self::VlanLink { interface } => format!("vlan:{interface}"),
            Self::PolicyTable { table } => format!("table:{table}"),
            Self::SourceRule { source, iif, table } => format!("srcrule:{source}:{iif}:{table}"),
        }
    }
}

/// An address as either format wrote it.
#[derive(Deserialize)]
#[serde(untagged)]
enum SavedAddress {
    Exact(Ipv4Address),
    /// Format 1: `"192.168.1.5/24"`, restored as `ip addr add` would.
    Plain(Ipv4Net),
}

fn addresses_of_either_format<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Ipv4Address>, D::Error> {
    let saved = Vec::<SavedAddress>::deserialize(deserializer)?;
    Ok(saved
        .into_iter()
        .map(|address| match address {
            SavedAddress::Exact(exact) => exact,
            SavedAddress::Plain(net) => Ipv4Address::plain(net),
        })
        .collect())
}

/// One journal line after the header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The network the step belongs to; empty for shared host state (the
    /// upstream's forwarding switch, the pins), undone only at full teardown.
    pub network: String,
    #[serde(flatten)]
    pub step: UndoStep,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    dutnet_journal: u32,
    boot_id: String,
    pid: u32,
}

/// A journal that could not be written or read.
#[derive(Debug, thiserror::Error)]
#[error("undo journal {path}: {source}")]
pub struct JournalError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The journal of the running dutnet.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    entries: Vec<Entry>,
    keys: HashSet<String>,
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

impl Journal {
    /// Starts a new journal at `path` (replay any old one first).
    pub fn create(path: &Path) -> Result<Self, JournalError> {
        let fail = |source| JournalError {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            private::create_dir(dir).map_err(fail)?;
        }
        let file = private::open_file(path, OpenOptions::new().create_new(true).append(true))
            .map_err(fail)?;
        let mut journal = Self {
            path: path.to_owned(),
            file,
            entries: Vec::new(),
            keys: HashSet::new(),
        };
        let header = Header {
            dutnet_journal: FORMAT,
            boot_id: boot_id(),
            pid: std::process::id(),
        };
        journal.append_line(&serde_json::to_string(&header).map_err(|e| fail(e.into()))?)?;
        sync_dir(path);
        Ok(journal)
    }

    /// Records how to undo a change, durably, before the change is made.
    /// A step whose key is already recorded is skipped: the first one holds
    /// the state from before dutnet.
    pub fn record(&mut self, network: &str, step: UndoStep) -> Result<(), JournalError> {
        if !self.keys.insert(step.key()) {
            return Ok(());
        }
        let entry = Entry {
            network: network.to_owned(),
            step,
        };
        let line = serde_json::to_string(&entry).map_err(|e| JournalError {
            path: self.path.clone(),
            source: e.into(),
        })?;
        self.append_line(&line)?;
        self.entries.push(entry);
        Ok(())
    }

    /// Makes `change` for `network`: reads the state it replaces, records
    /// how to put that back (durably, see [`Self::record`]), then changes
    /// only what differs. Returns whether anything was changed. Every host
    /// change dutnet makes goes through here or [`Self::apply_local`].
    pub async fn apply(
        &mut self,
        network: &str,
        change: &HostChange,
        netlink: &Netlink,
    ) -> Result<bool, HostError> {
        if let HostChange::Local(local) = change {
            return self.apply_local(network, local);
        }
        let in_network = |e: HostError| e.for_network(network);
        let prior = change.prior(netlink).await.map_err(in_network)?;
        if !self.record_prior(network, prior, change.interface())? {
            return Ok(false);
        }
        change.make(network, netlink).await.map_err(in_network)?;
        Ok(true)
    }

    /// [`Self::apply`] for a change that needs no netlink.
    pub fn apply_local(&mut self, network: &str, change: &LocalChange) -> Result<bool, HostError> {
        if change.made_once().is_some_and(|step| self.has(&step)) {
            return Ok(false);
        }
        let in_network = |e: HostError| e.for_network(network);
        let prior = change.prior().map_err(in_network)?;
        if !self.record_prior(network, prior, change.interface())? {
            return Ok(false);
        }
        change.make(network).map_err(in_network)?;
        Ok(true)
    }

    /// Records the undo of `prior`; returns whether the change is needed.
    fn record_prior(
        &mut self,
        network: &str,
        prior: Prior,
        interface: Option<&str>,
    ) -> Result<bool, HostError> {
        if let Some(step) = prior.undo {
            self.record(network, step)
                .map_err(|e| HostError::new("journaling", interface, e).for_network(network))?;
        }
        Ok(prior.needed)
    }

    /// True when a step with this key is recorded.
    #[must_use]
    pub fn has(&self, step: &UndoStep) -> bool {
        self.keys.contains(&step.key())
    }

    /// Removes `network`'s entries (a reload removed the network; the
    /// caller undoes them) and rewrites the file atomically: a crash after
    /// this replays only what is still in force.
    pub fn take_network(&mut self, network: &str) -> Result<Vec<Entry>, JournalError> {
        let (taken, kept): (Vec<Entry>, Vec<Entry>) =
            self.entries.drain(..).partition(|e| e.network == network);
        self.entries = kept;
        self.keys = self.entries.iter().map(|e| e.step.key()).collect();
        self.rewrite()?;
        Ok(taken)
    }

    fn rewrite(&mut self) -> Result<(), JournalError> {
        let fail = |source| JournalError {
            path: self.path.clone(),
            source,
        };
        let header = Header {
            dutnet_journal: FORMAT,
            boot_id: boot_id(),
            pid: std::process::id(),
        };
        let mut text = serde_json::to_string(&header).map_err(|e| fail(e.into()))?;
        text.push('\n');
        for entry in &self.entries {
            text.push_str(&serde_json::to_string(entry).map_err(|e| fail(e.into()))?);
            text.push('\n');
        }
        atomic_write(&self.path, text.as_bytes()).map_err(fail)?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(fail)?;
        Ok(())
    }

    /// Every entry, in the order recorded.
    #[must_use]
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Deletes the journal after everything in it was undone.
    pub fn finish(self) -> Result<(), JournalError> {
        std::fs::remove_file(&self.path).map_err(|source| JournalError {
            path: self.path.clone(),
            source,
        })?;
        sync_dir(&self.path);
        Ok(())
    }

    fn append_line(&mut self, line: &str) -> Result<(), JournalError> {
        let fail = |source| JournalError {
            path: self.path.clone(),
            source,
        };
        self.file
            .write_all(format!("{line}\n").as_bytes())
            .map_err(fail)
    }
}

/// What a journal left by an earlier dutnet asks to undo.
#[derive(Debug)]
pub enum Leftover {
    /// No journal.
    None,
    /// A journal from before the last reboot: nothing to undo.
    OtherBoot,
    /// Entries to undo, in the order they were recorded.
    Pending { pid: u32, entries: Vec<Entry> },
}

/// Reads the journal at `path`. A line cut short by a crash is ignored: its
/// change was never made (the entry is written before the change).
pub fn read_leftover(path: &Path) -> Result<Leftover, JournalError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Leftover::None),
        Err(source) => {
            return Err(JournalError {
                path: path.to_owned(),
                source,
            });
        }
    };
    let mut lines = text.lines();
    let Some(header) = lines
        .next()
        .and_then(|l| serde_json::from_str::<Header>(l).ok())
    else {
        return Ok(Leftover::Pending {
            pid: 0,
            entries: Vec::new(),
        });
    };
    if header.boot_id != boot_id() {
        return Ok(Leftover::OtherBoot);
    }
    if header.dutnet_journal > FORMAT {
        return Err(JournalError {
            path: path.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "written in format {} by a newer dutnet (this one reads up to {FORMAT}); \
                     run `dutnet down` with that version to undo it",
                    header.dutnet_journal
                ),
            ),
        });
    }
    let entries = lines
        .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
        .collect();
    Ok(Leftover::Pending {
        pid: header.pid,
        entries,
    })
}

/// Removes the journal file of a finished undo.
pub fn remove(path: &Path) -> Result<(), JournalError> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            sync_dir(path);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(JournalError {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("dutnet-journal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("undo.journal")
    }

    #[test]
    fn records_survive_and_the_first_prior_state_wins() {
        let path = temp_path("first");
        let mut journal = Journal::create(&path).unwrap();
        let first = UndoStep::Sysctl {
            key: "net.ipv4.conf.eth1.forwarding".into(),
            value: "0".into(),
        };
        journal.record("lab", first.clone()).unwrap();
        journal
            .record(
                "lab",
                UndoStep::Sysctl {
                    key: "net.ipv4.conf.eth1.forwarding".into(),
                    value: "1".into(),
                },
            )
            .unwrap();
        drop(journal); // as if killed
        let Leftover::Pending { entries, pid } = read_leftover(&path).unwrap() else {
            panic!("journal not found");
        };
        assert_eq!(pid, std::process::id());
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].step, first);
        remove(&path).unwrap();
        assert!(matches!(read_leftover(&path).unwrap(), Leftover::None));
    }

    #[test]
    fn a_line_cut_short_by_a_crash_is_ignored() {
        let path = temp_path("cut");
        let mut journal = Journal::create(&path).unwrap();
        journal
            .record(
                "lab",
                UndoStep::LinkDown {
                    interface: "eth1".into(),
                },
            )
            .unwrap();
        drop(journal);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"network\":\"lab\",\"undo\":\"sysc")
            .unwrap();
        let Leftover::Pending { entries, .. } = read_leftover(&path).unwrap() else {
            panic!("journal not found");
        };
        assert_eq!(entries.len(), 1);
        remove(&path).unwrap();
    }

    #[test]
    fn a_format_1_journal_is_still_undone() {
        let path = temp_path("v1");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let header = format!(
            "{{\"dutnet_journal\":1,\"boot_id\":\"{}\",\"pid\":42}}",
            boot_id()
        );
        let line = r#"{"network":"lab","undo":"ipv4_addresses","interface":"eth1","addresses":["10.50.1.7/24","172.31.8.2/32"]}"#;
        std::fs::write(&path, format!("{header}\n{line}\n")).unwrap();
        let Leftover::Pending { entries, pid } = read_leftover(&path).unwrap() else {
            panic!("journal not found");
        };
        assert_eq!(pid, 42);
        let UndoStep::Ipv4Addresses { addresses, .. } = &entries[0].step else {
            panic!("{entries:?}");
        };
        assert_eq!(
            addresses,
            &[
                Ipv4Address::plain("10.50.1.7/24".parse().unwrap()),
                Ipv4Address::plain("172.31.8.2/32".parse().unwrap()),
            ]
        );
        remove(&path).unwrap();
    }

    #[test]
    fn exact_addresses_are_kept_and_a_newer_format_is_refused() {
        let path = temp_path("v2");
        let mut journal = Journal::create(&path).unwrap();
        let exact = Ipv4Address {
            peer: Some("172.31.8.2".parse().unwrap()),
            label: Some("eth1:p2p".into()),
            valid_until: Some(99),
            ..Ipv4Address::plain("172.31.8.1/32".parse().unwrap())
        };
        let step = UndoStep::Ipv4Addresses {
            interface: "eth1".into(),
            addresses: vec![exact],
        };
        journal.record("lab", step.clone()).unwrap();
        drop(journal);
        let Leftover::Pending { entries, .. } = read_leftover(&path).unwrap() else {
            panic!("journal not found");
        };
        assert_eq!(entries[0].step, step);

        let text = std::fs::read_to_string(&path).unwrap();
        let newer = text.replacen(
            &format!("\"dutnet_journal\":{FORMAT}"),
            &format!("\"dutnet_journal\":{}", FORMAT + 1),
            1,
        );
        std::fs::write(&path, newer).unwrap();
        let refused = read_leftover(&path).unwrap_err();
        assert!(refused.to_string().contains("newer dutnet"), "{refused}");
        remove(&path).unwrap();
    }

    /// A sysctl root can read but not write (0444).
    const READ_ONLY_SYSCTL: &str = "kernel.random.boot_id";

    #[test]
    fn a_change_is_recorded_before_it_is_made() {
        let path = temp_path("apply");
        let mut journal = Journal::create(&path).unwrap();
        let before = crate::host::sysctl::read(READ_ONLY_SYSCTL).unwrap();
        // The write fails (the file is read-only): the prior value must
        // already be on disk, as after a crash between the two.
        let change = LocalChange::sysctl(READ_ONLY_SYSCTL, "changed");
        let e = journal.apply_local("lab", &change).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "network `lab`: setting a sysctl failed: sysctl {READ_ONLY_SYSCTL}:"
            )),
            "{text}"
        );
        assert!(matches!(e.source, crate::host::error::HostCause::Sysctl(_)));
        drop(journal); // as if killed
        let Leftover::Pending { entries, .. } = read_leftover(&path).unwrap() else {
            panic!("journal not found");
        };
        assert_eq!(
            entries,
            [Entry {
                network: "lab".into(),
                step: UndoStep::Sysctl {
                    key: READ_ONLY_SYSCTL.into(),
                    value: before,
                },
            }]
        );
        remove(&path).unwrap();
    }

    #[test]
    fn a_change_the_host_already_has_is_recorded_and_not_made() {
        let path = temp_path("already");
        let mut journal = Journal::create(&path).unwrap();
        let current = crate::host::sysctl::read(READ_ONLY_SYSCTL).unwrap();
        let change = LocalChange::sysctl(READ_ONLY_SYSCTL, &current);
        // Writing would fail: Ok(false) shows it was not tried.
        assert!(!journal.apply_local("", &change).unwrap());
        assert!(!journal.apply_local("", &change).unwrap());
        assert_eq!(journal.entries().len(), 1);
        let pins = std::env::temp_dir().join("dutnet-journal-unit-pins");
        assert!(
            !journal
                .apply_local("", &LocalChange::PinDir { path: pins.clone() })
                .unwrap()
        );
        assert_eq!(journal.entries()[1].step, UndoStep::PinDir { path: pins });
        journal.finish().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn network_manager_is_not_asked_again_once_recorded() {
        let path = temp_path("nm");
        let mut journal = Journal::create(&path).unwrap();
        let step = UndoStep::NmManaged {
            interface: "dn-unit-nm".into(),
        };
        journal.record("lab", step.clone()).unwrap();
        let change = LocalChange::NmUnmanaged {
            interface: "dn-unit-nm".into(),
        };
        assert!(!journal.apply_local("lab", &change).unwrap());
        assert_eq!(journal.entries().len(), 1);
        journal.finish().unwrap();
    }

    #[tokio::test]
    async fn a_netlink_change_is_recorded_before_it_is_made() {
        let path = temp_path("netlink");
        let mut journal = Journal::create(&path).unwrap();
        let netlink = Netlink::connect().unwrap();
        // An index no link has: reading its addresses finds none, setting
        // one fails (ENODEV), after the "none" was recorded.
        let gone = crate::netlink::Link {
            index: u32::MAX - 7,
            name: "dn-gone-unit".into(),
            up: false,
        };
        let change = HostChange::GatewayAddress {
            link: gone,
            address: "10.77.0.1/24".parse().unwrap(),
        };
        let e = journal.apply("lab", &change, &netlink).await.unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(
                "network `lab`: setting the gateway address on `dn-gone-unit` failed: netlink: add address"
            ),
            "{text}"
        );
        assert!(matches!(
            e.source,
            crate::host::error::HostCause::Netlink(_)
        ));
        drop(journal);
        let Leftover::Pending { entries, .. } = read_leftover(&path).unwrap() else {
            panic!("journal not found");
        };
        assert_eq!(
            entries,
            [Entry {
                network: "lab".into(),
                step: UndoStep::Ipv4Addresses {
                    interface: "dn-gone-unit".into(),
                    addresses: Vec::new(),
                },
            }]
        );
        remove(&path).unwrap();
    }
}
