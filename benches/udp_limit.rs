//! The physical limit: the fastest a DNS server can answer UDP on this machine.
//!
//! A minimal responder that does no DNS work beyond echoing the question: `recvmmsg` a batch
//! of up to 64 datagrams, write each reply in place, `sendmmsg` the batch back. One thread per
//! `SO_REUSEPORT` socket, so the kernel spreads clients over the threads as it does for
//! Chaperone and the peers. `benches/peers.sh` measures it with the same dnsperf client and
//! query file as the real servers and prints Chaperone's QPS as a fraction of it.
//!
//! Answers: an A question gets one A record (192.0.2.1), an AAAA question one AAAA record
//! (2001:db8::1), any other type (HTTPS, ...) NODATA (NOERROR, no answer), all with TTL 300
//! and RA set: about the work of a cache hit, without the lookup. A datagram that is not a
//! single-question query (short, a response, a compressed or overlong name) is dropped,
//! never answered and never a panic. It must not grow into a resolver.
//!
//!     cargo bench --bench udp_limit -- --listen 127.0.0.1:15390 --threads 2
//!
//! Runs until killed. Linux only (recvmmsg/sendmmsg).

use std::net::SocketAddr;
use std::os::fd::AsRawFd;

const BATCH: usize = 64;
/// Replies grow by at most one AAAA record (28 bytes) over the query they answer.
const BUF: usize = 1500;
const TTL: u32 = 300;

fn main() {
    let (listen, threads) = match parse_args() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("udp_limit: {e}\nusage: udp_limit [--listen ADDR:PORT] [--threads N]");
            std::process::exit(2);
        }
    };
    let mut handles = Vec::new();
    for _ in 0..threads {
        let socket = match bind(listen) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("udp_limit: bind {listen}: {e}");
                std::process::exit(1);
            }
        };
        handles.push(std::thread::spawn(move || serve(&socket)));
    }
    eprintln!("udp_limit: answering on {listen} with {threads} thread(s)");
    for h in handles {
        let _ = h.join();
    }
}

fn parse_args() -> Result<(SocketAddr, usize), String> {
    let mut listen: SocketAddr = "127.0.0.1:15390".parse().map_err(|e| format!("{e}"))?;
    let mut threads = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                let v = args.next().ok_or("--listen needs ADDR:PORT")?;
                listen = v.parse().map_err(|e| format!("--listen {v}: {e}"))?;
            }
            "--threads" => {
                let v = args.next().ok_or("--threads needs N")?;
                threads = v.parse().map_err(|e| format!("--threads {v}: {e}"))?;
            }
            // `cargo bench` passes --bench to every bench binary.
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    Ok((listen, threads))
}

fn bind(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    // Large buffers as a tuned server would have: the client bursts up to -q outstanding.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// One socket's loop: receive a batch, answer it in place, send the answers back.
fn serve(socket: &socket2::Socket) {
    let fd = socket.as_raw_fd();
    let mut bufs = vec![[0u8; BUF]; BATCH];
    // SAFETY: all-zero is a valid value for these plain C structs.
    let mut addrs: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut iovs: Vec<libc::iovec> = Vec::with_capacity(BATCH);
    for buf in bufs.iter_mut() {
        iovs.push(libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: BUF,
        });
    }
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut out: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut out_iovs: Vec<libc::iovec> = iovs.clone();
    loop {
        for i in 0..BATCH {
            let hdr = &mut msgs[i].msg_hdr;
            hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut iovs[i];
            hdr.msg_iovlen = 1;
            msgs[i].msg_len = 0;
        }
        // SAFETY: msgs points at BATCH valid headers whose buffers outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n <= 0 {
            continue; // EINTR or a transient error: try again.
        }
        let mut count = 0usize;
        for i in 0..n as usize {
            let len = msgs[i].msg_len as usize;
            let Some(reply_len) = answer(&mut bufs[i], len) else {
                continue;
            };
            out_iovs[count] = libc::iovec {
                iov_base: bufs[i].as_mut_ptr().cast(),
                iov_len: reply_len,
            };
            let hdr = &mut out[count].msg_hdr;
            hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = msgs[i].msg_hdr.msg_namelen;
            hdr.msg_iov = &mut out_iovs[count];
            hdr.msg_iovlen = 1;
            count += 1;
        }
        send_all(fd, &mut out[..count]);
    }
}

/// Sends every reply, resuming after a partial `sendmmsg`; gives up on a batch on error
/// (the client counts it as lost, as it would for a real server).
fn send_all(fd: i32, out: &mut [libc::mmsghdr]) {
    let mut sent = 0usize;
    while sent < out.len() {
        let rest = &mut out[sent..];
        // SAFETY: rest points at valid headers whose buffers outlive the call.
        let n = unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as u32, 0) };
        if n <= 0 {
            return;
        }
        sent += n as usize;
    }
}

/// Turns the query in `buf[..len]` into its reply in place; `None` drops the datagram.
fn answer(buf: &mut [u8; BUF], len: usize) -> Option<usize> {
    if !(12..=512).contains(&len) {
        return None;
    }
    let flags = u16::from_be_bytes([buf[2], buf[3]]);
    let qdcount = u16::from_be_bytes([buf[4], buf[5]]);
    // Only plain queries (QR=0, opcode 0) with exactly one question.
    if flags & 0x8000 != 0 || (flags >> 11) & 0xf != 0 || qdcount != 1 {
        return None;
    }
    let qend = question_end(&buf[..len])?;
    let qtype = u16::from_be_bytes([buf[qend - 4], buf[qend - 3]]);
    let rdata: &[u8] = match qtype {
        1 => &[192, 0, 2, 1],
        28 => &[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        _ => &[],
    };
    // QR, keep opcode and RD, set RA, rcode NOERROR.
    let reply_flags = 0x8000 | (flags & 0x0100) | 0x0080;
    buf[2..4].copy_from_slice(&reply_flags.to_be_bytes());
    let ancount: u16 = if rdata.is_empty() { 0 } else { 1 };
    buf[6..8].copy_from_slice(&ancount.to_be_bytes());
    buf[8..12].fill(0); // no authority, no additional (an OPT in the query is not echoed)
    let mut at = qend;
    if !rdata.is_empty() {
        // Name: a pointer to the question's name at offset 12.
        let rr_head = [0xc0, 0x0c];
        buf[at..at + 2].copy_from_slice(&rr_head);
        buf[at + 2..at + 4].copy_from_slice(&qtype.to_be_bytes());
        buf[at + 4..at + 6].copy_from_slice(&1u16.to_be_bytes());
        buf[at + 6..at + 10].copy_from_slice(&TTL.to_be_bytes());
        buf[at + 10..at + 12].copy_from_slice(&(rdata.len() as u16).to_be_bytes());
        at += 12;
        buf[at..at + rdata.len()].copy_from_slice(rdata);
        at += rdata.len();
    }
    Some(at)
}

/// The offset just past the question (name, type, class), or `None` if it does not fit,
/// uses compression or is longer than a name may be.
fn question_end(msg: &[u8]) -> Option<usize> {
    let mut at = 12usize;
    loop {
        let label = *msg.get(at)? as usize;
        if label == 0 {
            at += 1;
            break;
        }
        if label & 0xc0 != 0 {
            return None;
        }
        at += 1 + label;
        if at - 12 > 255 {
            return None;
        }
    }
    let end = at + 4;
    (end <= msg.len()).then_some(end)
}
