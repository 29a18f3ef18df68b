//! The filter rules' counters in dutnet's table, found by their comments
//! (`ruleset::filter_comment`): what the kernel judged, on the nft
//! datapath, and what the fast path left to the kernel beside it.
use std::collections::BTreeMap;

use serde_json::Value;

use super::{NftError, run};
use crate::datapath::filter::{DirectionHits, FilterHits};

/// Each network's counts, by network name, from `nft -j list table` output.
#[must_use]
pub fn parse(listing: &str) -> BTreeMap<String, FilterHits> {
    let mut out: BTreeMap<String, FilterHits> = BTreeMap::new();
    let Ok(json) = serde_json::from_str::<Value>(listing) else {
        return out;
    };
    let items = json["nftables"].as_array().cloned().unwrap_or_default();
    for rule in items.iter().filter_map(|i| i.get("rule")) {
        let Some(comment) = rule["comment"].as_str() else {
            continue;
        };
        let Some((network, which, rule_number)) = parse_comment(comment) else {
            continue;
        };
        let packets = rule["expr"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|e| e.get("counter")?.get("packets")?.as_u64())
            .unwrap_or(0);
        let hits = out.entry(network.to_owned()).or_default();
        let direction = match which {
            "egress" => &mut hits.egress,
            _ => &mut hits.ingress,
        };
        let direction = direction.get_or_insert_with(DirectionHits::default);
        match rule_number {
            Some(i) => {
                if direction.rules.len() <= i {
                    direction.rules.resize(i + 1, 0);
                }
                direction.rules[i] += packets;
            }
            None => direction.policy += packets,
        }
    }
    out
}

/// (network, direction, rule number or `None` for the policy).
fn parse_comment(comment: &str) -> Option<(&str, &str, Option<usize>)> {
    let rest = comment.strip_prefix("dutnet network ")?;
    let (network, rest) = rest.split_once(" filter ")?;
    let (which, what) = rest.split_once(' ')?;
    if !matches!(which, "egress" | "ingress") {
        return None;
    }
    let rule = match what {
        "policy" => None,
        _ => Some(what.strip_prefix("rule ")?.parse().ok()?),
    };
    Some((network, which, rule))
}

/// The counts in the kernel's table now.
pub fn read() -> Result<BTreeMap<String, FilterHits>, NftError> {
    let (family, name) = super::TABLE.split_once(' ').unwrap_or(("ip", "dutnet"));
    Ok(parse(&run::nft_args(&[
        "-j", "list", "table", family, name,
    ])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_by_their_comments() {
        let listing = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
          {"rule": {"family": "ip", "table": "dutnet", "chain": "forward", "handle": 4,
            "comment": "dutnet network lab-a filter egress rule 1",
            "expr": [{"match": {}}, {"counter": {"packets": 7, "bytes": 420}}, {"drop": null}]}},
          {"rule": {"family": "ip", "table": "dutnet", "chain": "forward", "handle": 5,
            "comment": "dutnet network lab-a filter egress policy",
            "expr": [{"counter": {"packets": 2, "bytes": 120}}, {"accept": null}]}},
          {"rule": {"family": "ip", "table": "dutnet", "chain": "forward", "handle": 6,
            "comment": "dutnet network lab-a",
            "expr": [{"counter": {"packets": 99, "bytes": 1}}, {"drop": null}]}}]}"#;
        let hits = parse(listing);
        let egress = hits["lab-a"].egress.as_ref().unwrap();
        assert_eq!(egress.rules, [0, 7]);
        assert_eq!(egress.policy, 2);
        assert!(hits["lab-a"].ingress.is_none());
        assert!(parse("not json").is_empty());
    }
}
