//! Compressed list files: gzip, xz and zstd, recognised by their magic bytes, always read through a byte limit.
//!
//! Shared by downloads (`fetch`) and by UT1 folders whose categories ship only
//! `domains.gz` / `domains.xz` (`parse::ut1`). It owns no I/O policy beyond the limit:
//! a stream that inflates past it is an error, never a truncated list (a zip bomb must not
//! exhaust memory or disk, and a cut list must not unblock sites).

use std::io::{self, Read, Write};

/// The default bound on a list's unpacked size: far above any real list (UT1's whole
/// archive inflates to about 100 MiB), far below what would hurt the server.
pub const DEFAULT_LIMIT: u64 = 256 * 1024 * 1024;

/// How a stream is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// Not compressed.
    Plain,
    /// gzip (`.gz`, `.tgz`).
    Gzip,
    /// xz (`.xz`).
    Xz,
    /// Zstandard (`.zst`).
    Zstd,
}

impl Packing {
    /// From the first bytes of the stream. The magic bytes decide, not the name: servers
    /// and mirrors mislabel files (a `.gz` URL served already inflated), and a name
    /// cannot turn a plain list into a compressed one.
    pub fn sniff(head: &[u8]) -> Packing {
        if head.starts_with(&[0x1f, 0x8b]) {
            Packing::Gzip
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Packing::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Packing::Zstd
        } else {
            Packing::Plain
        }
    }

    /// A reader that unpacks `inner`.
    pub fn reader<'a, R: Read + 'a>(self, inner: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Packing::Plain => Box::new(inner),
            Packing::Gzip => Box::new(flate2::read::MultiGzDecoder::new(inner)),
            Packing::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(inner)),
            Packing::Zstd => Box::new(zstd::stream::read::Decoder::new(inner)?),
        })
    }
}

/// A reader that fails (rather than stopping) once more than `limit` bytes came through.
pub struct Limited<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Limited<R> {
    /// Wrap `inner`.
    pub fn new(inner: R, limit: u64) -> Self {
        Self {
            inner,
            left: limit,
            limit,
        }
    }
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Ask for one byte more than allowed so an over-long stream is noticed.
        let want = buf
            .len()
            .min(usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            return Err(too_large(self.limit));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The error a [`Limited`] reader gives; [`is_too_large`] recognises it.
fn too_large(limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("more than {limit} bytes once decompressed"),
    )
}

/// Whether `e` is the size limit rather than a damaged stream.
pub fn is_too_large(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::FileTooLarge
}

/// Open `path`, sniff its packing and return its unpacked bytes, at most `limit` of them.
pub fn read_file(path: &std::path::Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut file = io::BufReader::new(std::fs::File::open(path)?);
    let packing = Packing::sniff(std::io::BufRead::fill_buf(&mut file)?);
    let mut out = Vec::new();
    Limited::new(packing.reader(file)?, limit).read_to_end(&mut out)?;
    Ok(out)
}

/// Unpack `from` into `to`, at most `limit` bytes; returns the bytes written.
pub fn unpack_to(
    packing: Packing,
    from: impl Read,
    to: &mut impl Write,
    limit: u64,
) -> io::Result<u64> {
    io::copy(&mut Limited::new(packing.reader(from)?, limit), to)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &[u8] = b"a.example\nb.example\n";

    fn packed(p: Packing) -> Vec<u8> {
        match p {
            Packing::Plain => TEXT.to_vec(),
            Packing::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(TEXT).unwrap();
                e.finish().unwrap()
            }
            Packing::Xz => {
                let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
                e.write_all(TEXT).unwrap();
                e.finish().unwrap()
            }
            Packing::Zstd => zstd::encode_all(TEXT, 1).unwrap(),
        }
    }

    #[test]
    fn every_packing_is_recognised_and_unpacked() {
        for p in [Packing::Plain, Packing::Gzip, Packing::Xz, Packing::Zstd] {
            let bytes = packed(p);
            assert_eq!(Packing::sniff(&bytes), p);
            let mut out = Vec::new();
            unpack_to(p, &bytes[..], &mut out, 1000).unwrap();
            assert_eq!(out, TEXT, "{p:?}");
        }
    }

    #[test]
    fn the_limit_is_an_error_not_a_cut() {
        // 10 MB of zeros packs into a few KB: the bomb is stopped at the limit.
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![0u8; 10_000_000]).unwrap();
        let bomb = e.finish().unwrap();
        assert!(bomb.len() < 100_000);
        let err = unpack_to(Packing::Gzip, &bomb[..], &mut io::sink(), 1_000_000).unwrap_err();
        assert!(is_too_large(&err), "{err}");
        // Exactly at the limit is fine.
        let n = unpack_to(Packing::Plain, TEXT, &mut io::sink(), TEXT.len() as u64).unwrap();
        assert_eq!(n, TEXT.len() as u64);
        assert!(unpack_to(Packing::Plain, TEXT, &mut io::sink(), TEXT.len() as u64 - 1).is_err());
    }

    #[test]
    fn a_damaged_stream_is_an_error() {
        let mut bytes = packed(Packing::Xz);
        bytes.truncate(bytes.len() / 2);
        assert!(unpack_to(Packing::Xz, &bytes[..], &mut io::sink(), 1000).is_err());
    }
}
