//! A datapath that only remembers what it was asked (tests of the daemon's
//! logic without root, as aya's `sys/fake.rs` does for syscalls).
use std::collections::BTreeMap;

use super::{
    Carrier, Datapath, DatapathError, DutNetwork, NatPorts, PublicChange, ebpf::EbpfError,
    filter::FilterPlan,
};

/// What the fake holds; `fail_attach` makes the next attaches fail.
#[derive(Debug, Default)]
pub struct FakeDatapath {
    pub attached: BTreeMap<String, DutNetwork>,
    /// Every call, in order (`attach dn-a`, `set_public dn-a Add(..)`).
    pub calls: Vec<String>,
    pub fail_attach: bool,
    pub fail_public: bool,
}

fn refused(iface: &str) -> DatapathError {
    EbpfError::NotAttached {
        iface: iface.to_owned(),
    }
    .into()
}

impl Datapath for FakeDatapath {
    fn attach(&mut self, network: &DutNetwork) -> Result<(), DatapathError> {
        self.calls.push(format!("attach {}", network.iface));
        if self.fail_attach {
            return Err(refused(&network.iface));
        }
        self.attached
            .entry(network.iface.clone())
            .or_insert_with(|| network.clone());
        Ok(())
    }

    fn detach(&mut self, iface: &str) -> Result<(), DatapathError> {
        self.calls.push(format!("detach {iface}"));
        self.attached.remove(iface);
        Ok(())
    }

    fn set_filter(
        &mut self,
        iface: &str,
        filter: Option<&FilterPlan>,
    ) -> Result<(), DatapathError> {
        self.calls
            .push(format!("set_filter {iface} {}", filter.is_some()));
        if let Some(n) = self.attached.get_mut(iface) {
            n.filter = filter.cloned();
        }
        Ok(())
    }

    fn set_public(&mut self, iface: &str, change: PublicChange) -> Result<(), DatapathError> {
        self.calls.push(format!("set_public {iface} {change:?}"));
        if self.fail_public {
            return Err(refused(iface));
        }
        if let Some(public) = self
            .attached
            .get_mut(iface)
            .and_then(|n| n.nat.public_mut())
        {
            match change {
                PublicChange::Add(p) => public.push(p),
                PublicChange::Remove(p) => public.retain(|q| *q != p),
            }
        }
        Ok(())
    }

    fn carrier(&self, iface: &str) -> Carrier {
        if self.attached.contains_key(iface) {
            Carrier::Nft
        } else {
            Carrier::None
        }
    }

    fn planned(&self, _: &str) -> Carrier {
        Carrier::Nft
    }

    fn nat_ports(&self, _: &str) -> NatPorts {
        NatPorts::default()
    }

    fn shutdown(&mut self) -> Result<(), DatapathError> {
        self.attached.clear();
        Ok(())
    }
}
