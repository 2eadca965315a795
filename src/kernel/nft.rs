//! ftpgate's own nftables table, spoken over netlink (rustables): the table and its three
//! base chains, and the handful of rules one kernel-forwarded data connection needs.
//!
//! Nothing here touches another table. Every rule carries `ftpgate <id> <kind>` as its
//! user data, so a transfer finds (counters) and removes (handles) exactly its own rules.

use rustables::expr::{
    Bitwise, Cmp, CmpOp, Counter, ExpressionVariant, Immediate, Nat, NatType, Payload, Register,
};
use rustables::{
    list_rules_for_chain, Batch, Chain, ChainPolicy, ChainType, Hook, HookClass, MsgType, Protocol,
    ProtocolFamily, Rule, Table,
};
use std::net::{IpAddr, SocketAddr};

/// The one table ftpgate owns (family `inet`, so one table serves IPv4 and IPv6).
pub const TABLE: &str = "ftpgate";
const PREROUTING: &str = "prerouting";
const POSTROUTING: &str = "postrouting";
const FORWARD: &str = "forward";

/// `NFT_PAYLOAD_TRANSPORT_HEADER`: payload offsets count from the TCP header.
const TRANSPORT_HEADER: u32 = 2;
/// The TCP flags byte.
const TCP_FLAGS_OFFSET: u32 = 13;
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;

#[derive(Debug, thiserror::Error)]
#[error("nftables: {0}")]
pub struct NftError(#[from] rustables::error::QueryError);

impl From<rustables::error::BuilderError> for NftError {
    fn from(e: rustables::error::BuilderError) -> Self {
        NftError(e.into())
    }
}

fn table() -> Table {
    Table::new(ProtocolFamily::Inet).with_name(TABLE)
}

fn chain(name: &str) -> Chain {
    Chain::new(&table()).with_name(name)
}

fn rule(chain_name: &str) -> Result<Rule, NftError> {
    Ok(Rule::new(&chain(chain_name))?)
}

/// Deletes ftpgate's table with everything in it (mappings a killed ftpgate left behind)
/// and creates it afresh with its base chains.
pub fn reset() -> Result<(), NftError> {
    remove_table();
    let mut batch = Batch::new();
    batch.add(&table(), MsgType::Add);
    let chains = [
        (PREROUTING, HookClass::PreRouting, -100, ChainType::Nat),
        (POSTROUTING, HookClass::PostRouting, 100, ChainType::Nat),
        (FORWARD, HookClass::Forward, 0, ChainType::Filter),
    ];
    for (name, class, priority, kind) in chains {
        let c = chain(name)
            .with_hook(Hook::new(class, priority))
            .with_type(kind)
            .with_policy(ChainPolicy::Accept);
        batch.add(&c, MsgType::Add);
    }
    batch.send()?;
    Ok(())
}

/// Deletes the table; absent is fine.
pub fn remove_table() {
    let mut batch = Batch::new();
    batch.add(&table(), MsgType::Del);
    let _ = batch.send();
}

/// One forwarded connection: `peer` connects to our `local` address, the kernel rewrites
/// it to `target` with `source` (ours, facing the target) as its new source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub peer: IpAddr,
    /// `None` port-only match when the listener is bound to the unspecified address.
    pub local_ip: Option<IpAddr>,
    pub local_port: u16,
    pub target: SocketAddr,
    pub source: IpAddr,
}

/// What a transfer's rules have counted so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Packets with FIN or RST from the peer's side / from the target's side.
    pub ended_peer: u64,
    pub ended_target: u64,
    pub resets: u64,
    /// Later new connections of the flow, dropped.
    pub blocked: u64,
    /// Packets and bytes (IP headers included) from the peer's side and from the
    /// target's side, SYNs excluded: the direction of the data is known only later.
    pub peer_packets: u64,
    pub peer_bytes: u64,
    pub target_packets: u64,
    pub target_bytes: u64,
}

const KINDS: [&str; 8] = [
    "dnat",
    "snat",
    "end-peer",
    "end-target",
    "rst-peer",
    "rst-target",
    "data-peer",
    "data-target",
];

fn tag(id: u64, kind: &str) -> Vec<u8> {
    format!("ftpgate {id} {kind}").into_bytes()
}

fn family(ip: IpAddr) -> ProtocolFamily {
    match ip {
        IpAddr::V4(_) => ProtocolFamily::Ipv4,
        IpAddr::V6(_) => ProtocolFamily::Ipv6,
    }
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// `peer -> target:port` after DNAT, as the forward and postrouting hooks see it.
fn towards_target(chain_name: &str, f: &Flow) -> Result<Rule, NftError> {
    Ok(rule(chain_name)?
        .saddr(f.peer)
        .daddr(f.target.ip())
        .dport(f.target.port(), Protocol::TCP))
}

/// `target:port -> peer`: the replies, already un-SNATed in prerouting.
fn from_target(f: &Flow) -> Result<Rule, NftError> {
    Ok(rule(FORWARD)?
        .saddr(f.target.ip())
        .sport(f.target.port(), Protocol::TCP)
        .daddr(f.peer))
}

/// Matches packets whose TCP flags, masked, are (`eq`) or are not zero.
fn flags(rule: Result<Rule, NftError>, mask: u8, zero: bool) -> Result<Rule, NftError> {
    let op = if zero { CmpOp::Eq } else { CmpOp::Neq };
    Ok(rule?
        .with_expr(
            Payload::default()
                .with_base(TRANSPORT_HEADER)
                .with_offset(TCP_FLAGS_OFFSET)
                .with_len(1u32)
                .with_dreg(Register::Reg1),
        )
        .with_expr(Bitwise::new([mask], [0])?)
        .with_expr(Cmp::new(op, [0]))
        .with_expr(Counter::default()))
}

/// Installs the mapping and its counters in one netlink batch (all or nothing).
pub fn install(id: u64, f: &Flow) -> Result<(), NftError> {
    let mut dnat = rule(PREROUTING)?.saddr(f.peer);
    if let Some(ip) = f.local_ip {
        dnat = dnat.daddr(ip);
    }
    let dnat = dnat
        .dport(f.local_port, Protocol::TCP)
        .with_expr(Counter::default())
        .with_expr(Immediate::new_data(ip_bytes(f.target.ip()), Register::Reg1))
        .with_expr(Immediate::new_data(
            f.target.port().to_be_bytes().to_vec(),
            Register::Reg2,
        ))
        .with_expr(
            Nat::default()
                .with_nat_type(NatType::DNat)
                .with_family(family(f.target.ip()))
                .with_ip_register(Register::Reg1)
                .with_port_register(Register::Reg2),
        );
    let snat = towards_target(POSTROUTING, f)?
        .with_expr(Immediate::new_data(ip_bytes(f.source), Register::Reg1))
        .with_expr(
            Nat::default()
                .with_nat_type(NatType::SNat)
                .with_family(family(f.source))
                .with_ip_register(Register::Reg1),
        );
    // Each counts the packets (and bytes) whose flags match.
    let end_peer = flags(towards_target(FORWARD, f), FIN | RST, false)?;
    let end_target = flags(from_target(f), FIN | RST, false)?;
    let rst_peer = flags(towards_target(FORWARD, f), RST, false)?;
    let rst_target = flags(from_target(f), RST, false)?;
    let data_peer = flags(towards_target(FORWARD, f), SYN, true)?;
    let data_target = flags(from_target(f), SYN, true)?;

    let mut batch = Batch::new();
    let rules = [
        dnat,
        snat,
        end_peer,
        end_target,
        rst_peer,
        rst_target,
        data_peer,
        data_target,
    ];
    for (rule, kind) in rules.into_iter().zip(KINDS) {
        batch.add(&rule.with_userdata(tag(id, kind)), MsgType::Add);
    }
    batch.send()?;
    Ok(())
}

/// The rules of transfer `id` in one chain: (kind, handle, counter).
fn rules_of(chain_name: &str, id: u64) -> Result<Vec<(String, u64, Counter)>, NftError> {
    let prefix = format!("ftpgate {id} ");
    let mut out = Vec::new();
    for rule in list_rules_for_chain(&chain(chain_name))? {
        let Some(kind) = rule
            .get_userdata()
            .and_then(|u| std::str::from_utf8(u).ok())
            .and_then(|u| u.strip_prefix(&prefix))
        else {
            continue;
        };
        let Some(&handle) = rule.get_handle() else {
            continue;
        };
        let counter = rule
            .get_expressions()
            .into_iter()
            .flat_map(|e| e.iter())
            .find_map(|e| match e.get_data() {
                Some(ExpressionVariant::Counter(c)) => Some(c.clone()),
                _ => None,
            })
            .unwrap_or_default();
        out.push((kind.to_owned(), handle, counter));
    }
    Ok(out)
}

fn packets(c: &Counter) -> u64 {
    c.get_nb_packets().copied().unwrap_or(0)
}

/// Connections the DNAT rule has rewritten (a NAT chain sees each connection once).
pub fn mapped(id: u64) -> Result<u64, NftError> {
    Ok(rules_of(PREROUTING, id)?
        .iter()
        .filter(|(k, _, _)| k == "dnat")
        .map(|(_, _, c)| packets(c))
        .sum())
}

/// Reads the forward-hook counters of transfer `id` (one dump of that chain).
pub fn counts(id: u64) -> Result<Counts, NftError> {
    let mut out = Counts::default();
    for (kind, _, c) in rules_of(FORWARD, id)? {
        let n = packets(&c);
        match kind.as_str() {
            "end-peer" => out.ended_peer += n,
            "end-target" => out.ended_target += n,
            "rst-peer" | "rst-target" => out.resets += n,
            "block" => out.blocked += n,
            "data-peer" => {
                out.peer_packets += n;
                out.peer_bytes += c.get_nb_bytes().copied().unwrap_or(0);
            }
            "data-target" => {
                out.target_packets += n;
                out.target_bytes += c.get_nb_bytes().copied().unwrap_or(0);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Once the first connection is mapped: drops every further new connection of the
/// flow in the forward hook, so the mapping carries exactly one. (The NAT rules stay
/// until the transfer ends: deleting them under an established connection was seen to
/// break it on Linux 6.x.)
pub fn block_new(id: u64, f: &Flow) -> Result<(), NftError> {
    let state = rustables::expr::ConnTrackState::NEW.bits();
    let rule = towards_target(FORWARD, f)?
        .with_expr(rustables::expr::Conntrack::new(
            rustables::expr::ConntrackKey::State,
        ))
        .with_expr(Bitwise::new(state.to_le_bytes(), 0u32.to_be_bytes())?)
        .with_expr(Cmp::new(CmpOp::Neq, 0u32.to_be_bytes()))
        .with_expr(Counter::default())
        .drop()
        .with_userdata(tag(id, "block"));
    let mut batch = Batch::new();
    batch.add(&rule, MsgType::Add);
    batch.send()?;
    Ok(())
}

/// Removes every rule of transfer `id`.
pub fn remove(id: u64) -> Result<(), NftError> {
    let mut batch = Batch::new();
    let mut any = false;
    for name in [PREROUTING, POSTROUTING, FORWARD] {
        for (_, handle, _) in rules_of(name, id)? {
            let rule = rule(name)?.with_handle(handle);
            batch.add(&rule, MsgType::Del);
            any = true;
        }
    }
    if any {
        batch.send()?;
    }
    Ok(())
}
