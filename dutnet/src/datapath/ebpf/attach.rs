//! Attaching a TC program to one hook of one interface, and undoing exactly that.
//!
//! TCX links (kernel >= 6.6) are preferred: they are owned by dutnet's file
//! descriptors, so a dutnet killed with SIGKILL leaves no program behind. On
//! older kernels the programs go on a clsact qdisc over netlink; dutnet adds
//! that qdisc only when it is missing and removes it only if it added it.
use aya::{
    programs::{
        LinkOrder, SchedClassifier, TcAttachType,
        tc::{self, NlOptions, SchedClassifierLinkId, TcAttachOptions, TcError},
    },
    util::KernelVersion,
};

use super::EbpfError;

/// Set to `tcx` or `netlink` to force an attach mechanism (the tests use it to
/// cover the pre-6.6 path on a new kernel).
pub const TC_ATTACH_ENV: &str = "DUTNET_TC_ATTACH";

/// How TC programs are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcAttachMode {
    /// bpf_link based TCX (kernel >= 6.6).
    Tcx,
    /// A clsact qdisc and a direct-action cls_bpf filter, over netlink.
    Netlink,
}

impl TcAttachMode {
    /// TCX when the kernel has it, unless [`TC_ATTACH_ENV`] says otherwise.
    #[must_use]
    pub fn detect() -> Self {
        match std::env::var(TC_ATTACH_ENV).as_deref() {
            Ok("netlink") => Self::Netlink,
            Ok("tcx") => Self::Tcx,
            _ => match KernelVersion::current() {
                Ok(version) if version >= KernelVersion::new(6, 6, 0) => Self::Tcx,
                _ => Self::Netlink,
            },
        }
    }
}

/// Makes sure a clsact qdisc is on `iface`. Returns whether dutnet added it.
pub fn ensure_clsact(iface: &str, ifindex: u32) -> Result<bool, EbpfError> {
    match tc::qdisc_add_clsact(iface) {
        Ok(()) => Ok(true),
        Err(TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(e) => Err(EbpfError::Netlink {
            call: "add clsact qdisc",
            ifindex,
            source: std::io::Error::other(e),
        }),
    }
}

/// Attaches `program` to the `hook` of `iface`.
pub fn attach(
    program: &mut SchedClassifier,
    name: &'static str,
    iface: &str,
    hook: TcAttachType,
    mode: TcAttachMode,
) -> Result<SchedClassifierLinkId, EbpfError> {
    let options = match mode {
        TcAttachMode::Tcx => TcAttachOptions::TcxOrder(LinkOrder::default()),
        TcAttachMode::Netlink => TcAttachOptions::Netlink(NlOptions::default()),
    };
    program
        .attach_with_options(iface, hook, options)
        .map_err(|source| EbpfError::Attach {
            program: name,
            iface: iface.to_owned(),
            source,
        })
}

/// Removes the clsact qdisc dutnet added to `ifindex` (and with it any filter
/// still on it, which at this point can only be dutnet's).
pub fn remove_clsact(ifindex: u32) -> Result<(), EbpfError> {
    use rtnetlink::packet_route::tc::TcHandle;

    let netlink_error = |source: std::io::Error| EbpfError::Netlink {
        call: "delete clsact qdisc",
        ifindex,
        source,
    };
    // The datapath API is synchronous (aya is); run the one rtnetlink request
    // on its own thread so this works inside and outside a tokio runtime.
    let request = move || -> std::io::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        runtime.block_on(async move {
            let (connection, handle, _) = rtnetlink::new_connection()?;
            tokio::spawn(connection);
            let index = i32::try_from(ifindex).map_err(std::io::Error::other)?;
            let mut delete = handle.qdisc().del(index);
            let header = &mut delete.message_mut().header;
            header.parent = TcHandle::CLSACT;
            header.handle = TcHandle::from(0xffff_0000);
            delete.execute().await.map_err(std::io::Error::other)
        })
    };
    std::thread::spawn(request)
        .join()
        .map_err(|_| netlink_error(std::io::Error::other("netlink thread panicked")))?
        .map_err(netlink_error)
}

/// Names of the TCX programs on `iface`'s ingress and egress hooks, in run
/// order (any owner, not only dutnet). Attachment can only be checked this
/// way: TCX links are invisible to `tc filter show`.
pub fn tcx_program_names(iface: &str) -> Result<Vec<String>, EbpfError> {
    let mut names = Vec::new();
    for hook in [TcAttachType::Ingress, TcAttachType::Egress] {
        let (_, programs) =
            SchedClassifier::query_tcx(iface, hook).map_err(|source| EbpfError::Attach {
                program: "query_tcx",
                iface: iface.to_owned(),
                source,
            })?;
        names.extend(
            programs
                .iter()
                .map(|p| p.name_as_str().unwrap_or("?").to_owned()),
        );
    }
    Ok(names)
}
