//! `BPF_PROG_TEST_RUN`: run a loaded TC program over one crafted frame.
use std::os::fd::{AsRawFd as _, BorrowedFd};

const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// The verdict and the frame as the program left it.
#[derive(Debug)]
pub struct TestRun {
    /// The program's return value (a TC action: -1 is TC_ACT_UNSPEC / TCX_NEXT).
    pub verdict: i32,
    pub frame: Vec<u8>,
}

/// The `test` member of `union bpf_attr` (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: [u32; 13],
}

/// Runs `program` once over `frame` (an Ethernet frame). The skb's device is
/// the loopback of the calling thread's network namespace.
pub fn run(program: BorrowedFd<'_>, frame: &[u8]) -> std::io::Result<TestRun> {
    run_on(program, frame, 1)
}

/// The leading fields of `struct __sk_buff` up to `ifindex`, the only one set.
#[repr(C)]
#[derive(Default)]
struct SkbContext {
    _before_ifindex: [u32; 10],
    ifindex: u32,
}

/// Runs `program` once over `frame` as if it arrived on interface `ifindex`
/// of the calling thread's network namespace (the kernel sets the packet type
/// from the frame's destination MAC and that interface's address).
pub fn run_on(program: BorrowedFd<'_>, frame: &[u8], ifindex: u32) -> std::io::Result<TestRun> {
    let ctx = SkbContext {
        ifindex,
        ..SkbContext::default()
    };
    // Room for programs that grow the frame (encapsulation, ICMP errors).
    let mut out = vec![0u8; frame.len() + 256];
    let mut attr = TestRunAttr {
        prog_fd: u32::try_from(program.as_raw_fd()).map_err(std::io::Error::other)?,
        data_size_in: u32::try_from(frame.len()).map_err(std::io::Error::other)?,
        data_size_out: u32::try_from(out.len()).map_err(std::io::Error::other)?,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: 1,
        ctx_size_in: u32::try_from(std::mem::size_of::<SkbContext>())
            .map_err(std::io::Error::other)?,
        ctx_in: (&raw const ctx) as u64,
        ..TestRunAttr::default()
    };
    // SAFETY: `attr` is a valid bpf_attr for BPF_PROG_TEST_RUN, and the input
    // and output buffers outlive the call with the sizes given.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &raw mut attr,
            std::mem::size_of::<TestRunAttr>(),
        )
    };
    if ret != 0 {
        return Err(std::io::Error::last_os_error());
    }
    out.truncate(attr.data_size_out as usize);
    Ok(TestRun {
        verdict: attr.retval as i32,
        frame: out,
    })
}
