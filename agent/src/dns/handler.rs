//! The hickory `RequestHandler`: mesh names from the table, everything else upstream.
//!
//! The proxy never invents an NXDOMAIN: a name the table does not hold is forwarded, and if no
//! upstream answers the client gets SERVFAIL. A mesh name asked for a type the table does not
//! hold (AAAA of an IPv4-only service, MX, ...) gets an empty NOERROR answer.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::op::{Header, HeaderCounts, Message, MessageType, Metadata, OpCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use super::forward::Forwarder;
use super::table::{MeshAnswer, SharedNameTable};

/// Time to live of mesh answers, in seconds (Istio's value).
const MESH_TTL: u32 = 30;

/// Answers queries from the shared table and forwards the rest.
#[derive(Debug, Clone)]
pub struct MeshDnsHandler {
    table: SharedNameTable,
    search: Arc<[Name]>,
    forwarder: Forwarder,
}

impl MeshDnsHandler {
    pub fn new(table: SharedNameTable, search: Vec<Name>, forwarder: Forwarder) -> Self {
        Self {
            table,
            search: search.into(),
            forwarder,
        }
    }

    /// The records answering `qtype` for `qname`, or `None` if the name is not the mesh's.
    fn mesh_records(&self, qname: &Name, qtype: RecordType) -> Option<Vec<Record>> {
        let table = self.table.load();
        let (owner, ips, mut records) = match table.resolve(qname, &self.search)? {
            MeshAnswer::Direct(ips) => (qname.clone(), ips, Vec::new()),
            MeshAnswer::Alias { target, ips } => {
                let cname = Record::from_rdata(
                    qname.clone(),
                    MESH_TTL,
                    RData::CNAME(CNAME(target.clone())),
                );
                (target, ips, vec![cname])
            }
        };
        records.extend(
            ips.iter()
                .filter_map(|ip| match (ip, qtype) {
                    (IpAddr::V4(v4), RecordType::A) => Some(RData::A(A(*v4))),
                    (IpAddr::V6(v6), RecordType::AAAA) => Some(RData::AAAA(AAAA(*v6))),
                    _ => None,
                })
                .map(|rdata| Record::from_rdata(owner.clone(), MESH_TTL, rdata)),
        );
        Some(records)
    }

    async fn forward<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let tcp = request.protocol() == Protocol::Tcp;
        let upstream: Message = match self.forwarder.forward(request.as_slice(), tcp).await {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(error = %e, "forwarding a DNS query failed; answering SERVFAIL");
                return send_error(request, response, ResponseCode::ServFail).await;
            }
        };
        let mut metadata = upstream.metadata;
        metadata.id = request.metadata.id;
        metadata.message_type = MessageType::Response;
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &upstream.edns {
            builder.edns(edns);
        }
        let message = builder.build(
            metadata,
            upstream.answers.iter(),
            upstream.authorities.iter(),
            std::iter::empty(),
            upstream.additionals.iter(),
        );
        match response.send_response(message).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "could not send a forwarded DNS answer");
                failed(request)
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for MeshDnsHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        if request.metadata.message_type != MessageType::Query
            || request.metadata.op_code != OpCode::Query
        {
            return send_error(request, response, ResponseCode::NotImp).await;
        }
        let Ok(info) = request.request_info() else {
            return send_error(request, response, ResponseCode::FormErr).await;
        };
        let qname = Name::from(info.query.name());
        let qtype = info.query.query_type();
        let Some(records) = self.mesh_records(&qname, qtype) else {
            tracing::debug!(name = %qname, %qtype, "not a mesh name, forwarding");
            return self.forward(request, response).await;
        };
        tracing::debug!(name = %qname, %qtype, answers = records.len(), "mesh name");
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        metadata.recursion_available = true;
        let message = MessageResponseBuilder::from_message_request(request).build(
            metadata,
            records.iter(),
            std::iter::empty(),
            std::iter::empty(),
            std::iter::empty(),
        );
        match response.send_response(message).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "could not send a DNS answer");
                failed(request)
            }
        }
    }
}

async fn send_error<R: ResponseHandler>(
    request: &Request,
    mut response: R,
    code: ResponseCode,
) -> ResponseInfo {
    let message =
        MessageResponseBuilder::from_message_request(request).error_msg(&request.metadata, code);
    match response.send_response(message).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "could not send a DNS error");
            failed(request)
        }
    }
}

fn failed(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}
