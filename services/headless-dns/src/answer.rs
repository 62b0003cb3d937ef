//! How a query is answered from a [`Zone`]: authoritative answers, NXDOMAIN and empty answers
//! with an SOA for negative caching, and UDP truncation so that resolvers retry over TCP.

use hickory_proto::op::{Edns, Header, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_proto::xfer::Protocol;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};

use crate::zone::{DnsMode, Zone};

/// Largest UDP payload the server agrees to send to an EDNS client, whatever the client offers.
const MAX_EDNS_PAYLOAD: u16 = 4096;
/// Payload limit for UDP clients without EDNS (RFC 1035).
const CLASSIC_UDP_PAYLOAD: u16 = 512;

/// Answers every query from its zone. Every answer is authoritative (AA), has RA set, echoes the
/// query id and question, and carries an OPT record when the query had one. Negative answers
/// (NXDOMAIN, or an existing name without records of the asked type) carry an SOA of the root
/// zone whose TTL and minimum are the zone's TTL.
pub(crate) struct ZoneHandler {
    pub(crate) zone: Zone,
}

/// What a query resolves to, before any truncation.
struct Answer {
    code: ResponseCode,
    answers: Vec<Record>,
    authority: Vec<Record>,
    /// The A/AAAA records of SRV targets, as cluster DNS adds them.
    additionals: Vec<Record>,
}

impl Answer {
    fn code_only(code: ResponseCode) -> Answer {
        Answer {
            code,
            answers: Vec::new(),
            authority: Vec::new(),
            additionals: Vec::new(),
        }
    }
}

impl ZoneHandler {
    fn answer(&self, request: &Request, mode: DnsMode) -> Answer {
        match mode {
            DnsMode::ServFail => return Answer::code_only(ResponseCode::ServFail),
            DnsMode::Refused => return Answer::code_only(ResponseCode::Refused),
            DnsMode::Normal | DnsMode::Drop | DnsMode::BrokenTcp => {}
        }
        if request.message_type() != MessageType::Query || request.op_code() != OpCode::Query {
            return Answer::code_only(ResponseCode::NotImp);
        }
        let [query] = request.queries() else {
            return Answer::code_only(ResponseCode::FormErr);
        };
        let zone_ttl = self.zone.ttl();
        // Answer with the name as the client spelt it: resolvers may check the case (0x20).
        let mut owner = query.original().name().clone();
        let mut found = self.zone.records(&query.name().to_string());
        // An alias is answered with its CNAME and what its target answers, as far as the zone
        // knows it (a chain longer than 8 is cut: the client follows the rest or gives up).
        let mut chain = Vec::new();
        for _ in 0..8 {
            let Some(records) = &found else { break };
            let (Some(target), false) = (&records.cname, query.query_type() == RecordType::CNAME)
            else {
                break;
            };
            let Some(target_name) = fqdn(target) else {
                break;
            };
            let ttl = records.ttl.unwrap_or(zone_ttl);
            let cname = RData::CNAME(hickory_proto::rr::rdata::CNAME(target_name.clone()));
            chain.push(Record::from_rdata(owner.clone(), ttl, cname));
            owner = target_name;
            found = self.zone.records(target);
        }
        let Some(records) = found else {
            return Answer {
                code: ResponseCode::NXDomain,
                answers: chain,
                authority: vec![soa(zone_ttl)],
                additionals: Vec::new(),
            };
        };
        let ttl = records.ttl.unwrap_or(zone_ttl);
        if let Some(other) = records.answered_as.as_deref().and_then(fqdn) {
            owner = other;
        }
        let answers: Vec<Record> = match query.query_type() {
            RecordType::A => records
                .a
                .iter()
                .map(|ip| Record::from_rdata(owner.clone(), ttl, RData::A(A(*ip))))
                .collect(),
            RecordType::AAAA => records
                .aaaa
                .iter()
                .map(|ip| Record::from_rdata(owner.clone(), ttl, RData::AAAA(AAAA(*ip))))
                .collect(),
            RecordType::SRV => records
                .srv
                .iter()
                .filter_map(|r| {
                    let target = fqdn(&r.target)?;
                    let srv = SRV::new(r.priority, r.weight, r.port, target);
                    Some(Record::from_rdata(owner.clone(), ttl, RData::SRV(srv)))
                })
                .collect(),
            _ => Vec::new(),
        };
        let additionals: Vec<Record> = if query.query_type() == RecordType::SRV {
            records
                .srv
                .iter()
                .filter_map(|r| {
                    Some((
                        Name::from_ascii(&r.target).ok()?,
                        self.zone.records(&r.target)?,
                    ))
                })
                .flat_map(|(name, target)| {
                    let v4 = target
                        .a
                        .into_iter()
                        .map(|ip| Record::from_rdata(name.clone(), ttl, RData::A(A(ip))));
                    let v6 = target
                        .aaaa
                        .into_iter()
                        .map(|ip| Record::from_rdata(name.clone(), ttl, RData::AAAA(AAAA(ip))));
                    v4.chain(v6).collect::<Vec<_>>()
                })
                .collect()
        } else {
            Vec::new()
        };
        let authority = if answers.is_empty() {
            vec![soa(zone_ttl)]
        } else {
            Vec::new()
        };
        chain.extend(answers);
        Answer {
            code: ResponseCode::NoError,
            answers: chain,
            authority,
            additionals,
        }
    }
}

/// `name` as a fully qualified DNS name (a final dot added if it has none).
fn fqdn(name: &str) -> Option<Name> {
    let mut name = Name::from_ascii(name).ok()?;
    name.set_fqdn(true);
    Some(name)
}

/// The SOA of the root zone, whose TTL and minimum bound negative caching to `ttl`.
fn soa(ttl: u32) -> Record {
    let name = |text: &str| Name::from_ascii(text).unwrap_or_else(|_| Name::root());
    let soa = SOA::new(
        name("ns.dns.cluster.local."),
        name("hostmaster.cluster.local."),
        1,
        60,
        60,
        600,
        ttl,
    );
    Record::from_rdata(Name::root(), ttl, RData::SOA(soa))
}

/// How many of `answers` fit in `limit` bytes along with the header, question and OPT record.
/// `None` when they all fit (no truncation needed).
fn answers_that_fit(
    header: &Header,
    request: &Request,
    answers: &[Record],
    authority: &[Record],
    edns: Option<&Edns>,
    limit: u16,
) -> Option<usize> {
    // Encode exactly as hickory-server will (it re-emits the query as received, which changes
    // name compression), with no size limit, and measure.
    let encoded_len = |answer_count: usize, with_authority: bool| {
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = edns {
            builder.edns(edns.clone());
        }
        let authority = if with_authority { authority } else { &[] };
        let response = builder.build(
            *header,
            answers[..answer_count].iter(),
            std::iter::empty(),
            authority.iter(),
            std::iter::empty(),
        );
        let mut buffer = Vec::with_capacity(4096);
        let mut encoder = BinEncoder::new(&mut buffer);
        match response.destructive_emit(&mut encoder) {
            Ok(_) => buffer.len(),
            Err(_) => usize::MAX,
        }
    };
    let limit = usize::from(limit);
    if encoded_len(answers.len(), true) <= limit {
        return None;
    }
    // Largest count that fits: the length grows with the count, so bisect.
    let (mut fits, mut too_many) = (0, answers.len());
    while too_many - fits > 1 {
        let middle = (fits + too_many) / 2;
        if encoded_len(middle, false) <= limit {
            fits = middle;
        } else {
            too_many = middle;
        }
    }
    Some(fits)
}

#[async_trait::async_trait]
impl RequestHandler for ZoneHandler {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        self.zone.count_query(request.protocol() == Protocol::Tcp);
        if let [query] = request.queries() {
            self.zone.record_asked(&query.name().to_string());
        }
        let mode = self.zone.mode();
        let mut header = Header::response_from_request(request.header());
        header.set_authoritative(true);
        header.set_recursion_available(true);
        let over_tcp = request.protocol() == Protocol::Tcp;
        if mode == DnsMode::Drop || (mode == DnsMode::BrokenTcp && over_tcp) {
            // Send nothing: the client sees a dead server and times out.
            return header.into();
        }

        let Answer {
            code,
            mut answers,
            mut authority,
            mut additionals,
        } = self.answer(request, mode);
        header.set_response_code(code);

        // Offer EDNS back only to EDNS clients; its payload is what both sides can handle.
        let edns = request.edns().map(|query_edns| {
            let mut edns = Edns::new();
            edns.set_max_payload(query_edns.max_payload().min(MAX_EDNS_PAYLOAD));
            edns.set_version(0);
            edns
        });

        // hickory-server truncates (and sets TC) at the EDNS payload, but without EDNS it allows
        // 4096 bytes over UDP instead of RFC 1035's 512: apply the limit here for both cases.
        if mode == DnsMode::BrokenTcp {
            header.set_truncated(true);
            answers.clear();
            authority.clear();
            additionals.clear();
        } else if request.protocol() == Protocol::Udp {
            let limit = edns.as_ref().map_or(CLASSIC_UDP_PAYLOAD, Edns::max_payload);
            if let Some(fit) =
                answers_that_fit(&header, request, &answers, &authority, edns.as_ref(), limit)
            {
                header.set_truncated(true);
                answers.truncate(fit);
                authority.clear();
                additionals.clear();
            }
        }

        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = edns {
            builder.edns(edns);
        }
        let response = builder.build(
            header,
            answers.iter(),
            std::iter::empty(),
            authority.iter(),
            additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                log::warn!("headless-dns: cannot send a response: {e}");
                header.into()
            }
        }
    }
}
