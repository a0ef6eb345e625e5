//! Builds the `inet hostmesh` table as typed nftables JSON.
//!
//! Pure: configuration in, JSON objects out. The rules are written in the canonical form that
//! `nft -j list ruleset` prints back (implicit protocol dependencies left out, one-element sets
//! as plain values), so that what is installed can be compared with what was built.
//!
//! Chain `output` (nat, priority -100), in order:
//! 1. traffic of the agent's uid or carrying its mark returns (the proxy's own connections);
//! 2. DNS over udp port 53 goes to the DNS proxy;
//! 3. anything but TCP returns; then anything but a first SYN returns, so installing or
//!    replacing the table never touches established connections (host-lab pitfall 1);
//! 4. DNS over tcp port 53 goes to the DNS proxy (before the loopback exclusion, so a local stub
//!    resolver such as 127.0.0.53 is captured too);
//! 5. loopback, the control server, excluded ports and excluded networks return;
//! 6. all other TCP goes to the outbound port.
//!
//! Chain `prerouting` (nat, priority dstnat), only when workload ports are declared: first SYNs
//! to those ports go to the inbound port.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use nftables::batch::Batch;
use nftables::expr::{BinaryOperation, Expression, Meta, MetaKey, NamedExpression, Payload};
use nftables::expr::{PayloadField, Prefix, SetItem};
use nftables::schema::{Chain, NfListObject, NfObject, Nftables, Rule, Table};
use nftables::stmt::{Match, NAT, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::config::InterceptionConfig;

/// The one table the agent owns.
pub const TABLE: &str = "hostmesh";
/// Its family.
pub const FAMILY: NfFamily = NfFamily::INet;

const OUTPUT: &str = "output";
const PREROUTING: &str = "prerouting";
/// `dstnat`; the output hook refuses the name in nft 1.0.6, so both chains use the number.
const NAT_PRIORITY: i32 = -100;

/// One transaction that replaces the table: `add table` (so the delete cannot fail),
/// `delete table`, then the whole new table. Other tables are untouched.
pub fn replace_batch(config: &InterceptionConfig) -> Nftables<'static> {
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(table()));
    batch.delete(NfListObject::Table(table()));
    for object in table_objects(config) {
        batch.add(object);
    }
    batch.to_nftables()
}

/// One transaction that removes the table if it is there and succeeds if it is not.
pub fn remove_batch() -> Nftables<'static> {
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(table()));
    batch.delete(NfListObject::Table(table()));
    batch.to_nftables()
}

/// The table, its chains and its rules, as `nft -j list ruleset` shows them (less handles).
pub fn table_objects(config: &InterceptionConfig) -> Vec<NfListObject<'static>> {
    let mut objects = vec![NfListObject::Table(table())];
    let inbound = inbound_rules(config);
    objects.push(NfListObject::Chain(nat_chain(OUTPUT, NfHook::Output)));
    if !inbound.is_empty() {
        objects.push(NfListObject::Chain(nat_chain(
            PREROUTING,
            NfHook::Prerouting,
        )));
    }
    objects.extend(
        outbound_rules(config)
            .into_iter()
            .map(|expr| NfListObject::Rule(rule(OUTPUT, expr))),
    );
    objects.extend(
        inbound
            .into_iter()
            .map(|expr| NfListObject::Rule(rule(PREROUTING, expr))),
    );
    objects
}

/// Wraps list objects the way `nft -j` prints them.
pub fn as_ruleset(objects: Vec<NfListObject<'static>>) -> Nftables<'static> {
    Nftables {
        objects: Cow::Owned(objects.into_iter().map(NfObject::ListObject).collect()),
    }
}

type Exprs = Vec<Statement<'static>>;

fn outbound_rules(config: &InterceptionConfig) -> Vec<Exprs> {
    let mut rules = Vec::new();
    if let Some(uid) = config.skip_uid {
        rules.push(vec![
            eq(meta(MetaKey::Skuid), Expression::Number(uid)),
            ret(),
        ]);
    }
    if let Some(mark) = config.skip_mark {
        rules.push(vec![
            eq(meta(MetaKey::Mark), Expression::Number(mark)),
            ret(),
        ]);
    }
    if config.dns_capture {
        rules.push(dns_redirect(config, "udp"));
    }
    rules.push(vec![neq(meta(MetaKey::L4proto), text("tcp")), ret()]);
    rules.push(not_first_syn());
    if config.dns_capture {
        rules.push(dns_redirect(config, "tcp"));
    }
    rules.push(vec![
        eq(payload("ip", "daddr"), prefix("127.0.0.0", 8)),
        ret(),
    ]);
    rules.push(vec![eq(payload("ip6", "daddr"), text("::1")), ret()]);
    for server in &config.control_servers {
        rules.push(vec![
            eq(daddr(server.ip()), text(server.ip().to_string())),
            eq(payload("tcp", "dport"), port(server)),
            ret(),
        ]);
    }
    if !config.excluded_ports.is_empty() {
        let ports = config
            .excluded_ports
            .iter()
            .map(|p| Expression::Number(u32::from(*p)));
        rules.push(vec![eq(payload("tcp", "dport"), one_or_set(ports)), ret()]);
    }
    for (proto, nets) in split_families(config.excluded_cidrs.iter()) {
        if !nets.is_empty() {
            let nets = nets.into_iter().map(network);
            rules.push(vec![eq(payload(proto, "daddr"), one_or_set(nets)), ret()]);
        }
    }
    rules.push(vec![
        eq(meta(MetaKey::L4proto), text("tcp")),
        redirect(config.outbound_port),
    ]);
    rules
}

fn inbound_rules(config: &InterceptionConfig) -> Vec<Exprs> {
    if config.inbound_ports.is_empty() {
        return Vec::new();
    }
    let ports = config
        .inbound_ports
        .iter()
        .map(|p| Expression::Number(u32::from(*p)));
    vec![
        not_first_syn(),
        vec![
            eq(payload("tcp", "dport"), one_or_set(ports)),
            redirect(config.inbound_port),
        ],
    ]
}

/// DNS over `proto` port 53 to the DNS proxy. `redirect` sends locally generated packets to
/// 127.0.0.1 (or ::1), where the proxy listens, so its replies come from the address the
/// client's connected socket expects once conntrack reverses the NAT (host-lab pitfall 2).
fn dns_redirect(config: &InterceptionConfig, proto: &'static str) -> Exprs {
    let mut rule = Vec::new();
    if !config.dns_ipv6 {
        rule.push(eq(meta(MetaKey::Nfproto), text("ipv4")));
    }
    rule.push(eq(payload(proto, "dport"), Expression::Number(53)));
    rule.push(redirect(config.dns_port));
    rule
}

/// `tcp flags & (syn | ack) != syn return`: only a connection's first packet is redirected.
fn not_first_syn() -> Exprs {
    let flags = Expression::BinaryOperation(Box::new(BinaryOperation::AND(
        payload("tcp", "flags"),
        Expression::List(vec![text("syn"), text("ack")]),
    )));
    vec![neq(flags, text("syn")), ret()]
}

fn table() -> Table<'static> {
    Table {
        family: FAMILY,
        name: Cow::Borrowed(TABLE),
        handle: None,
    }
}

fn nat_chain(name: &'static str, hook: NfHook) -> Chain<'static> {
    Chain {
        family: FAMILY,
        table: Cow::Borrowed(TABLE),
        name: Cow::Borrowed(name),
        _type: Some(NfChainType::NAT),
        hook: Some(hook),
        prio: Some(NAT_PRIORITY),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }
}

fn rule(chain: &'static str, expr: Exprs) -> Rule<'static> {
    Rule {
        family: FAMILY,
        table: Cow::Borrowed(TABLE),
        chain: Cow::Borrowed(chain),
        expr: Cow::Owned(expr),
        ..Rule::default()
    }
}

fn split_families<'a>(nets: impl Iterator<Item = &'a IpNet>) -> [(&'static str, Vec<IpNet>); 2] {
    let (v4, v6) = nets.partition(|n| matches!(n, IpNet::V4(_)));
    [("ip", v4), ("ip6", v6)]
}

fn daddr(ip: IpAddr) -> Expression<'static> {
    match ip {
        IpAddr::V4(_) => payload("ip", "daddr"),
        IpAddr::V6(_) => payload("ip6", "daddr"),
    }
}

fn port(addr: &SocketAddr) -> Expression<'static> {
    Expression::Number(u32::from(addr.port()))
}

/// A host route is printed as a plain address, anything wider as a prefix.
fn network(net: IpNet) -> Expression<'static> {
    if net.prefix_len() == net.max_prefix_len() {
        text(net.addr().to_string())
    } else {
        prefix(net.network().to_string(), u32::from(net.prefix_len()))
    }
}

fn prefix(addr: impl Into<String>, len: u32) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(text(addr.into())),
        len,
    }))
}

/// nft prints a one-element anonymous set as the element itself.
fn one_or_set(items: impl Iterator<Item = Expression<'static>>) -> Expression<'static> {
    let mut items: Vec<_> = items.collect();
    if items.len() == 1
        && let Some(only) = items.pop()
    {
        return only;
    }
    Expression::Named(NamedExpression::Set(
        items.into_iter().map(SetItem::Element).collect(),
    ))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Borrowed(protocol),
            field: Cow::Borrowed(field),
        },
    )))
}

fn text(s: impl Into<Cow<'static, str>>) -> Expression<'static> {
    Expression::String(s.into())
}

fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

fn neq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::NEQ,
    })
}

fn ret() -> Statement<'static> {
    Statement::Return(None)
}

fn redirect(to_port: u16) -> Statement<'static> {
    Statement::Redirect(Some(NAT {
        addr: None,
        family: None,
        port: Some(Expression::Number(u32::from(to_port))),
        flags: None,
    }))
}
