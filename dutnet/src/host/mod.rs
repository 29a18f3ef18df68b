//! What dutnet changes on the host (addresses, links, sysctls,
//! NetworkManager, reply routing, nftables, pins), each change with its
//! undo, and the journal that lets any later run put them back.
pub mod change;
pub mod error;
pub mod journal;
pub mod netmgr;
pub mod restore;
pub mod sysctl;

pub use self::{
    change::{HostChange, LocalChange},
    error::{HostCause, HostError, InterfaceProblem},
};
