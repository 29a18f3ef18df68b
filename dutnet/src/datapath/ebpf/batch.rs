//! Batched reads and deletes of a BPF hash map (`BPF_MAP_LOOKUP_BATCH`,
//! `BPF_MAP_DELETE_BATCH`, Linux >= 5.6): one system call per few thousand
//! entries instead of two per entry, so a sweep of a million flows costs a
//! few hundred calls. aya 0.14 has no batch operations; these are the two
//! commands the sweeper needs, over the map's file descriptor.
use std::{
    io,
    mem::{MaybeUninit, size_of},
    os::fd::{AsRawFd as _, BorrowedFd},
};

use aya::Pod;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// Entries asked for per call. A hash map's batch stops at a bucket
/// boundary, and a bucket never holds anywhere near this many entries.
const CHUNK: usize = 8192;

/// The `batch` member of `union bpf_attr` (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn bpf(command: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: `attr` is a valid bpf_attr prefix for the batch commands, and
    // the buffers it points at outlive the call with the sizes given.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command,
            std::ptr::from_mut(attr),
            size_of::<BatchAttr>(),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn map_fd(map: BorrowedFd<'_>) -> io::Result<u32> {
    u32::try_from(map.as_raw_fd()).map_err(io::Error::other)
}

/// Every entry of hash map `map`, read `CHUNK` at a time. Entries added or
/// removed meanwhile may or may not be seen, as with any walk of a live map.
pub fn read_all<K: Pod, V: Pod>(map: BorrowedFd<'_>) -> io::Result<Vec<(K, V)>> {
    let mut all = Vec::new();
    read_each(map, |key, value| all.push((key, value)))?;
    Ok(all)
}

/// Hands every entry of hash map `map` to `each`, holding `CHUNK` of them at
/// a time. The walk's position is a bucket, not a key: an entry removed
/// under it does not send it back to the start (as `bpf_map_get_next_key`
/// does once its key is gone), so no entry is seen twice.
pub fn read_each<K: Pod, V: Pod>(
    map: BorrowedFd<'_>,
    mut each: impl FnMut(K, V),
) -> io::Result<()> {
    let fd = map_fd(map)?;
    let mut keys: Vec<MaybeUninit<K>> = Vec::with_capacity(CHUNK);
    let mut values: Vec<MaybeUninit<V>> = Vec::with_capacity(CHUNK);
    keys.resize_with(CHUNK, MaybeUninit::uninit);
    values.resize_with(CHUNK, MaybeUninit::uninit);
    // A hash map's batch position is a bucket index (`u32`).
    let mut position: u32 = 0;
    let mut next: u32 = 0;
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                std::ptr::from_mut(&mut position) as u64
            },
            out_batch: std::ptr::from_mut(&mut next) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: fd,
            ..BatchAttr::default()
        };
        let result = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
        let filled = (attr.count as usize).min(CHUNK);
        for i in 0..filled {
            // SAFETY: the kernel wrote the first `count` keys and values.
            let (key, value) = unsafe { (keys[i].assume_init(), values[i].assume_init()) };
            each(key, value);
        }
        match result {
            Ok(()) => {}
            // ENOENT: the walk reached the end (with the last entries).
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Err(e) => return Err(e),
        }
        position = next;
        first = false;
    }
}

/// Deletes `keys` from hash map `map`; for each key, whether this call
/// removed it (`false`: it was already gone, removed by someone else).
pub fn delete<K: Pod>(map: BorrowedFd<'_>, keys: &[K]) -> io::Result<Vec<bool>> {
    let fd = map_fd(map)?;
    let mut deleted = vec![false; keys.len()];
    let mut at = 0;
    while at < keys.len() {
        let chunk = &keys[at..keys.len().min(at + CHUNK)];
        let mut attr = BatchAttr {
            keys: chunk.as_ptr() as u64,
            count: chunk.len() as u32,
            map_fd: fd,
            ..BatchAttr::default()
        };
        let result = bpf(BPF_MAP_DELETE_BATCH, &mut attr);
        // The kernel deletes in order and stops at the first key it cannot.
        let done = (attr.count as usize).min(chunk.len());
        deleted[at..at + done].fill(true);
        at += done;
        match result {
            Ok(()) if done == chunk.len() => {}
            Ok(()) => return Err(io::Error::other("BPF_MAP_DELETE_BATCH stopped early")),
            // That key was gone already: skip it and go on.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => at += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}
