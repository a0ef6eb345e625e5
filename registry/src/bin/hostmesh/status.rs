//! `hostmesh status`: every agent connected to a control server and, per xDS type, whether it
//! runs what was sent (like `istioctl proxy-status`), with the message of any NACK.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};
use hostmesh_registry::sources::health::RegistryReport;
use hostmesh_registry::xds::server::http::CONNECTIONS_PATH;
use hostmesh_registry::xds::server::{NodeStatus, TypeStatus};
use hostmesh_registry::xds::type_url;

/// Short names of the types, in the order they are shown.
const COLUMNS: [(&str, &str); 5] = [
    ("CDS", type_url::CLUSTER),
    ("LDS", type_url::LISTENER),
    ("EDS", type_url::ENDPOINT),
    ("RDS", type_url::ROUTE),
    ("NDS", type_url::NAME_TABLE),
];

/// Fetches the status table from the control server's status API.
pub fn fetch(address: &str) -> anyhow::Result<Vec<NodeStatus>> {
    get(address, CONNECTIONS_PATH)
}

/// `GET path` on the status API, decoded as JSON.
pub fn get<T: serde::de::DeserializeOwned>(address: &str, path: &str) -> anyhow::Result<T> {
    let addr = address
        .to_socket_addrs()
        .with_context(|| format!("resolving {address}"))?
        .next()
        .with_context(|| format!("{address} has no address"))?;
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to the status API at {address}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        tcp,
        "GET {path} HTTP/1.0\r\nHost: {address}\r\nAccept: application/json\r\n\r\n"
    )?;
    let mut response = Vec::new();
    tcp.read_to_end(&mut response)
        .with_context(|| format!("reading from {address}"))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("the status API's answer is not HTTP")?;
    let status_line = head.lines().next().unwrap_or_default();
    if !status_line.contains(" 200 ") {
        bail!("the status API answered {status_line:?}: {}", body.trim());
    }
    serde_json::from_str(body).context("the status API's answer is not the expected JSON")
}

/// One cell: what the node runs for one type.
fn state(t: Option<&TypeStatus>) -> &'static str {
    let Some(t) = t else { return "NOT SENT" };
    match (&t.sent, &t.acked, &t.nack) {
        (None, _, _) => "NOT SENT",
        (Some(sent), _, Some(nack)) if nack.version == *sent => "NACKED",
        (Some(sent), Some(acked), _) if acked == sent => "SYNCED",
        _ => "STALE",
    }
}

/// The table as printed.
pub fn render(nodes: &[NodeStatus]) -> String {
    let mut rows = vec![
        ["NODE", "IDENTITY", "MODE"]
            .into_iter()
            .map(str::to_owned)
            .chain(COLUMNS.iter().map(|(name, _)| (*name).to_owned()))
            .collect::<Vec<_>>(),
    ];
    let mut nacks = Vec::new();
    for node in nodes {
        let mode = match node.mode {
            hostmesh_registry::xds::server::Mode::Delta => "delta",
            hostmesh_registry::xds::server::Mode::StateOfTheWorld => "sotw",
        };
        let mut row = vec![node.id.clone(), node.identity.clone(), mode.to_owned()];
        for (name, url) in COLUMNS {
            let t = node.types.get(url);
            row.push(state(t).to_owned());
            if let Some(nack) = t.and_then(|t| t.nack.as_ref()) {
                nacks.push(format!(
                    "{} {name} version {} rejected at {}: {}",
                    node.id, nack.version, nack.at, nack.message
                ));
            }
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if nodes.is_empty() {
        out.push_str("(no agents connected)\n");
    }
    if !nacks.is_empty() {
        out.push_str("\nNACKs:\n");
        for n in nacks {
            out.push_str("  ");
            out.push_str(&n);
            out.push('\n');
        }
    }
    out
}

/// The registry sources' health and the merge's conflicts, as printed under the agents.
pub fn render_sources(report: &RegistryReport) -> String {
    let mut out = format!("\nREGISTRY (snapshot version {})\n", report.version);
    let mut rows = vec![
        [
            "SOURCE",
            "HEALTHY",
            "SERVICES",
            "ENDPOINTS",
            "OBJECTS",
            "REJECTED",
            "LAST UPDATE",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for s in &report.sources {
        rows.push(vec![
            s.name.clone(),
            if s.healthy { "yes" } else { "NO" }.to_owned(),
            s.services.to_string(),
            s.endpoints.to_string(),
            s.objects.to_string(),
            s.rejected.to_string(),
            s.last_update.clone().unwrap_or_else(|| "never".into()),
        ]);
    }
    out.push_str(&table(&rows));
    for s in &report.sources {
        if let Some(e) = &s.last_error {
            let at = s.last_error_at.as_deref().unwrap_or("");
            out.push_str(&format!("  {} last error at {at}: {e}\n", s.name));
        }
        if let Some(n) = &s.note {
            out.push_str(&format!("  {}: {n}\n", s.name));
        }
    }
    if !report.conflicts.is_empty() {
        out.push_str("\nCONFLICTS (resolved by precedence static > kubernetes > consul):\n");
        for c in &report.conflicts {
            out.push_str(&format!(
                "  {c}
"
            ));
        }
    }
    if !report.rejected.is_empty() {
        out.push_str("\nREJECTED:\n");
        for r in &report.rejected {
            out.push_str(&format!("  {}: {}: {}\n", r.source, r.object, r.reason));
        }
    }
    out
}

/// Left-aligned columns.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, String::len))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
