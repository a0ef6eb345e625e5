//! Validation of `security.istio.io` objects.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Context, Errors, FieldError, is_ip_or_cidr, labels, one_of, port};
use crate::model::config::{
    AuthorizationAction, AuthorizationPolicy, Meta, MtlsMode, PeerAuthentication,
};
use crate::model::istio::WorkloadSelector;
use crate::model::istio::security::{
    AuthorizationPolicySpec, MutualTls, Operation, PeerAuthenticationSpec, Source,
};
use crate::model::types::Labels;

fn selector(errs: &mut Errors, s: Option<&WorkloadSelector>) -> Option<Labels> {
    s.and_then(|s| labels(errs, "spec.selector.matchLabels", &s.match_labels))
}

fn mtls_mode(errs: &mut Errors, path: &str, m: Option<&MutualTls>) -> MtlsMode {
    let mode = m.and_then(|m| m.mode.as_deref());
    match one_of(
        errs,
        path,
        mode,
        &["UNSET", "DISABLE", "PERMISSIVE", "STRICT"],
    ) {
        Some("DISABLE") => MtlsMode::Disable,
        Some("PERMISSIVE") => MtlsMode::Permissive,
        Some("STRICT") => MtlsMode::Strict,
        _ => MtlsMode::Unset,
    }
}

/// Validates a `PeerAuthentication`.
pub fn peer_authentication(
    meta: Meta,
    spec: &PeerAuthenticationSpec,
    _ctx: &Context,
) -> Result<PeerAuthentication, Vec<FieldError>> {
    let mut errs = Errors::default();
    let selector = selector(&mut errs, spec.selector.as_ref());
    let mode = mtls_mode(&mut errs, "spec.mtls.mode", spec.mtls.as_ref());
    if !spec.port_level_mtls.is_empty() && selector.as_ref().is_none_or(Labels::is_empty) {
        errs.push(
            "spec.portLevelMtls",
            "port-level mTLS needs a workload selector with matchLabels",
        );
    }
    let mut port_level = BTreeMap::new();
    for (p, m) in &spec.port_level_mtls {
        let path = format!("spec.portLevelMtls.{p}");
        let mode = mtls_mode(&mut errs, &format!("{path}.mode"), Some(m));
        if let Some(p) = port(&mut errs, &path, *p) {
            port_level.insert(p, mode);
        }
    }
    errs.finish(PeerAuthentication {
        meta,
        selector,
        mode,
        port_level,
    })
}

/// Validates an `AuthorizationPolicy`.
pub fn authorization_policy(
    meta: Meta,
    spec: &AuthorizationPolicySpec,
    _ctx: &Context,
) -> Result<AuthorizationPolicy, Vec<FieldError>> {
    let mut errs = Errors::default();
    let selector = selector(&mut errs, spec.selector.as_ref());
    if selector.is_some() && (spec.target_ref.is_some() || !spec.target_refs.is_empty()) {
        errs.push(
            "spec.selector",
            "only one of selector, targetRef and targetRefs may be set",
        );
    }
    let action = match one_of(
        &mut errs,
        "spec.action",
        spec.action.as_deref(),
        &["ALLOW", "DENY", "AUDIT", "CUSTOM"],
    ) {
        Some("DENY") => AuthorizationAction::Deny,
        Some("AUDIT") => AuthorizationAction::Audit,
        Some("CUSTOM") => AuthorizationAction::Custom,
        _ => AuthorizationAction::Allow,
    };
    let provider = spec
        .provider
        .as_ref()
        .and_then(|p| p.name.clone())
        .filter(|n| !n.is_empty());
    let custom = spec.action.as_deref() == Some("CUSTOM");
    if custom && provider.is_none() {
        errs.push("spec.provider.name", "a CUSTOM policy needs a provider");
    }
    if !custom && spec.provider.is_some() {
        errs.push(
            "spec.provider",
            "a provider is only allowed with action CUSTOM",
        );
    }
    for (i, rule) in spec.rules.iter().enumerate() {
        let path = format!("spec.rules[{i}]");
        for (j, from) in rule.from.iter().enumerate() {
            let fpath = format!("{path}.from[{j}].source");
            match &from.source {
                Some(s) => source(&mut errs, &fpath, s),
                None => errs.push(fpath, "is required"),
            }
        }
        for (j, to) in rule.to.iter().enumerate() {
            let tpath = format!("{path}.to[{j}].operation");
            match &to.operation {
                Some(o) => operation(&mut errs, &tpath, o),
                None => errs.push(tpath, "is required"),
            }
        }
        for (j, c) in rule.when.iter().enumerate() {
            let cpath = format!("{path}.when[{j}]");
            if c.key.as_deref().is_none_or(str::is_empty) {
                errs.push(format!("{cpath}.key"), "is required");
            }
            if c.values.is_empty() && c.not_values.is_empty() {
                errs.push(cpath, "one of values and notValues is required");
            }
        }
    }
    errs.finish(AuthorizationPolicy {
        meta,
        selector,
        action,
        provider,
        spec: Arc::new(spec.clone()),
    })
}

fn source(errs: &mut Errors, path: &str, s: &Source) {
    let lists: [(&str, &Vec<String>); 12] = [
        ("principals", &s.principals),
        ("notPrincipals", &s.not_principals),
        ("requestPrincipals", &s.request_principals),
        ("notRequestPrincipals", &s.not_request_principals),
        ("namespaces", &s.namespaces),
        ("notNamespaces", &s.not_namespaces),
        ("serviceAccounts", &s.service_accounts),
        ("notServiceAccounts", &s.not_service_accounts),
        ("ipBlocks", &s.ip_blocks),
        ("notIpBlocks", &s.not_ip_blocks),
        ("remoteIpBlocks", &s.remote_ip_blocks),
        ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
    ];
    non_empty_lists(errs, path, &lists);
    if (!s.service_accounts.is_empty() || !s.not_service_accounts.is_empty())
        && (!s.principals.is_empty() || !s.not_principals.is_empty())
    {
        errs.push(
            path,
            "serviceAccounts and principals cannot be used together",
        );
    }
    for (field, list) in lists.iter().skip(8) {
        for (i, b) in list.iter().enumerate() {
            if !is_ip_or_cidr(b) {
                errs.push(
                    format!("{path}.{field}[{i}]"),
                    format!("{b:?} is not a valid IP address or CIDR block"),
                );
            }
        }
    }
}

fn operation(errs: &mut Errors, path: &str, o: &Operation) {
    let lists: [(&str, &Vec<String>); 8] = [
        ("hosts", &o.hosts),
        ("notHosts", &o.not_hosts),
        ("ports", &o.ports),
        ("notPorts", &o.not_ports),
        ("methods", &o.methods),
        ("notMethods", &o.not_methods),
        ("paths", &o.paths),
        ("notPaths", &o.not_paths),
    ];
    non_empty_lists(errs, path, &lists);
    for (field, list) in [("ports", &o.ports), ("notPorts", &o.not_ports)] {
        for (i, p) in list.iter().enumerate() {
            let ok = p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n));
            if !ok {
                errs.push(
                    format!("{path}.{field}[{i}]"),
                    format!("{p:?} is not a valid port"),
                );
            }
        }
    }
}

/// A source or operation must set at least one field, and no value may be empty.
fn non_empty_lists(errs: &mut Errors, path: &str, lists: &[(&str, &Vec<String>)]) {
    if lists.iter().all(|(_, l)| l.is_empty()) {
        errs.push(path, "at least one field must be set");
    }
    for (field, list) in lists {
        for (i, v) in list.iter().enumerate() {
            if v.is_empty() {
                errs.push(format!("{path}.{field}[{i}]"), "must not be empty");
            }
        }
    }
}
