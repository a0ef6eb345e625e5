//! From text with origins to [`AgentConfig`]: each key checked on its own, then the checks
//! between keys; every problem is collected before any is reported.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use hostmesh_ca::{SpiffeId, TrustDomain};
use ipnet::IpNet;

use super::keys::{Setting, Text};
use super::{AgentConfig, AppProtocol, ControlAddress, Dns, FailMode, Interception, Listeners};
use crate::nft::{DEFAULT_SKIP_MARK, InterceptionSpec};

/// The settings being checked and the problems found so far.
struct Checker {
    settings: BTreeMap<&'static str, Setting>,
    errors: Vec<String>,
}

impl Checker {
    fn problem(&mut self, key: &str, text: &Text, message: impl std::fmt::Display) {
        self.errors.push(format!(
            "{} ({key}): {:?} {message}",
            text.origin, text.text
        ));
    }

    fn wrong_shape(&mut self, key: &str) {
        self.errors.push(format!("{key}: has the wrong shape"));
    }

    /// A scalar key parsed by `parse`, or `default` (also after an error, which is recorded).
    fn scalar<T>(
        &mut self,
        key: &'static str,
        default: T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> T {
        match self.settings.remove(key) {
            None => default,
            Some(Setting::Scalar(text)) => match parse(&text.text) {
                Ok(v) => v,
                Err(e) => {
                    self.problem(key, &text, e);
                    default
                }
            },
            Some(_) => {
                self.wrong_shape(key);
                default
            }
        }
    }

    fn list<T>(
        &mut self,
        key: &'static str,
        default: Vec<T>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Vec<T> {
        match self.settings.remove(key) {
            None => default,
            Some(Setting::List(items)) => {
                let mut out = Vec::new();
                for item in items {
                    match parse(&item.text) {
                        Ok(v) => out.push(v),
                        Err(e) => self.problem(key, &item, e),
                    }
                }
                out
            }
            Some(_) => {
                self.wrong_shape(key);
                default
            }
        }
    }

    fn map<K: Ord, V>(
        &mut self,
        key: &'static str,
        parse: impl Fn(&str, &str) -> Result<(K, V), (bool, String)>,
    ) -> BTreeMap<K, V> {
        let mut out = BTreeMap::new();
        match self.settings.remove(key) {
            None => {}
            Some(Setting::Map(entries)) => {
                for (k, v) in entries {
                    match parse(&k.text, &v.text) {
                        Ok((k, v)) => {
                            out.insert(k, v);
                        }
                        Err((true, e)) => self.problem(key, &k, e),
                        Err((false, e)) => self.problem(key, &v, e),
                    }
                }
            }
            Some(_) => self.wrong_shape(key),
        }
        out
    }

    fn string(&mut self, key: &'static str, default: &str) -> String {
        self.scalar(key, default.to_owned(), |s| Ok(s.to_owned()))
    }
}

pub(super) fn validate(
    settings: BTreeMap<&'static str, Setting>,
    hostname: &str,
) -> Result<AgentConfig, Vec<String>> {
    let mut c = Checker {
        settings,
        errors: Vec::new(),
    };
    let control_address = c.scalar(
        "controlAddress",
        ControlAddress {
            host: "hostmesh-control".into(),
            port: 15012,
        },
        control_address,
    );
    let trust_domain = c.scalar("trustDomain", TrustDomain::default(), |s| {
        TrustDomain::new(s).map_err(|_| {
            "is not a trust domain: use lowercase letters, digits, '.', '-' and '_'".to_owned()
        })
    });
    let segment = |what: &'static str| {
        move |s: &str| {
            let (ns, sa) = if what == "namespace" {
                (s, "x")
            } else {
                ("x", s)
            };
            SpiffeId::new(TrustDomain::default(), ns, sa)
                .map(|_| s.to_owned())
                .map_err(|_| {
                    "is not valid: use lowercase letters, digits, '.' and '-', at most 253 \
                     characters"
                        .to_owned()
                })
        }
    };
    let namespace = c.scalar("namespace", "default".to_owned(), segment("namespace"));
    let service_account = c.scalar("serviceAccount", "default".to_owned(), segment("sa"));
    let workload_name = c.scalar("workloadName", hostname.to_owned(), |s| {
        dns_label_ish(s, 253).map(|()| s.to_owned())
    });
    let labels = c.map("labels", |k, v| {
        label_part(k, true).map_err(|e| (true, e))?;
        label_part(v, false).map_err(|e| (false, e))?;
        Ok((k.to_owned(), v.to_owned()))
    });
    let workload_group = c.scalar("workloadGroup", None, |s| {
        dns_label_ish(s, 63).map(|()| Some(s.to_owned()))
    });
    let locality = c.scalar("locality", None, |s| {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err("is not a locality (region[/zone[/subzone]])".to_owned());
        }
        Ok(Some(s.to_owned()))
    });
    let host_ip = c.scalar("hostIP", None, |s| {
        s.parse::<IpAddr>()
            .map(Some)
            .map_err(|_| "is not an IP address".to_owned())
    });
    let inbound_ports = c.map("inboundPorts", |k, v| {
        let port = port(k).map_err(|e| (true, e))?;
        let protocol = protocol(v).map_err(|e| (false, e))?;
        Ok((port, protocol))
    });
    let state_dir = c.scalar("stateDir", "/var/lib/hostmesh".into(), absolute);
    let join_token_path = c.scalar("joinTokenPath", "/etc/hostmesh/join-token".into(), absolute);
    let root_cert_path = c.scalar(
        "rootCertPath",
        "/etc/hostmesh/root-cert.pem".into(),
        absolute,
    );
    let certificate_ttl = c.scalar("certificateTtl", Duration::from_secs(86_400), |s| {
        duration(s, Duration::from_secs(10))
    });
    let first_config_timeout = c.scalar("firstConfigTimeout", Duration::from_millis(500), |s| {
        duration(s, Duration::ZERO)
    });
    let admin_port = c.scalar("adminPort", 15000, port);
    let health_port = c.scalar("healthPort", 15020, port);
    let log_level = c.string("logLevel", "info");
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log_level) {
        c.errors
            .push(format!("logLevel: {log_level:?} is not a log filter: {e}"));
    }
    let proxy_threads = c.scalar("proxyThreads", None, |s| match s.parse::<usize>() {
        Ok(n @ 1..=256) => Ok(NonZeroUsize::new(n)),
        _ => Err("is not a number of threads from 1 to 256".to_owned()),
    });
    let listeners = Listeners {
        outbound: c.scalar("listeners.outbound", ([0, 0, 0, 0], 15001).into(), socket),
        inbound: c.scalar("listeners.inbound", ([0, 0, 0, 0], 15006).into(), socket),
    };
    let interception = Interception {
        enabled: c.scalar("interception.enabled", true, boolean),
        excluded_ports: c.list("interception.excludedPorts", vec![22], port),
        excluded_cidrs: c.list("interception.excludedCidrs", Vec::new(), |s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| "is not a network (10.0.0.0/8) or an address".to_owned())
        }),
        agent_uid: c.scalar("interception.agentUid", None, |s| {
            s.parse::<u32>()
                .map(Some)
                .map_err(|_| "is not a user id".to_owned())
        }),
        mark: c.scalar("interception.mark", Some(DEFAULT_SKIP_MARK), mark),
        fail_mode: c.scalar("interception.failMode", FailMode::Open, |s| match s {
            "open" => Ok(FailMode::Open),
            "closed" => Ok(FailMode::Closed),
            _ => Err("is neither open nor closed".into()),
        }),
        dns_capture: c.scalar("interception.dnsCapture", true, boolean),
        nft: c.scalar("interception.nft", PathBuf::from("nft"), |s| {
            Ok(PathBuf::from(s))
        }),
    };
    let dns = Dns {
        enabled: c.scalar("dns.enabled", true, boolean),
        listen: c.scalar("dns.listen", ([127, 0, 0, 1], 15053).into(), socket),
        resolv_conf: c.scalar("dns.resolvConf", "/etc/resolv.conf".into(), absolute),
    };
    let identity = SpiffeId::new(trust_domain, &namespace, &service_account).ok();
    let config = identity.map(|identity| AgentConfig {
        control_address,
        identity,
        workload_name,
        labels,
        workload_group,
        locality,
        host_ip,
        inbound_ports,
        state_dir,
        join_token_path,
        root_cert_path,
        certificate_ttl,
        first_config_timeout,
        admin_port,
        health_port,
        log_level,
        proxy_threads,
        listeners,
        interception,
        dns,
    });
    if let Some(config) = &config {
        between_keys(config, &mut c.errors);
    }
    match config {
        Some(config) if c.errors.is_empty() => Ok(config),
        _ => Err(c.errors),
    }
}

/// Checks that involve several keys.
fn between_keys(config: &AgentConfig, errors: &mut Vec<String>) {
    let ports = [
        ("adminPort", config.admin_port),
        ("healthPort", config.health_port),
        ("listeners.outbound", config.listeners.outbound.port()),
        ("listeners.inbound", config.listeners.inbound.port()),
    ];
    for (i, (a, pa)) in ports.iter().enumerate() {
        for (b, pb) in &ports[i + 1..] {
            if pa == pb {
                errors.push(format!("{a} and {b} both use port {pa}"));
            }
        }
    }
    let i = &config.interception;
    if !i.enabled {
        return;
    }
    if i.dns_capture && !config.dns.enabled {
        errors.push("interception.dnsCapture needs dns.enabled".into());
    }
    if i.dns_capture && config.dns.listen.ip() != IpAddr::from([127, 0, 0, 1]) {
        errors.push(format!(
            "dns.listen: {} must be on 127.0.0.1 when interception.dnsCapture is on: redirected \
             DNS replies from another address never reach the resolver",
            config.dns.listen
        ));
    }
    if let Err(invalid) = interception_spec(config, Vec::new()).validate() {
        for p in invalid.problems {
            errors.push(format!("interception: {p}"));
        }
    }
}

/// The nftables settings of `config`, with the control server's resolved addresses.
pub fn interception_spec(
    config: &AgentConfig,
    control_servers: Vec<SocketAddr>,
) -> InterceptionSpec {
    let i = &config.interception;
    InterceptionSpec {
        skip_uid: i.agent_uid,
        skip_mark: i.mark,
        excluded_ports: i.excluded_ports.clone(),
        excluded_cidrs: i.excluded_cidrs.clone(),
        control_servers,
        inbound_ports: config.inbound_ports.keys().copied().collect(),
        dns_capture: i.dns_capture,
        dns_ipv6: false,
        outbound_port: config.listeners.outbound.port(),
        inbound_port: config.listeners.inbound.port(),
        dns_port: config.dns.listen.port(),
    }
}

fn control_address(s: &str) -> Result<ControlAddress, String> {
    let bad = || "is not HOST:PORT (hostmesh-control:15012, 10.0.0.2:15012, [fd00::2]:15012)";
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(ControlAddress {
            host: addr.ip().to_string(),
            port: addr.port(),
        });
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(|| bad().to_owned())?;
    let port: u16 = port.parse().map_err(|_| bad().to_owned())?;
    if port == 0 || dns_label_ish(host, 253).is_err() {
        return Err(bad().into());
    }
    Ok(ControlAddress {
        host: host.to_owned(),
        port,
    })
}

/// Lowercase letters, digits, '-' and '.', not starting or ending with either.
fn dns_label_ish(s: &str, max: usize) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "is not a name: use lowercase letters, digits, '-' and '.', at most {max} characters"
        ))
    }
}

/// A Kubernetes-style label key (optional `prefix/`) or value.
fn label_part(s: &str, key: bool) -> Result<(), String> {
    let name = if key {
        s.rsplit_once('/').map_or(s, |(_, n)| n)
    } else {
        s
    };
    let ok = !(key && name.is_empty())
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !name.starts_with(['-', '_', '.'])
        && !name.ends_with(['-', '_', '.']);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "is not a label {}: letters, digits, '-', '_' and '.', at most 63 characters",
            if key { "name" } else { "value" }
        ))
    }
}

fn port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err("is not a port (1-65535)".into()),
    }
}

fn socket(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| "is not an address of the form IP:PORT".into())
}

fn protocol(s: &str) -> Result<AppProtocol, String> {
    match s.to_ascii_lowercase().as_str() {
        "http" => Ok(AppProtocol::Http),
        "http2" => Ok(AppProtocol::Http2),
        "grpc" => Ok(AppProtocol::Grpc),
        "https" => Ok(AppProtocol::Https),
        "tls" => Ok(AppProtocol::Tls),
        "tcp" => Ok(AppProtocol::Tcp),
        _ => Err("is not a protocol: HTTP, HTTP2, GRPC, HTTPS, TLS or TCP".into()),
    }
}

fn boolean(s: &str) -> Result<bool, String> {
    bool::from_str(s).map_err(|_| "is neither true nor false".into())
}

fn mark(s: &str) -> Result<Option<u32>, String> {
    if s == "none" {
        return Ok(None);
    }
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    match parsed {
        Ok(0) => Err("must not be 0: every unmarked packet has mark 0".into()),
        Ok(m) => Ok(Some(m)),
        Err(_) => Err("is not a socket mark (1337, 0x539, or none)".into()),
    }
}

fn absolute(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err("is not an absolute path".into())
    }
}

fn duration(s: &str, min: Duration) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d >= min => Ok(d),
        Ok(_) => Err(format!(
            "is shorter than {}",
            humantime::format_duration(min)
        )),
        Err(_) => Err("is not a duration (500ms, 30s, 24h)".into()),
    }
}
