//! Host settings dutnet changes (sysctls, NetworkManager) and the undo journal
//! that lets any later run put them back.
pub mod journal;
pub mod netmgr;
pub mod sysctl;
