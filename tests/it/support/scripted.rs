//! Authoritative servers that misbehave on purpose, for the recursion defect tests
//! (`tests/it/recursion_defects.rs`): a real hickory `Catalog` answers from zone text, and a
//! few scripted questions get the broken reply a real server out there has been seen to
//! send (an error for a QNAME-minimisation probe, records of the wrong type, a duplicated
//! CNAME, records outside the server's zones, NODATA without SOA). Every question is
//! recorded, so a test can check what the resolver asked.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Header, HeaderCounts, Metadata, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{Catalog, MessageResponseBuilder};

use super::{bind_udp_and_tcp, zone};

/// One scripted misbehaviour.
pub enum Script {
    /// Every NS question for a name strictly below `apex` gets `rcode` (a server that
    /// mishandles minimised probes); other questions are answered from the zone.
    NsBelowApex { apex: Name, rcode: ResponseCode },
    /// This exact question gets these answer records (AA, NOERROR, nothing else), whatever
    /// the zone holds; an empty list is NODATA without SOA.
    Answer {
        name: Name,
        qtype: RecordType,
        answers: Vec<Record>,
    },
    /// Every question gets `rcode` and nothing else (a server listed for a zone it refuses
    /// or cannot serve).
    Every { rcode: ResponseCode },
    /// Every question gets a non-authoritative NOERROR reply referring to these NS records
    /// (a lame server referring upward, e.g. to the root).
    Lame { referral: Vec<Record> },
}

/// A scripted reply.
struct Reply<'a> {
    rcode: ResponseCode,
    authoritative: bool,
    answers: &'a [Record],
    authorities: &'a [Record],
}

impl Script {
    /// The reply this script gives to a question, or None.
    fn reply(&self, name: &Name, qtype: RecordType) -> Option<Reply<'_>> {
        let reply = |rcode, answers| Reply {
            rcode,
            authoritative: true,
            answers,
            authorities: &[],
        };
        match self {
            Script::NsBelowApex { apex, rcode } => {
                (qtype == RecordType::NS && apex.zone_of(name) && name != apex)
                    .then(|| reply(*rcode, &[]))
            }
            Script::Answer {
                name: n,
                qtype: t,
                answers,
            } => (n == name && *t == qtype).then(|| reply(ResponseCode::NoError, answers)),
            Script::Every { rcode } => Some(reply(*rcode, &[])),
            Script::Lame { referral } => Some(Reply {
                rcode: ResponseCode::NoError,
                authoritative: false,
                answers: &[],
                authorities: referral,
            }),
        }
    }
}

/// A catalog with scripts in front of it.
struct Scripted {
    catalog: Catalog,
    scripts: Vec<Script>,
    seen: Arc<Mutex<Vec<String>>>,
}

#[async_trait::async_trait]
impl RequestHandler for Scripted {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut rh: R,
    ) -> ResponseInfo {
        let Ok(info) = request.request_info() else {
            return self.catalog.handle_request::<R, T>(request, rh).await;
        };
        let name: Name = info.query.name().into();
        let qtype = info.query.query_type();
        self.seen.lock().unwrap().push(format!("{name} {qtype}"));
        let Some(reply) = self.scripts.iter().find_map(|s| s.reply(&name, qtype)) else {
            return self.catalog.handle_request::<R, T>(request, rh).await;
        };
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.authoritative = reply.authoritative;
        meta.response_code = reply.rcode;
        let response = MessageResponseBuilder::from_message_request(request).build(
            meta,
            reply.answers.iter(),
            reply.authorities.iter(),
            [],
            [],
        );
        match rh.send_response(response).await {
            Ok(info) => info,
            Err(_) => ResponseInfo::from(Header {
                metadata: meta,
                counts: HeaderCounts::default(),
            }),
        }
    }
}

/// A running scripted authority.
pub struct ScriptedAuthority {
    seen: Arc<Mutex<Vec<String>>>,
    _server: Server<Scripted>,
}

impl ScriptedAuthority {
    /// Questions received so far, as "name. TYPE".
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// Serve `zones` (origin, zone text) on `bind`, with `scripts` answering first.
pub async fn scripted(
    bind: SocketAddr,
    zones: &[(&str, &str)],
    scripts: Vec<Script>,
) -> ScriptedAuthority {
    let mut catalog = Catalog::new();
    for (origin, text) in zones {
        let (name, handler) = zone(origin, text);
        catalog.upsert(name.into(), vec![handler]);
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut server = Server::new(Scripted {
        catalog,
        scripts,
        seen: seen.clone(),
    });
    let (udp, tcp) = bind_udp_and_tcp(bind).await;
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 32);
    ScriptedAuthority {
        seen,
        _server: server,
    }
}
