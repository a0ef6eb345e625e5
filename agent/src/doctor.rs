//! `hostmesh-agent doctor`: what the host looks like to the agent before interception is turned
//! on, and what would be captured or bypassed with the current settings. Read-only: it lists
//! rules and files, it never changes them. The Ansible role runs it before starting the agent;
//! an operator can run it by hand at any time.
//!
//! Reports: existing nftables tables and legacy iptables rules, Docker, firewalld, the resolver
//! setup, the SSH port(s), ports the agent needs that are already taken, and the interception
//! plan (from the same settings the daemon reads). Each finding is `ok`, `note` or `warn`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use crate::config::AgentConfig;
use crate::dns::ResolvConf;
use crate::nft::Nft;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Note,
    Warn,
}

impl Level {
    fn warn_if(problem: bool) -> Self {
        if problem { Self::Warn } else { Self::Ok }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub topic: &'static str,
    pub text: String,
}

/// Where the host's facts are read (`/` in production; a folder in tests).
#[derive(Debug, Clone)]
pub struct HostPaths {
    pub root: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        Self { root: "/".into() }
    }
}

impl HostPaths {
    fn at(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

/// Every check, in the order printed.
pub fn examine(config: &AgentConfig, host: &HostPaths) -> Vec<Finding> {
    let mut out = Vec::new();
    nftables(
        &Nft::with_program(config.interception.nft.clone()),
        &mut out,
    );
    legacy_iptables(&mut out);
    docker_and_firewalld(host, &mut out);
    resolver(config, &mut out);
    let listening = listening_ports(host);
    ssh(config, host, &listening, &mut out);
    ports_in_use(config, &listening, &mut out);
    plan(config, &mut out);
    out
}

/// The report as printed, one finding per line.
pub fn render(findings: &[Finding]) -> String {
    let mut text = String::new();
    for f in findings {
        let level = match f.level {
            Level::Ok => "ok  ",
            Level::Note => "note",
            Level::Warn => "warn",
        };
        let _ = writeln!(text, "{level} {:<10} {}", f.topic, f.text);
    }
    text
}

fn push(out: &mut Vec<Finding>, level: Level, topic: &'static str, text: impl Into<String>) {
    out.push(Finding {
        level,
        topic,
        text: text.into(),
    });
}

fn nftables(nft: &Nft, out: &mut Vec<Finding>) {
    let ruleset = match nft.list_ruleset_json() {
        Ok(json) => json,
        Err(e) => {
            push(
                out,
                Level::Warn,
                "nftables",
                format!("cannot list the ruleset: {e}"),
            );
            return;
        }
    };
    let tables = table_summary(&ruleset);
    if tables.is_empty() {
        push(out, Level::Ok, "nftables", "no tables");
    }
    for (family, name, rules) in tables {
        let (level, what) = match name.as_str() {
            "hostmesh" => (Level::Note, "the agent's own table (it is running)"),
            _ if rules == 0 => (Level::Ok, "no rules"),
            _ => (
                Level::Note,
                "kept as is; packets it drops or accepts early never reach the proxy",
            ),
        };
        push(
            out,
            level,
            "nftables",
            format!("table {family} {name}: {rules} rules; {what}"),
        );
    }
}

/// `(family, table, rule count)` for each table of `nft -j list ruleset`.
pub fn table_summary(ruleset: &serde_json::Value) -> Vec<(String, String, usize)> {
    let items = ruleset
        .get("nftables")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    let text = |v: &serde_json::Value, key: &str| {
        v.get(key)
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let mut tables: Vec<(String, String, usize)> = items
        .iter()
        .filter_map(|i| i.get("table"))
        .map(|t| (text(t, "family"), text(t, "name"), 0))
        .collect();
    for rule in items.iter().filter_map(|i| i.get("rule")) {
        let key = (text(rule, "family"), text(rule, "table"));
        if let Some(t) = tables.iter_mut().find(|t| (&t.0, &t.1) == (&key.0, &key.1)) {
            t.2 += 1;
        }
    }
    tables
}

fn legacy_iptables(out: &mut Vec<Finding>) {
    for program in ["iptables-legacy-save", "ip6tables-legacy-save"] {
        let Ok(result) = Command::new(program).output() else {
            continue;
        };
        let rules = String::from_utf8_lossy(&result.stdout)
            .lines()
            .filter(|l| l.starts_with("-A "))
            .count();
        push(
            out,
            Level::warn_if(rules > 0),
            "iptables",
            format!(
                "{program}: {rules} legacy rules{}",
                if rules == 0 {
                    ""
                } else {
                    "; they run beside nftables and may drop or redirect meshed traffic first"
                }
            ),
        );
    }
}

fn docker_and_firewalld(host: &HostPaths, out: &mut Vec<Finding>) {
    if host.at("/run/docker.sock").exists() || host.at("/sys/class/net/docker0").exists() {
        push(
            out,
            Level::Warn,
            "docker",
            "Docker is present: containers' traffic is forwarded, not sent by the host, so it \
             is not captured; ports Docker publishes are rewritten before the inbound rules",
        );
    } else {
        push(out, Level::Ok, "docker", "not found");
    }
    if host.at("/run/firewalld").exists() {
        push(
            out,
            Level::Warn,
            "firewalld",
            "firewalld is running: allow the proxy's ports (15001, 15006) or its reloads may \
             drop redirected connections",
        );
    } else {
        push(out, Level::Ok, "firewalld", "not running");
    }
}

fn resolver(config: &AgentConfig, out: &mut Vec<Finding>) {
    let path = &config.dns.resolv_conf;
    let link = std::fs::read_link(path)
        .map(|t| format!(" (a link to {})", t.display()))
        .unwrap_or_default();
    match ResolvConf::read(path) {
        Ok(conf) => {
            let servers: Vec<String> = conf.nameservers.iter().map(|s| s.to_string()).collect();
            let search: Vec<String> = conf.search.iter().map(|s| s.to_string()).collect();
            push(
                out,
                Level::warn_if(servers.is_empty()),
                "resolver",
                format!(
                    "{}{link}: nameservers [{}], search [{}]",
                    path.display(),
                    servers.join(", "),
                    search.join(", ")
                ),
            );
            if conf
                .nameservers
                .iter()
                .any(|s| s.to_string() == "127.0.0.53")
            {
                push(
                    out,
                    Level::Note,
                    "resolver",
                    "systemd-resolved's stub 127.0.0.53: the DNS proxy forwards to it, and \
                     queries to it are captured",
                );
            }
        }
        Err(e) => push(out, Level::Warn, "resolver", e.to_string()),
    }
}

/// TCP ports in LISTEN state, from `/proc/net/tcp` and `tcp6`.
fn listening_ports(host: &HostPaths) -> Vec<u16> {
    let mut ports: Vec<u16> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(host.at(p)).ok())
        .flat_map(|text| parse_listening(&text))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Local ports of the LISTEN (`0A`) sockets in a `/proc/net/tcp` table.
pub fn parse_listening(text: &str) -> Vec<u16> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            (fields.get(3) == Some(&"0A")).then_some(())?;
            u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()
        })
        .collect()
}

/// `Port` lines of an sshd_config (22 when there is none).
pub fn sshd_ports(text: &str) -> Vec<u16> {
    let ports: Vec<u16> = text
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let key = words.next()?;
            key.eq_ignore_ascii_case("port")
                .then(|| words.next()?.parse().ok())?
        })
        .collect();
    if ports.is_empty() { vec![22] } else { ports }
}

fn ssh(config: &AgentConfig, host: &HostPaths, listening: &[u16], out: &mut Vec<Finding>) {
    let text = std::fs::read_to_string(host.at("/etc/ssh/sshd_config")).unwrap_or_default();
    for port in sshd_ports(&text) {
        let state = if listening.contains(&port) {
            "listening"
        } else {
            "not listening"
        };
        let inbound = if config.inbound_ports.contains_key(&port) {
            "inbound connections to it WOULD go through the proxy (it is in inboundPorts)"
        } else {
            "inbound connections to it are not captured"
        };
        let outbound = if config.interception.excluded_ports.contains(&port) {
            "outbound connections to it bypass the proxy"
        } else {
            "outbound connections to it go through the proxy (add it to excludedPorts to bypass)"
        };
        push(
            out,
            Level::warn_if(config.inbound_ports.contains_key(&port)),
            "ssh",
            format!(
                "sshd port {port} ({state}): {inbound}; {outbound}; open sessions survive (only new connections are redirected)"
            ),
        );
    }
}

fn ports_in_use(config: &AgentConfig, listening: &[u16], out: &mut Vec<Finding>) {
    let needed = [
        ("outbound listener", config.listeners.outbound.port()),
        ("inbound listener", config.listeners.inbound.port()),
        ("admin", config.admin_port),
        ("health", config.health_port),
    ];
    for (what, port) in needed {
        if listening.contains(&port) {
            push(
                out,
                Level::Note,
                "ports",
                format!("{port} ({what}) is taken: by the agent if it runs, else it cannot start"),
            );
        }
    }
}

fn plan(config: &AgentConfig, out: &mut Vec<Finding>) {
    let i = &config.interception;
    if !i.enabled {
        push(
            out,
            Level::Note,
            "capture",
            "interception is off: nothing is captured; only traffic sent to the proxy's ports is meshed",
        );
        return;
    }
    push(
        out,
        Level::Ok,
        "capture",
        format!(
            "new outbound TCP connections → 127.0.0.1:{}",
            config.listeners.outbound.port()
        ),
    );
    let mut bypass = vec![
        "loopback".to_owned(),
        format!("the control server {}", config.control_address),
    ];
    if let Some(mark) = i.mark {
        bypass.push(format!("sockets marked {mark} (the proxy's own)"));
    }
    if let Some(uid) = i.agent_uid {
        bypass.push(format!("sockets of uid {uid}"));
    }
    if !i.excluded_ports.is_empty() {
        bypass.push(format!("destination ports {:?}", i.excluded_ports));
    }
    if !i.excluded_cidrs.is_empty() {
        let cidrs: Vec<String> = i.excluded_cidrs.iter().map(|c| c.to_string()).collect();
        bypass.push(format!("networks [{}]", cidrs.join(", ")));
    }
    bypass.push("UDP other than DNS, and connections open before the agent started".to_owned());
    push(
        out,
        Level::Ok,
        "bypass",
        format!("not captured: {}", bypass.join("; ")),
    );
    if i.dns_capture {
        push(
            out,
            Level::Ok,
            "capture",
            format!("DNS (udp and tcp 53) → {}", config.dns.listen),
        );
    }
    let inbound: Vec<String> = config
        .inbound_ports
        .iter()
        .map(|(port, proto)| format!("{port}/{proto:?}"))
        .collect();
    push(
        out,
        Level::Ok,
        "capture",
        if inbound.is_empty() {
            "no inbound ports: connections to this host are not captured".to_owned()
        } else {
            format!(
                "inbound connections to [{}] → mutual TLS on :{}",
                inbound.join(", "),
                config.listeners.inbound.port()
            )
        },
    );
    push(
        out,
        Level::Note,
        "failure",
        format!(
            "fail mode {:?}: when the proxy stops answering the table is {}",
            i.fail_mode,
            match i.fail_mode {
                crate::config::FailMode::Open => "removed (traffic bypasses the mesh)",
                crate::config::FailMode::Closed => "kept (traffic stops until the proxy is back)",
            }
        ),
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counts_rules_per_table() {
        let ruleset = serde_json::json!({"nftables": [
            {"metainfo": {"json_schema_version": 1}},
            {"table": {"family": "inet", "name": "filter", "handle": 1}},
            {"table": {"family": "ip", "name": "nat", "handle": 2}},
            {"chain": {"family": "inet", "table": "filter", "name": "input"}},
            {"rule": {"family": "inet", "table": "filter", "chain": "input", "expr": []}},
            {"rule": {"family": "inet", "table": "filter", "chain": "input", "expr": []}},
        ]});
        assert_eq!(
            table_summary(&ruleset),
            vec![
                ("inet".into(), "filter".into(), 2),
                ("ip".into(), "nat".into(), 0)
            ]
        );
    }

    #[test]
    fn finds_listening_ports() {
        let text = "  sl  local_address rem_address   st\n   0: 00000000:0016 00000000:0000 0A 0\n   1: 0100007F:3A98 0100007F:0016 01 0\n";
        assert_eq!(parse_listening(text), vec![22]);
    }

    #[test]
    fn reads_sshd_ports() {
        assert_eq!(sshd_ports("#Port 22\nPermitRootLogin no\n"), vec![22]);
        assert_eq!(sshd_ports("Port 2222\nport 22\n"), vec![2222, 22]);
    }
}
