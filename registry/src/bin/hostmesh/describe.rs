//! `hostmesh describe service HOST`: the merged service as the control server runs it, each
//! endpoint with the source and object it came from, and any conflict about the host.

use hostmesh_registry::sources::health::ServiceDescription;
use hostmesh_registry::xds::server::http::SERVICES_PATH;

use crate::status::{get, table};

pub fn fetch(address: &str, host: &str) -> anyhow::Result<Vec<ServiceDescription>> {
    get(address, &format!("{SERVICES_PATH}{host}"))
}

pub fn render(services: &[ServiceDescription]) -> String {
    let mut out = String::new();
    for s in services {
        out.push_str(&format!(
            "Service:   {} (namespace {})\nFrom:      {}: {} (revision {})\nPorts:     {}\nLocation:  {}\n\nEndpoints:\n",
            s.host,
            s.namespace,
            s.source,
            s.object,
            s.revision,
            s.ports.join(", "),
            s.location
        ));
        let mut rows = vec![
            [
                "PORT", "ADDRESS", "IDENTITY", "SOURCE", "OBJECT", "REVISION",
            ]
            .map(str::to_owned)
            .to_vec(),
        ];
        for e in &s.endpoints {
            rows.push(vec![
                e.service_port.to_string(),
                format!("{}:{}", e.address, e.port),
                e.identity.clone(),
                e.source.clone(),
                e.object.clone(),
                e.revision.clone(),
            ]);
        }
        for line in table(&rows).lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
        if s.endpoints.is_empty() {
            out.push_str("  (none)\n");
        }
        if !s.conflicts.is_empty() {
            out.push_str("\nConflicts:\n");
            for c in &s.conflicts {
                out.push_str(&format!("  {c}\n"));
            }
        }
        out.push('\n');
    }
    out
}
