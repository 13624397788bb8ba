//! The one hickory request handler every listener hands requests to (TCP, and the UDP
//! queries the fast path passes on): it turns a hickory `Request` into a pipeline
//! [`Question`], applies the per-client rate limit and the protocol prechecks (opcode,
//! class, type, EDNS version), and writes the pipeline's [`Reply`] back with the
//! request's EDNS answered. It decides nothing itself.

use std::sync::Arc;

use hickory_proto::op::{Edns, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::DNSClass;
use hickory_proto::serialize::binary::BinDecoder;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::zone_handler::Queries;

use crate::answer::Reply;
use crate::identity::{Credential, Named};
use crate::pipeline::{Pipeline, Question};
use crate::ratelimit::Verdict;
use crate::transport::tls::EncryptedMetrics;
use crate::transport::wire;

/// The hickory request handler: glue between hickory-server and the pipeline.
pub struct Handler {
    pipeline: Arc<Pipeline>,
    /// Counters of the encrypted listeners (None if they could not be registered).
    encrypted: Option<EncryptedMetrics>,
}

impl Handler {
    /// A handler answering through `pipeline` (registers the encrypted listeners' metrics
    /// on the pipeline's registry: make one per server).
    pub fn new(pipeline: Arc<Pipeline>) -> Self {
        let encrypted = EncryptedMetrics::register(pipeline.state().metrics().registry())
            .map_err(|e| tracing::error!("encrypted listener metrics not registered: {e}"))
            .ok();
        Self {
            pipeline,
            encrypted,
        }
    }

    /// The encrypted listeners' counters.
    pub fn encrypted_metrics(&self) -> Option<&EncryptedMetrics> {
        self.encrypted.as_ref()
    }

    /// Count a query from an encrypted listener (`transport`: "dot" or "doh") and say whom
    /// its credential names; None (counted as refused) when it names no known device, and
    /// the query must be refused before the pipeline so the listener is never an open
    /// resolver.
    pub fn admit(&self, credential: Credential<'_>, transport: &str) -> Option<Named> {
        if let Some(m) = &self.encrypted {
            m.queries.with_label_values(&[transport]).inc();
        }
        let now = self.pipeline.clock().now().as_second();
        let named = self.pipeline.state().identities().resolve(credential, now);
        if named.is_none()
            && let Some(m) = &self.encrypted
        {
            m.refused.with_label_values(&[transport]).inc();
        }
        named
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response: R,
    ) -> ResponseInfo {
        self.answer(request, response, true).await
    }
}

impl Handler {
    /// Answer one request (TCP, and UDP queries the fast path passes on). `check_limit`
    /// is false when the UDP fast path has already counted the query against the client's
    /// rate limit.
    pub async fn answer<R: ResponseHandler>(
        &self,
        request: &Request,
        response: R,
        check_limit: bool,
    ) -> ResponseInfo {
        self.answer_as(request, response, check_limit, Credential::None)
            .await
    }

    /// [`Handler::answer`] for a request that came with a [`Credential`] (the encrypted
    /// listeners: the device ID from the SNI or the DoH path). An encrypted credential that
    /// names no known device is answered REFUSED before the pipeline ([`Handler::admit`]).
    pub async fn answer_as<R: ResponseHandler>(
        &self,
        request: &Request,
        response: R,
        check_limit: bool,
        credential: Credential<'_>,
    ) -> ResponseInfo {
        if !credential.is_encrypted() {
            return self
                .answer_admitted(request, response, check_limit, credential, None)
                .await;
        }
        let transport = match request.protocol() {
            Protocol::Https => "doh",
            _ => "dot",
        };
        match self.admit(credential, transport) {
            Some(named) => {
                let admitted = Credential::Admitted(&named);
                let id = Some(&*named.device.id);
                self.answer_admitted(request, response, check_limit, admitted, id)
                    .await
            }
            None => {
                let builder = MessageResponseBuilder::from_message_request(request);
                send_error(response, request, ResponseCode::Refused, builder).await
            }
        }
    }

    /// Answer a request already admitted: rate-limited by `device` (the enrolled device's
    /// ID) when there is one, else by the client's address.
    pub async fn answer_admitted<R: ResponseHandler>(
        &self,
        request: &Request,
        response: R,
        check_limit: bool,
        credential: Credential<'_>,
        device: Option<&str>,
    ) -> ResponseInfo {
        let snap = self.pipeline.state().snapshot();
        let limits = &snap.config.ratelimit;
        let client = request.src().ip();
        let limiter = self.pipeline.limiter();
        let verdict = match (check_limit, device) {
            (false, _) => Verdict::Allow,
            (true, Some(id)) => limiter.query_device(client, id, limits),
            (true, None) => limiter.query(client, limits),
        };
        if verdict == Verdict::Drop {
            return failed(request);
        }
        let edns = request
            .edns
            .as_ref()
            .map(|e| response_edns(e, snap.config.server.edns_buffer_size));
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = &edns {
            builder.edns(e);
        }
        if let Some(check) = precheck(request) {
            self.pipeline.state().metrics().formerr.inc();
            if !check.echo_question
                && let Ok(none) = Queries::read(&mut BinDecoder::new(&[]), 0)
            {
                let mut bare = MessageResponseBuilder::new(&none, None);
                if let Some(e) = &edns {
                    bare.edns(e);
                }
                return send_error(response, request, check.code, bare).await;
            }
            return send_error(response, request, check.code, builder).await;
        }
        let Ok(info) = request.request_info() else {
            self.pipeline.state().metrics().formerr.inc();
            return send_error(response, request, ResponseCode::FormErr, builder).await;
        };
        if let Some(code) = wire::unanswerable(
            u16::from(info.query.query_type()),
            u16::from(info.query.query_class()),
        ) {
            return send_error(
                response,
                request,
                ResponseCode::from(0, code as u8),
                builder,
            )
            .await;
        }
        // Class ANY is answered from class IN, the only class resolved (as unbound does).
        let qclass = match info.query.query_class() {
            DNSClass::ANY => DNSClass::IN,
            c => c,
        };
        let q = Question {
            src: request.src(),
            name: info.query.name(),
            qtype: info.query.query_type(),
            qclass,
            edns: request.edns.as_ref(),
            credential,
        };
        let reply = self.pipeline.handle(&q).await;
        if reply.rcode == ResponseCode::Refused {
            let udp = request.protocol() == Protocol::Udp;
            match limiter.refused(client, limits, udp) {
                Verdict::Allow => {}
                Verdict::Drop => return failed(request),
                Verdict::Slip => {
                    let mut meta = Metadata::response_from_request(&request.metadata);
                    meta.recursion_available = true;
                    meta.response_code = ResponseCode::Refused;
                    meta.truncation = true;
                    return send(response, request, builder.build_no_records(meta)).await;
                }
            }
        }
        // The Extended DNS Error goes in our OPT record, so only to a client that sent one.
        let with_ede = match (&edns, &reply.ede) {
            (Some(e), Some(option)) => {
                let mut e = e.clone();
                e.options_mut().insert(option.clone());
                Some(e)
            }
            _ => None,
        };
        send_reply(response, request, reply, builder, with_ede.as_ref()).await
    }
}

/// An error answer decided before the pipeline.
struct Precheck {
    code: ResponseCode,
    /// False when the question itself is malformed and must not be sent back.
    echo_question: bool,
}

/// Requests we answer with an error before the pipeline: anything but a standard query
/// (NOTIMP), messages that are not a single question or whose question name uses a
/// compression pointer (FORMERR), and EDNS versions other than 0 (BADVERS with our OPT of
/// version 0, RFC 6891 §6.1.3).
fn precheck(request: &Request) -> Option<Precheck> {
    let fail = |code| {
        Some(Precheck {
            code,
            echo_question: true,
        })
    };
    if request.metadata.message_type != MessageType::Query {
        return fail(ResponseCode::FormErr);
    }
    if request.metadata.op_code != OpCode::Query {
        return fail(ResponseCode::NotImp);
    }
    if request.queries.queries().len() != 1 {
        return fail(ResponseCode::FormErr);
    }
    if wire::question_has_pointer(request.queries.as_bytes()) {
        return Some(Precheck {
            code: ResponseCode::FormErr,
            echo_question: false,
        });
    }
    if request.edns.as_ref().is_some_and(|e| e.version() != 0) {
        return fail(ResponseCode::BADVERS);
    }
    None
}

/// Our OPT record: the payload size we advertise (the configured one, whatever the client
/// offered), version 0, DO echoed.
fn response_edns(req: &Edns, ours: u16) -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(ours);
    e.set_dnssec_ok(req.flags().dnssec_ok);
    e
}

async fn send<'a, R: ResponseHandler>(
    mut rh: R,
    request: &Request,
    response: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
    >,
) -> ResponseInfo {
    match rh.send_response(response).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!("could not send response: {e}");
            failed(request)
        }
    }
}

async fn send_reply<'a, R: ResponseHandler>(
    rh: R,
    request: &Request,
    reply: Reply,
    mut builder: MessageResponseBuilder<'a>,
    edns: Option<&'a Edns>,
) -> ResponseInfo {
    if let Some(e) = edns {
        builder.edns(e);
    }
    let mut meta = Metadata::response_from_request(&request.metadata);
    meta.recursion_available = true;
    meta.authoritative = reply.authoritative;
    meta.response_code = reply.rcode;
    let response = builder.build(meta, reply.answers.iter(), reply.authorities.iter(), [], []);
    send(rh, request, response).await
}

async fn send_error<R: ResponseHandler>(
    rh: R,
    request: &Request,
    code: ResponseCode,
    builder: MessageResponseBuilder<'_>,
) -> ResponseInfo {
    // For an opcode we do not implement, no flag of the request means anything to us, so
    // none is echoed but RD (ISC genreport's `opcodeflg` test).
    let mut meta = request.metadata;
    if code == ResponseCode::NotImp {
        meta.checking_disabled = false;
        meta.authentic_data = false;
    }
    send(rh, request, builder.error_msg(&meta, code)).await
}

fn failed(request: &Request) -> ResponseInfo {
    let mut meta = Metadata::response_from_request(&request.metadata);
    meta.response_code = ResponseCode::ServFail;
    ResponseInfo::from(hickory_proto::op::Header {
        metadata: meta,
        counts: Default::default(),
    })
}
