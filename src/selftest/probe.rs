//! One test query on the wire: sent over UDP from a chosen source address (so the server
//! places it in that source's group), and its answer reduced to what the policy decides
//! about: the response code, the Extended DNS Error, and a CNAME target.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Response code.
    pub rcode: ResponseCode,
    /// Extended DNS Error (info-code, text), if any.
    pub ede: Option<(u16, String)>,
    /// CNAME targets in the answer section (with the trailing dot).
    pub cnames: Vec<String>,
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.rcode)?;
        if let Some((code, text)) = &self.ede {
            write!(f, " EDE {code} \"{text}\"")?;
        }
        if let Some(c) = self.cnames.first() {
            write!(f, " CNAME {c}")?;
        }
        Ok(())
    }
}

/// Why a probe got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The source address cannot be bound here.
    #[error("cannot send from {0}: {1}")]
    Bind(IpAddr, std::io::Error),
    /// Sending or receiving failed, or timed out.
    #[error("no answer from {0}: {1}")]
    Io(SocketAddr, std::io::Error),
    /// The name is not a DNS name.
    #[error("bad name {0:?}")]
    Name(String),
    /// The reply could not be decoded or was not ours.
    #[error("bad reply: {0}")]
    Reply(String),
}

/// Ask `server` for `name` (A) from `source`, waiting up to `timeout`.
pub fn ask(
    source: IpAddr,
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Result<Answer, ProbeError> {
    let sock =
        UdpSocket::bind(SocketAddr::new(source, 0)).map_err(|e| ProbeError::Bind(source, e))?;
    sock.set_read_timeout(Some(timeout))
        .map_err(|e| ProbeError::Io(server, e))?;
    let id: u16 = rand::random();
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    let fqdn = Name::from_ascii(format!("{}.", name.trim_end_matches('.')))
        .map_err(|_| ProbeError::Name(name.to_owned()))?;
    m.add_query(Query::query(fqdn, RecordType::A));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    m.edns = Some(edns);
    let bytes = m.to_bytes().map_err(|e| ProbeError::Reply(e.to_string()))?;
    sock.send_to(&bytes, server)
        .map_err(|e| ProbeError::Io(server, e))?;
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from) = sock
            .recv_from(&mut buf)
            .map_err(|e| ProbeError::Io(server, e))?;
        let Some(reply) = buf.get(..n).and_then(|b| Message::from_bytes(b).ok()) else {
            return Err(ProbeError::Reply("undecodable".into()));
        };
        // Anything else (a stray datagram) is not the answer.
        if from == server && reply.metadata.id == id {
            return Ok(reduce(&reply));
        }
    }
}

fn reduce(reply: &Message) -> Answer {
    let ede = reply.edns.as_ref().and_then(|e| {
        match e
            .options()
            .get(EdnsCode::from(crate::answer::ede::OPTION_CODE))?
        {
            EdnsOption::Unknown(_, data) => crate::answer::ede::parse(data),
            _ => None,
        }
    });
    let cnames = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::CNAME(c) => Some(c.0.to_ascii().to_ascii_lowercase()),
            _ => None,
        })
        .collect();
    Answer {
        rcode: reply.metadata.response_code,
        ede,
        cnames,
    }
}
