//! Validation of the routing objects of `networking.istio.io`: `VirtualService`,
//! `DestinationRule` and `Gateway`.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{
    Context, Errors, FieldError, duration, host, is_ip_or_cidr, labels, one_of, percent, port,
};
use crate::model::config::{DestinationRule, Gateway, Meta, Subset, VirtualService};
use crate::model::fallback::{FALLBACK_ANNOTATION, Fallback};
use crate::model::istio::networking::{
    CorsPolicy, Destination, DestinationRuleSpec, GatewaySpec, HttpRoute, StringMatch,
    TrafficPolicy, VirtualServiceSpec,
};
use crate::model::protocol::Protocol;
use crate::model::rate_limit::{LOCAL_RATE_LIMIT_ANNOTATION, LocalRateLimit};
use crate::model::types::is_dns1123_label;

use super::networking::PROTOCOLS;

/// Validates a `VirtualService`.
pub fn virtual_service(
    meta: Meta,
    spec: &VirtualServiceSpec,
    ctx: &Context,
) -> Result<VirtualService, Vec<FieldError>> {
    let mut errs = Errors::default();
    if spec.hosts.is_empty() {
        errs.push("spec.hosts", "a VirtualService needs at least one host");
    }
    let mut hosts = Vec::new();
    for (i, h) in spec.hosts.iter().enumerate() {
        if let Some(h) = host(&mut errs, &format!("spec.hosts[{i}]"), h) {
            hosts.push(h.qualify(&meta.namespace, &ctx.domain_suffix));
        }
    }
    for (i, g) in spec.gateways.iter().enumerate() {
        gateway_ref(&mut errs, &format!("spec.gateways[{i}]"), g);
    }
    if let Some(text) = meta.annotations.get(LOCAL_RATE_LIMIT_ANNOTATION)
        && let Err(e) = LocalRateLimit::parse(text)
    {
        errs.push(
            format!("metadata.annotations[{LOCAL_RATE_LIMIT_ANNOTATION:?}]"),
            e,
        );
    }
    if spec.http.is_empty() && spec.tls.is_empty() && spec.tcp.is_empty() {
        errs.push("spec", "at least one of http, tls and tcp must be set");
    }
    for (i, r) in spec.http.iter().enumerate() {
        http_route(&mut errs, &format!("spec.http[{i}]"), r);
    }
    for (i, r) in spec.tls.iter().enumerate() {
        let path = format!("spec.tls[{i}]");
        if r.matches.is_empty() {
            errs.push(
                format!("{path}.match"),
                "a TLS route needs at least one match",
            );
        }
        for (j, m) in r.matches.iter().enumerate() {
            if m.sni_hosts.is_empty() {
                errs.push(
                    format!("{path}.match[{j}].sniHosts"),
                    "at least one SNI host is required",
                );
            }
            subnets(
                &mut errs,
                &format!("{path}.match[{j}].destinationSubnets"),
                &m.destination_subnets,
            );
        }
        let dests: Vec<_> = r
            .route
            .iter()
            .map(|d| (d.destination.as_ref(), d.weight))
            .collect();
        destinations(&mut errs, &path, &dests, true);
    }
    for (i, r) in spec.tcp.iter().enumerate() {
        let path = format!("spec.tcp[{i}]");
        for (j, m) in r.matches.iter().enumerate() {
            subnets(
                &mut errs,
                &format!("{path}.match[{j}].destinationSubnets"),
                &m.destination_subnets,
            );
            if let Some(p) = m.port {
                port(&mut errs, &format!("{path}.match[{j}].port"), p);
            }
        }
        let dests: Vec<_> = r
            .route
            .iter()
            .map(|d| (d.destination.as_ref(), d.weight))
            .collect();
        destinations(&mut errs, &path, &dests, true);
    }
    errs.finish(VirtualService {
        meta,
        hosts,
        gateways: spec.gateways.clone(),
        spec: Arc::new(spec.clone()),
    })
}

fn gateway_ref(errs: &mut Errors, path: &str, g: &str) {
    if g == "mesh" {
        return;
    }
    let name = g.split_once('/').map_or(g, |(ns, name)| {
        if !is_dns1123_label(ns) {
            errs.push(path, format!("{ns:?} is not a valid namespace"));
        }
        name
    });
    if name.is_empty() || !name.split('.').all(is_dns1123_label) {
        errs.push(
            path,
            format!("{g:?} is not a valid gateway reference ([namespace/]name or mesh)"),
        );
    }
}

fn subnets(errs: &mut Errors, path: &str, list: &[String]) {
    for (i, s) in list.iter().enumerate() {
        if !is_ip_or_cidr(s) {
            errs.push(
                format!("{path}[{i}]"),
                format!("{s:?} is not a valid IP address or CIDR block"),
            );
        }
    }
}

fn http_route(errs: &mut Errors, path: &str, r: &HttpRoute) {
    let actions = usize::from(!r.route.is_empty())
        + usize::from(r.redirect.is_some())
        + usize::from(r.direct_response.is_some())
        + usize::from(r.delegate.is_some());
    if actions == 0 {
        errs.push(
            path.to_owned(),
            "one of route, redirect, directResponse and delegate is required",
        );
    } else if actions > 1 {
        errs.push(
            path.to_owned(),
            "only one of route, redirect, directResponse and delegate may be set",
        );
    }
    for (j, m) in r.matches.iter().enumerate() {
        let mpath = format!("{path}.match[{j}]");
        for (field, sm) in [
            ("uri", &m.uri),
            ("scheme", &m.scheme),
            ("method", &m.method),
            ("authority", &m.authority),
        ] {
            if let Some(sm) = sm {
                string_match(errs, &format!("{mpath}.{field}"), sm);
            }
        }
        for (field, map) in [("headers", &m.headers), ("queryParams", &m.query_params)] {
            for (k, sm) in map {
                string_match(errs, &format!("{mpath}.{field}.{k}"), sm);
            }
        }
        if let Some(p) = m.port {
            port(errs, &format!("{mpath}.port"), p);
        }
    }
    let dests: Vec<_> = r
        .route
        .iter()
        .map(|d| (d.destination.as_ref(), d.weight))
        .collect();
    destinations(errs, path, &dests, false);
    if let Some(rd) = &r.redirect {
        if let Some(code) = rd.redirect_code
            && !(300..=399).contains(&code)
        {
            errs.push(
                format!("{path}.redirect.redirectCode"),
                format!("{code} is not a redirect status (3xx)"),
            );
        }
        if let Some(p) = rd.port {
            port(errs, &format!("{path}.redirect.port"), p);
        }
    }
    if let Some(dr) = &r.direct_response
        && !(200..=599).contains(&dr.status)
    {
        errs.push(
            format!("{path}.directResponse.status"),
            format!("{} is not an HTTP status", dr.status),
        );
    }
    duration(errs, &format!("{path}.timeout"), r.timeout.as_deref());
    if let Some(rt) = &r.retries {
        if rt.attempts.is_some_and(|a| a < 0) {
            errs.push(format!("{path}.retries.attempts"), "must not be negative");
        }
        duration(
            errs,
            &format!("{path}.retries.perTryTimeout"),
            rt.per_try_timeout.as_deref(),
        );
    }
    if let Some(f) = &r.fault {
        if let Some(d) = &f.delay {
            duration(
                errs,
                &format!("{path}.fault.delay.fixedDelay"),
                d.fixed_delay.as_deref(),
            );
            percent(
                errs,
                &format!("{path}.fault.delay.percentage.value"),
                d.percentage.as_ref().and_then(|p| p.value),
            );
        }
        if let Some(a) = &f.abort {
            if let Some(s) = a.http_status
                && !(200..=599).contains(&s)
            {
                errs.push(
                    format!("{path}.fault.abort.httpStatus"),
                    format!("{s} is not an HTTP status"),
                );
            }
            percent(
                errs,
                &format!("{path}.fault.abort.percentage.value"),
                a.percentage.as_ref().and_then(|p| p.value),
            );
        }
    }
    if let Some(m) = &r.mirror {
        destination(errs, &format!("{path}.mirror"), m);
    }
    for (i, m) in r.mirrors.iter().enumerate() {
        match &m.destination {
            Some(d) => destination(errs, &format!("{path}.mirrors[{i}].destination"), d),
            None => errs.push(format!("{path}.mirrors[{i}].destination"), "is required"),
        }
        percent(
            errs,
            &format!("{path}.mirrors[{i}].percentage.value"),
            m.percentage.as_ref().and_then(|p| p.value),
        );
    }
    percent(
        errs,
        &format!("{path}.mirrorPercentage.value"),
        r.mirror_percentage.as_ref().and_then(|p| p.value),
    );
    if let Some(p) = r.mirror_percent
        && p > 100
    {
        errs.push(format!("{path}.mirrorPercent"), format!("{p} is above 100"));
    }
    if let Some(c) = &r.cors_policy {
        cors_policy(errs, &format!("{path}.corsPolicy"), c);
    }
}

fn cors_policy(errs: &mut Errors, path: &str, c: &CorsPolicy) {
    for (i, sm) in c.allow_origins.iter().enumerate() {
        string_match(errs, &format!("{path}.allowOrigins[{i}]"), sm);
    }
    duration(errs, &format!("{path}.maxAge"), c.max_age.as_deref());
    one_of(
        errs,
        &format!("{path}.unmatchedPreflights"),
        c.unmatched_preflights.as_deref(),
        &["UNSPECIFIED", "FORWARD", "IGNORE"],
    );
    for (field, list) in [
        ("allowMethods", &c.allow_methods),
        ("allowHeaders", &c.allow_headers),
        ("exposeHeaders", &c.expose_headers),
    ] {
        for (i, v) in list.iter().enumerate() {
            if v.is_empty() || v.contains(',') || !v.bytes().all(|b| b.is_ascii_graphic()) {
                errs.push(
                    format!("{path}.{field}[{i}]"),
                    format!("{v:?} is not a method or header name"),
                );
            }
        }
    }
}

fn string_match(errs: &mut Errors, path: &str, m: &StringMatch) {
    let set = [&m.exact, &m.prefix, &m.regex]
        .iter()
        .filter(|v| v.is_some())
        .count();
    if set != 1 {
        errs.push(path, "exactly one of exact, prefix and regex must be set");
    }
}

/// Checks the destinations of a route and that their weights add up to 100 when there are
/// several.
fn destinations(
    errs: &mut Errors,
    path: &str,
    dests: &[(Option<&Destination>, Option<i32>)],
    required: bool,
) {
    if dests.is_empty() {
        if required {
            errs.push(
                format!("{path}.route"),
                "at least one destination is required",
            );
        }
        return;
    }
    let mut total: i64 = 0;
    for (i, (d, w)) in dests.iter().enumerate() {
        let dpath = format!("{path}.route[{i}]");
        match d {
            Some(d) => destination(errs, &format!("{dpath}.destination"), d),
            None => errs.push(format!("{dpath}.destination"), "is required"),
        }
        if let Some(w) = w {
            if *w < 0 {
                errs.push(format!("{dpath}.weight"), format!("{w} is negative"));
            }
            total += i64::from(*w);
        }
    }
    if dests.len() > 1 && total != 100 {
        errs.push(
            format!("{path}.route"),
            format!("the weights of the destinations add up to {total}, not 100"),
        );
    }
}

fn destination(errs: &mut Errors, path: &str, d: &Destination) {
    match d.host.as_deref() {
        None | Some("") => errs.push(format!("{path}.host"), "is required"),
        Some(h) => {
            if let Some(h) = host(errs, &format!("{path}.host"), h)
                && h.is_wildcard()
            {
                errs.push(
                    format!("{path}.host"),
                    format!("a destination cannot be a wildcard ({h})"),
                );
            }
        }
    }
    if let Some(s) = d.subset.as_deref()
        && !is_dns1123_label(s)
    {
        errs.push(
            format!("{path}.subset"),
            format!("{s:?} is not a valid subset name"),
        );
    }
    if let Some(n) = d.port.as_ref().and_then(|p| p.number) {
        port(errs, &format!("{path}.port.number"), n);
    }
}

/// Validates a `DestinationRule`.
pub fn destination_rule(
    meta: Meta,
    spec: &DestinationRuleSpec,
    ctx: &Context,
) -> Result<DestinationRule, Vec<FieldError>> {
    let mut errs = Errors::default();
    let host = match spec.host.as_deref() {
        None | Some("") => {
            errs.push("spec.host", "is required");
            None
        }
        Some(h) => {
            host(&mut errs, "spec.host", h).map(|h| h.qualify(&meta.namespace, &ctx.domain_suffix))
        }
    };
    if let Some(text) = meta.annotations.get(FALLBACK_ANNOTATION)
        && let Err(e) = Fallback::parse(text)
    {
        errs.push(format!("metadata.annotations[{FALLBACK_ANNOTATION:?}]"), e);
    }
    if let Some(tp) = &spec.traffic_policy {
        traffic_policy(&mut errs, "spec.trafficPolicy", tp);
    }
    let mut subsets = Vec::new();
    let mut names = BTreeSet::new();
    for (i, s) in spec.subsets.iter().enumerate() {
        let path = format!("spec.subsets[{i}]");
        let name = s.name.clone().unwrap_or_default();
        if name.is_empty() {
            errs.push(format!("{path}.name"), "a subset needs a name");
        } else if !is_dns1123_label(&name) {
            errs.push(
                format!("{path}.name"),
                format!("{name:?} is not a valid subset name (a DNS label)"),
            );
        } else if !names.insert(name.clone()) {
            errs.push(
                format!("{path}.name"),
                format!("subset {name:?} is defined twice"),
            );
        }
        let l = labels(&mut errs, &format!("{path}.labels"), &s.labels).unwrap_or_default();
        if let Some(tp) = &s.traffic_policy {
            traffic_policy(&mut errs, &format!("{path}.trafficPolicy"), tp);
        }
        subsets.push(Subset { name, labels: l });
    }
    if let Some(ws) = &spec.workload_selector {
        labels(
            &mut errs,
            "spec.workloadSelector.matchLabels",
            &ws.match_labels,
        );
    }
    match host {
        Some(host) => errs.finish(DestinationRule {
            meta,
            host,
            subsets,
            spec: Arc::new(spec.clone()),
        }),
        None => Err(errs.0),
    }
}

fn traffic_policy(errs: &mut Errors, path: &str, tp: &TrafficPolicy) {
    let lb_modes = [
        "UNSPECIFIED",
        "LEAST_CONN",
        "RANDOM",
        "PASSTHROUGH",
        "ROUND_ROBIN",
        "LEAST_REQUEST",
    ];
    let tls_modes = ["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"];
    if let Some(lb) = &tp.load_balancer {
        one_of(
            errs,
            &format!("{path}.loadBalancer.simple"),
            lb.simple.as_deref(),
            &lb_modes,
        );
        if lb.simple.is_some() && lb.consistent_hash.is_some() {
            errs.push(
                format!("{path}.loadBalancer"),
                "only one of simple and consistentHash may be set",
            );
        }
    }
    if let Some(tls) = &tp.tls {
        one_of(
            errs,
            &format!("{path}.tls.mode"),
            tls.mode.as_deref(),
            &tls_modes,
        );
    }
    if let Some(cp) = &tp.connection_pool {
        if let Some(tcp) = &cp.tcp {
            duration(
                errs,
                &format!("{path}.connectionPool.tcp.connectTimeout"),
                tcp.connect_timeout.as_deref(),
            );
            duration(
                errs,
                &format!("{path}.connectionPool.tcp.idleTimeout"),
                tcp.idle_timeout.as_deref(),
            );
        }
        if let Some(http) = &cp.http {
            duration(
                errs,
                &format!("{path}.connectionPool.http.idleTimeout"),
                http.idle_timeout.as_deref(),
            );
            one_of(
                errs,
                &format!("{path}.connectionPool.http.h2UpgradePolicy"),
                http.h2_upgrade_policy.as_deref(),
                &["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"],
            );
        }
    }
    if let Some(od) = &tp.outlier_detection {
        duration(
            errs,
            &format!("{path}.outlierDetection.interval"),
            od.interval.as_deref(),
        );
        duration(
            errs,
            &format!("{path}.outlierDetection.baseEjectionTime"),
            od.base_ejection_time.as_deref(),
        );
    }
    for (i, pl) in tp.port_level_settings.iter().enumerate() {
        let ppath = format!("{path}.portLevelSettings[{i}]");
        match pl.port.as_ref().and_then(|p| p.number) {
            Some(n) => {
                port(errs, &format!("{ppath}.port.number"), n);
            }
            None => errs.push(
                format!("{ppath}.port"),
                "a port-level setting needs a port number",
            ),
        }
        if let Some(lb) = &pl.load_balancer {
            one_of(
                errs,
                &format!("{ppath}.loadBalancer.simple"),
                lb.simple.as_deref(),
                &lb_modes,
            );
        }
        if let Some(tls) = &pl.tls {
            one_of(
                errs,
                &format!("{ppath}.tls.mode"),
                tls.mode.as_deref(),
                &tls_modes,
            );
        }
    }
}

/// Validates a `Gateway`.
pub fn gateway(meta: Meta, spec: &GatewaySpec, _ctx: &Context) -> Result<Gateway, Vec<FieldError>> {
    let mut errs = Errors::default();
    let selector = labels(&mut errs, "spec.selector", &spec.selector).unwrap_or_default();
    if spec.servers.is_empty() {
        errs.push("spec.servers", "a Gateway needs at least one server");
    }
    let tls_modes = [
        "PASSTHROUGH",
        "SIMPLE",
        "MUTUAL",
        "AUTO_PASSTHROUGH",
        "ISTIO_MUTUAL",
        "OPTIONAL_MUTUAL",
    ];
    for (i, s) in spec.servers.iter().enumerate() {
        let path = format!("spec.servers[{i}]");
        let mut protocol = None;
        match &s.port {
            None => errs.push(format!("{path}.port"), "is required"),
            Some(p) => {
                port(&mut errs, &format!("{path}.port.number"), p.number);
                match p.protocol.as_deref() {
                    None | Some("") => errs.push(format!("{path}.port.protocol"), "is required"),
                    Some(proto) => match Protocol::parse(proto) {
                        Some(pr) => protocol = Some(pr),
                        None => errs.push(
                            format!("{path}.port.protocol"),
                            format!("{proto:?} is not one of {PROTOCOLS}"),
                        ),
                    },
                }
                if p.name.as_deref().is_none_or(str::is_empty) {
                    errs.push(format!("{path}.port.name"), "is required");
                }
            }
        }
        if s.hosts.is_empty() {
            errs.push(format!("{path}.hosts"), "a server needs at least one host");
        }
        for (j, h) in s.hosts.iter().enumerate() {
            let hpath = format!("{path}.hosts[{j}]");
            let dns = match h.split_once('/') {
                Some((ns, dns)) => {
                    if !(ns == "*" || ns == "." || ns == "~" || is_dns1123_label(ns)) {
                        errs.push(hpath.clone(), format!("{ns:?} is not a valid namespace"));
                    }
                    dns
                }
                None => h.as_str(),
            };
            host(&mut errs, &hpath, dns);
        }
        let mode = s.tls.as_ref().and_then(|t| {
            one_of(
                &mut errs,
                &format!("{path}.tls.mode"),
                t.mode.as_deref(),
                &tls_modes,
            )
        });
        let needs_tls = matches!(protocol, Some(Protocol::Https | Protocol::Tls));
        if needs_tls && s.tls.is_none() {
            errs.push(
                format!("{path}.tls"),
                "HTTPS and TLS servers need tls settings",
            );
        }
        if matches!(mode, Some("SIMPLE" | "MUTUAL" | "OPTIONAL_MUTUAL"))
            && let Some(t) = &s.tls
            && t.credential_name.is_none()
            && t.credential_names.is_empty()
            && (t.server_certificate.is_none() || t.private_key.is_none())
        {
            errs.push(
                format!("{path}.tls"),
                "needs credentialName, or serverCertificate and privateKey",
            );
        }
    }
    errs.finish(Gateway {
        meta,
        selector,
        spec: Arc::new(spec.clone()),
    })
}
