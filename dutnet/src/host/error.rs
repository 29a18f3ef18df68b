//! What went wrong changing (or putting back) the host, and where.
use std::path::PathBuf;

use crate::{
    datapath::nft::{NftError, docker::DockerError},
    host::{journal::JournalError, sysctl::SysctlError},
    netlink::NetlinkError,
};

/// A host change, or its undo, that failed: the network it was for, the
/// step, the interface it concerned and the typed cause.
#[derive(Debug, thiserror::Error)]
#[error(
    "{}{step}{} failed: {source}",
    in_network(.network),
    on_interface(.interface.as_deref())
)]
pub struct HostError {
    /// The network the change was made for; empty for shared host state
    /// changed outside any one network's bring-up.
    pub network: String,
    /// What dutnet was doing, e.g. "setting the gateway address".
    pub step: &'static str,
    /// The interface concerned, when there is one.
    pub interface: Option<String>,
    #[source]
    pub source: HostCause,
}

fn in_network(network: &str) -> String {
    if network.is_empty() {
        String::new()
    } else {
        format!("network `{network}`: ")
    }
}

fn on_interface(interface: Option<&str>) -> String {
    interface.map_or_else(String::new, |i| format!(" on `{i}`"))
}

impl HostError {
    /// A failed `step` concerning `interface`, for no network yet (see
    /// [`Self::for_network`]).
    pub fn new(step: &'static str, interface: Option<&str>, source: impl Into<HostCause>) -> Self {
        Self {
            network: String::new(),
            step,
            interface: interface.map(str::to_owned),
            source: source.into(),
        }
    }

    /// The same error, said to be `network`'s (kept when it already names
    /// one).
    #[must_use]
    pub fn for_network(mut self, network: &str) -> Self {
        if self.network.is_empty() {
            network.clone_into(&mut self.network);
        }
        self
    }
}

/// Why a host change failed.
#[derive(Debug, thiserror::Error)]
pub enum HostCause {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error(transparent)]
    ForeignChain(#[from] DockerError),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Interface(#[from] InterfaceProblem),
}

/// An interface the configuration relies on is missing or unusable; each
/// says what to change.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InterfaceProblem {
    #[error("upstream_interface `{name}` does not exist")]
    UpstreamMissing { name: String },
    #[error("there is no IPv4 default route to pick the upstream from; set `upstream_interface`")]
    NoDefaultRoute,
    #[error("the default route's interface (index {index}) vanished")]
    DefaultRouteVanished { index: u32 },
    #[error("the upstream interface is the DUT interface `{name}`; set `upstream_interface`")]
    UpstreamIsDut { name: String },
    #[error(
        "the upstream interface `{name}` has no IPv4 address to masquerade behind; give it one or set `upstream_interface`"
    )]
    NoMasqueradeAddress { name: String },
    #[error("no upstream interface to masquerade through; set `upstream_interface`")]
    NoUpstream,
    #[error("public_interface `{name}` does not exist")]
    PublicMissing { name: String },
    #[error("1:1 NAT needs an upstream interface")]
    NoPublicInterface,
    #[error(
        "the VLAN sub-interface name `{name}` is longer than 15 characters; give the public interface a shorter name (public_interface)"
    )]
    VlanNameTooLong { name: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_network_step_interface_and_cause() {
        let cause = NetlinkError {
            call: "add address",
            subject: "10.0.0.1/24".into(),
            source: std::io::Error::from_raw_os_error(libc::EPERM),
        };
        let e =
            HostError::new("setting the gateway address", Some("eth1"), cause).for_network("lab");
        let text = e.to_string();
        assert!(
            text.starts_with("network `lab`: setting the gateway address on `eth1` failed: netlink: add address (10.0.0.1/24) failed:"),
            "{text}"
        );
        assert!(matches!(
            std::error::Error::source(&e).and_then(|s| s.downcast_ref::<HostCause>()),
            Some(HostCause::Netlink(_))
        ));
        // A network already named is kept; shared state names none.
        assert!(
            e.for_network("other")
                .to_string()
                .starts_with("network `lab`")
        );
        let shared = HostError::new(
            "finding the upstream interface",
            None,
            InterfaceProblem::NoDefaultRoute,
        );
        assert_eq!(
            shared.to_string(),
            "finding the upstream interface failed: there is no IPv4 default route to pick the upstream from; set `upstream_interface`"
        );
    }
}
