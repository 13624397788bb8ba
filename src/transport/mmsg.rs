//! Batched UDP I/O with `recvmmsg`/`sendmmsg` (Linux): up to [`BATCH`] datagrams per
//! system call each way.
//!
//! Profiling the fast path under load showed the time going to the kernel — two system
//! calls and a scheduler round trip per query — not to parsing or policy. Reading and
//! writing a batch at a time divides that by the batch size when the server is busy, and
//! costs nothing when it is not (a batch of one is one call, as before).
//!
//! This is the only module with `unsafe`: the two calls fill and read C structures. The
//! message headers are built on the stack for each call and point only into buffers that
//! outlive the call, so no pointer is kept across calls.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams per call.
pub const BATCH: usize = 32;
/// Largest datagram read (bigger ones are truncated and fail to parse: FORMERR path).
pub const BUF: usize = 4096;

/// Receive buffers for one batch.
pub struct RecvBatch {
    bufs: Box<[[u8; BUF]]>,
    addrs: Box<[libc::sockaddr_storage]>,
    lens: [usize; BATCH],
    srcs: [Option<SocketAddr>; BATCH],
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    /// Empty buffers.
    pub fn new() -> Self {
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
        let zero: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        Self {
            bufs: vec![[0u8; BUF]; BATCH].into_boxed_slice(),
            addrs: vec![zero; BATCH].into_boxed_slice(),
            lens: [0; BATCH],
            srcs: [None; BATCH],
        }
    }

    /// Read up to [`BATCH`] datagrams without blocking; returns how many (WouldBlock when
    /// none is waiting).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // SAFETY: iovec and mmsghdr are plain C structs; zeroed is a valid initial state.
        let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for i in 0..BATCH {
            iovs[i].iov_base = self.bufs[i].as_mut_ptr().cast();
            iovs[i].iov_len = BUF;
            hdrs[i].msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            hdrs[i].msg_hdr.msg_namelen =
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at a live buffer and address slot of `self` and at an
        // iovec on this stack frame, all valid for the duration of the call; the kernel
        // writes at most the lengths given.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, hdr) in hdrs.iter().enumerate().take(n) {
            self.lens[i] = (hdr.msg_len as usize).min(BUF);
            self.srcs[i] = to_socket_addr(&self.addrs[i]);
        }
        Ok(n)
    }

    /// Datagram `i` of the last batch and its sender.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        Some((&self.bufs.get(i)?[..self.lens[i]], self.srcs[i]?))
    }
}

fn to_socket_addr(a: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(a.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in, which it can.
            let v4 = unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let v6 = unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(v6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Send `msgs` (payload, destination) in as few calls as the kernel allows; returns how
/// many went (WouldBlock if none could).
pub fn send(fd: RawFd, msgs: &[(&[u8], &socket2::SockAddr)]) -> io::Result<usize> {
    let n = msgs.len().min(BATCH);
    // SAFETY: plain C structs, zeroed is valid.
    let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (i, (payload, dst)) in msgs.iter().take(n).enumerate() {
        iovs[i].iov_base = payload.as_ptr() as *mut libc::c_void;
        iovs[i].iov_len = payload.len();
        hdrs[i].msg_hdr.msg_name = dst.as_ptr() as *mut libc::c_void;
        hdrs[i].msg_hdr.msg_namelen = dst.len();
        hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the headers point at the caller's payloads and addresses and at iovecs on
    // this stack frame, all alive for the call; the kernel only reads them.
    let sent =
        unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}
