//! Coexistence with other tables' forward chains whose policy is drop
//! (Docker's `ip filter FORWARD`, any hand-made firewall).
//!
//! A packet crosses every base chain on the forward hook and a drop in any of
//! them is final, so an accept in dutnet's own table cannot get DUT traffic
//! past Docker's chain. dutnet inserts accept rules at the top of each such
//! chain, scoped to one DUT network (its DUT NIC, its upstream, its subnet,
//! conntrack state), never jumpstarter's `iifname <upstream> accept`, which
//! would open all forwarding on the host. Each rule carries the comment
//! [`rule_comment`] of its network: removal lists the chain and deletes by
//! handle only the rules with that comment, so it is safe after a crash
//! (nothing to remember but the comment) and after the other table was
//! recreated (its handles start again and may name somebody else's rules).
//!
//! Commands go through `nft -j -f -`: names from another table's JSON are
//! passed as JSON strings, never spliced into nft syntax.
use serde::Deserialize;
use serde_json::{Value, json};

use super::{FallbackNetwork, run};

/// firewalld's table: never touched (its zones decide what it forwards, and
/// a `firewall-cmd --reload` would drop anything added to it).
const FIREWALLD_TABLE: &str = "firewalld";

/// A base chain of another table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignChain {
    pub family: String,
    pub table: String,
    pub chain: String,
    /// The kernel's handle of the chain: a chain deleted and created again
    /// gets a new one, which is how a recreated chain is told from the one
    /// dutnet opened.
    pub handle: u64,
}

impl std::fmt::Display for ForeignChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.family, self.table, self.chain)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(transparent)]
    Nft(#[from] run::NftError),
    #[error("cannot read `nft -j` output ({what}): {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// The comment marking dutnet's rules for network `network` in other tables.
#[must_use]
pub fn rule_comment(network: &str) -> String {
    format!("dutnet network {network}")
}

#[derive(Deserialize)]
struct Listing {
    nftables: Vec<Value>,
}

#[derive(Deserialize)]
struct ChainInfo {
    family: String,
    table: String,
    name: String,
    #[serde(default)]
    handle: u64,
    hook: Option<String>,
    policy: Option<String>,
}

#[derive(Deserialize)]
struct RuleInfo {
    handle: u64,
    comment: Option<String>,
}

/// The base chains on the forward hook with policy drop in `nft -j list
/// chains` output, leaving out dutnet's own table and firewalld's. Only
/// families that see IPv4 forwarding (`ip`, `inet`) count.
pub fn drop_policy_forward_chains(listing: &str) -> Result<Vec<ForeignChain>, DockerError> {
    let listing: Listing = serde_json::from_str(listing).map_err(|source| DockerError::Json {
        what: "list chains",
        source,
    })?;
    let (own_family, own_table) = super::TABLE.split_once(' ').unwrap_or(("ip", "dutnet"));
    Ok(listing
        .nftables
        .into_iter()
        .filter_map(|item| serde_json::from_value::<ChainInfo>(item.get("chain")?.clone()).ok())
        .filter(|c| c.hook.as_deref() == Some("forward") && c.policy.as_deref() == Some("drop"))
        .filter(|c| matches!(c.family.as_str(), "ip" | "inet"))
        .filter(|c| !(c.family == own_family && c.table == own_table))
        .filter(|c| c.table != FIREWALLD_TABLE)
        .map(|c| ForeignChain {
            family: c.family,
            table: c.table,
            chain: c.name,
            handle: c.handle,
        })
        .collect())
}

/// The handles of the rules commented `comment` in `nft -j -a list chain`
/// output.
pub fn handles_with_comment(listing: &str, comment: &str) -> Result<Vec<u64>, DockerError> {
    let listing: Listing = serde_json::from_str(listing).map_err(|source| DockerError::Json {
        what: "list chain",
        source,
    })?;
    Ok(listing
        .nftables
        .into_iter()
        .filter_map(|item| serde_json::from_value::<RuleInfo>(item.get("rule")?.clone()).ok())
        .filter(|r| r.comment.as_deref() == Some(comment))
        .map(|r| r.handle)
        .collect())
}

fn equals(left: Value, right: Value) -> Value {
    json!({ "match": { "op": "==", "left": left, "right": right } })
}

fn member(left: Value, right: Value) -> Value {
    json!({ "match": { "op": "in", "left": left, "right": right } })
}

fn meta(key: &str) -> Value {
    json!({ "meta": { "key": key } })
}

fn ct(key: &str) -> Value {
    json!({ "ct": { "key": key } })
}

/// The accept rules (nft JSON expression lists) network `n` needs in a
/// drop-policy forward chain; none when it forwards nothing.
#[must_use]
pub fn accept_rules(n: &FallbackNetwork) -> Vec<Vec<Value>> {
    let Some(upstream) = &n.upstream_interface else {
        return Vec::new();
    };
    let subnet = n.subnet.trunc();
    let accept = json!({ "accept": null });
    let mut rules = Vec::new();
    // The upstream, and the VLAN sub-interfaces 1:1 DUTs are routed to.
    for way_out in std::iter::once(upstream).chain(&n.vlan_interfaces) {
        // The DUTs' own connections, from their subnet only.
        rules.push(vec![
            equals(meta("iifname"), json!(n.dut_interface)),
            equals(meta("oifname"), json!(way_out)),
            equals(
                json!({ "payload": { "protocol": "ip", "field": "saddr" } }),
                json!({ "prefix": { "addr": subnet.addr().to_string(), "len": subnet.prefix_len() } }),
            ),
            accept.clone(),
        ]);
        // Their replies.
        rules.push(vec![
            equals(meta("iifname"), json!(way_out)),
            equals(meta("oifname"), json!(n.dut_interface)),
            member(ct("state"), json!(["established", "related"])),
            accept.clone(),
        ]);
    }
    if !n.public.is_empty() {
        // New connections to a public address (DNAT by dutnet's table).
        rules.push(vec![
            equals(meta("oifname"), json!(n.dut_interface)),
            member(ct("status"), json!("dnat")),
            accept,
        ]);
    }
    rules
}

/// `nft -j -f` input applying `verb` (`insert`, `delete`) to one rule of
/// `chain` per item of `fields` (the rule's own JSON fields).
fn rule_script(verb: &str, chain: &ForeignChain, fields: impl Iterator<Item = Value>) -> String {
    let commands: Vec<Value> = fields
        .map(|mut rule| {
            rule["family"] = json!(chain.family);
            rule["table"] = json!(chain.table);
            rule["chain"] = json!(chain.chain);
            json!({ verb: { "rule": rule } })
        })
        .collect();
    json!({ "nftables": commands }).to_string()
}

/// `nft -j -f` input inserting `rules` at the top of `chain`, each
/// commented `comment`.
#[must_use]
pub fn insert_script(chain: &ForeignChain, comment: &str, rules: &[Vec<Value>]) -> String {
    let fields = rules
        .iter()
        .map(|expr| json!({ "comment": comment, "expr": expr }));
    rule_script("insert", chain, fields)
}

fn delete_script(chain: &ForeignChain, handles: &[u64]) -> String {
    rule_script(
        "delete",
        chain,
        handles.iter().map(|handle| json!({ "handle": handle })),
    )
}

/// The drop-policy forward chains of other tables on this host.
pub fn find_drop_policy_chains() -> Result<Vec<ForeignChain>, DockerError> {
    drop_policy_forward_chains(&run::nft_args(&["-j", "list", "chains"])?)
}

/// Inserts `rules` at the top of `chain`, in one transaction.
pub fn insert_rules(
    chain: &ForeignChain,
    comment: &str,
    rules: &[Vec<Value>],
) -> Result<(), DockerError> {
    if rules.is_empty() {
        return Ok(());
    }
    run::nft_json(&insert_script(chain, comment, rules))?;
    Ok(())
}

/// The handles of `chain`'s rules commented `comment`; none when the chain
/// is gone (Docker restarted, table deleted).
pub fn rules_with_comment(chain: &ForeignChain, comment: &str) -> Result<Vec<u64>, DockerError> {
    let Ok(listing) = run::nft_args(&[
        "-j",
        "-a",
        "list",
        "chain",
        &chain.family,
        &chain.table,
        &chain.chain,
    ]) else {
        return Ok(Vec::new());
    };
    handles_with_comment(&listing, comment)
}

/// Deletes every rule of `chain` commented `comment`; returns how many. A
/// chain that is gone (Docker restarted, table deleted) has none left.
pub fn delete_rules(chain: &ForeignChain, comment: &str) -> Result<usize, DockerError> {
    let handles = rules_with_comment(chain, comment)?;
    if !handles.is_empty() {
        run::nft_json(&delete_script(chain, &handles))?;
    }
    Ok(handles.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::PublicAddress;

    const CHAINS: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
      {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
      {"chain": {"family": "ip", "table": "filter", "name": "DOCKER-USER", "handle": 2}},
      {"chain": {"family": "inet", "table": "firewalld", "name": "filter_FORWARD", "handle": 3, "type": "filter", "hook": "forward", "prio": 10, "policy": "drop"}},
      {"chain": {"family": "ip", "table": "dutnet", "name": "forward", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
      {"chain": {"family": "inet", "table": "mine", "name": "fwd", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
      {"chain": {"family": "ip6", "table": "filter", "name": "FORWARD", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
      {"chain": {"family": "inet", "table": "fw", "name": "forward", "handle": 4, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}}]}"#;

    #[test]
    fn only_other_tables_ipv4_forward_chains_with_a_drop_policy_count() {
        let chains = drop_policy_forward_chains(CHAINS).unwrap();
        let names: Vec<String> = chains.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["ip filter FORWARD", "inet fw forward"]);
    }

    #[test]
    fn no_chains_is_no_chains() {
        let listing = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}]}"#;
        assert!(drop_policy_forward_chains(listing).unwrap().is_empty());
        assert!(drop_policy_forward_chains("not json").is_err());
    }

    #[test]
    fn removal_finds_only_rules_with_the_networks_comment() {
        let listing = r#"{"nftables": [{"metainfo": {}},
          {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "handle": 1}},
          {"rule": {"family": "ip", "table": "filter", "chain": "FORWARD", "handle": 7, "comment": "dutnet network a", "expr": []}},
          {"rule": {"family": "ip", "table": "filter", "chain": "FORWARD", "handle": 8, "expr": []}},
          {"rule": {"family": "ip", "table": "filter", "chain": "FORWARD", "handle": 9, "comment": "dutnet network ab", "expr": []}},
          {"rule": {"family": "ip", "table": "filter", "chain": "FORWARD", "handle": 10, "comment": "dutnet network a", "expr": []}}]}"#;
        assert_eq!(
            handles_with_comment(listing, &rule_comment("a")).unwrap(),
            [7, 10]
        );
    }

    fn network(upstream: Option<&str>) -> FallbackNetwork {
        FallbackNetwork {
            name: "a".to_owned(),
            dut_interface: "dn-dut1".to_owned(),
            subnet: "192.168.100.1/24".parse().unwrap(),
            upstream_interface: upstream.map(str::to_owned),
            public: Vec::new(),
            vlan_interfaces: Vec::new(),
            filter: None,
            ntp_redirect: None,
        }
    }

    #[test]
    fn a_forwarding_network_opens_its_subnet_outwards_and_its_replies_inwards_only() {
        let rules = accept_rules(&network(Some("dn-up")));
        assert_eq!(rules.len(), 2);
        let text = serde_json::to_string(&rules).unwrap();
        assert!(
            text.contains(r#"{"prefix":{"addr":"192.168.100.0","len":24}}"#),
            "{text}"
        );
        assert!(text.contains(r#"["established","related"]"#), "{text}");
        // Every rule names the DUT NIC: nothing else on the host is opened.
        for rule in &rules {
            assert!(serde_json::to_string(rule).unwrap().contains("dn-dut1"));
        }
    }

    #[test]
    fn one_to_one_also_lets_translated_connections_in_and_disabled_opens_nothing() {
        let mut n = network(Some("dn-up"));
        n.public.push(PublicAddress::new(
            "192.168.100.10".parse().unwrap(),
            "10.99.0.51".parse().unwrap(),
        ));
        let rules = accept_rules(&n);
        assert_eq!(rules.len(), 3);
        assert!(serde_json::to_string(&rules[2]).unwrap().contains("dnat"));
        assert!(accept_rules(&network(None)).is_empty());
    }

    #[test]
    fn a_vlan_sub_interface_is_opened_like_the_upstream() {
        let mut n = network(Some("dn-up"));
        n.vlan_interfaces.push("dn-up.905".to_owned());
        let rules = accept_rules(&n);
        assert_eq!(rules.len(), 4);
        let vlan: Vec<String> = rules
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .filter(|r| r.contains("dn-up.905"))
            .collect();
        assert_eq!(vlan.len(), 2, "{rules:?}");
        assert!(vlan.iter().all(|r| r.contains("dn-dut1")), "{vlan:?}");
    }

    #[test]
    fn names_travel_as_json_strings() {
        let chain = ForeignChain {
            family: "ip".to_owned(),
            table: "filter".to_owned(),
            chain: "FOR\"WARD".to_owned(),
            handle: 1,
        };
        let script = insert_script(
            &chain,
            "dutnet network a",
            &accept_rules(&network(Some("up"))),
        );
        let parsed: Value = serde_json::from_str(&script).unwrap();
        assert_eq!(
            parsed["nftables"][0]["insert"]["rule"]["chain"],
            "FOR\"WARD"
        );
    }
}
