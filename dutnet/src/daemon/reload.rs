//! `dutnet reload` and SIGHUP: the file read again, checked completely,
//! then only the difference applied. A network whose config did not change
//! is not touched (its flows, leases and sockets stay); one whose address
//! entries, DNS entries or timeouts changed takes them live; any other
//! change restarts that network alone. Runtime changes saved through the
//! control socket are applied on top of the new file, and those that no
//! longer fit are reported, never dropped silently.
use std::path::PathBuf;

use tracing::{info, warn};

use super::{
    DaemonError, nat,
    network::{NetworkContext, apply_saved_changes},
    restore,
    supervisor::Daemon,
};
use crate::{
    config::{self, DatapathChoice, Network},
    control::{Failure, Reply, protocol::ReloadSummary},
    datapath::select,
};

/// Where a reload reads the configuration from.
#[derive(Clone, Debug)]
pub struct ReloadSource {
    pub file: PathBuf,
    /// `dutnet load --datapath`, which overrides the file's.
    pub datapath: Option<DatapathChoice>,
}

/// What a reload will do, by network name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// In both, with a different config (runtime changes included).
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
}

/// Compares the running networks with the wanted ones (by name).
pub fn plan(running: &[(&Network, Option<u32>)], wanted: &[(Network, Option<u32>)]) -> ReloadPlan {
    let mut plan = ReloadPlan::default();
    for (net, mark) in running {
        match wanted.iter().find(|(w, _)| w.name == net.name) {
            None => plan.removed.push(net.name.clone()),
            Some((w, m)) if w == *net && m == mark => plan.unchanged.push(net.name.clone()),
            Some(_) => plan.changed.push(net.name.clone()),
        }
    }
    for (w, _) in wanted {
        if !running.iter().any(|(n, _)| n.name == w.name) {
            plan.added.push(w.name.clone());
        }
    }
    plan
}

impl Daemon {
    /// Reloads the file; on any problem with it nothing changes.
    pub(super) async fn reload(&mut self) -> Result<Reply, Failure> {
        let Some(source) = self.reload_from.clone() else {
            return Err(Failure::invalid(
                "this dutnet was not started from a configuration file; nothing to reload",
            ));
        };
        let fail = |e: &dyn std::fmt::Display| {
            Failure::invalid(format!(
                "{} is not a valid dutnet configuration: {e}; nothing was changed, dutnet keeps running the networks it has",
                source.file.display()
            ))
        };
        let mut loaded = config::load_file(&source.file).map_err(|e| fail(&e))?;
        if let Some(choice) = source.datapath {
            for net in &mut loaded.networks {
                net.datapath = choice;
            }
            config::check_datapaths(&loaded.networks).map_err(|e| fail(&e))?;
        }
        // The saved runtime changes, on top of the new file.
        let mut conflicts = Vec::new();
        let mut wanted = Vec::new();
        for mut net in loaded.networks {
            conflicts.extend(
                apply_saved_changes(&mut net, &self.paths)
                    .into_iter()
                    .map(|c| format!("network `{}`: {c}", net.name)),
            );
            wanted.push(net);
        }
        let marks = nat::reply_marks(&wanted.iter().collect::<Vec<_>>());
        let wanted: Vec<(Network, Option<u32>)> = wanted.into_iter().zip(marks).collect();
        self.check_backends(&wanted).map_err(|e| fail(&e))?;
        let running: Vec<(&Network, Option<u32>)> = self
            .networks
            .iter()
            .map(|n| (&n.config, n.reply_mark))
            .collect();
        let plan = plan(&running, &wanted);

        let mut problems = Vec::new();
        for name in &plan.removed {
            if let Err(e) = self.remove_network(name).await {
                problems.push(e.to_string());
            }
        }
        for name in &plan.changed {
            let Some((config, mark)) = wanted.iter().find(|(w, _)| &w.name == name).cloned() else {
                continue;
            };
            let Some(index) = self.networks.iter().position(|n| n.name() == name) else {
                continue;
            };
            let net = &mut self.networks[index];
            if net.reply_mark == mark {
                match net
                    .apply_live(config.clone(), &mut self.exporter, &mut self.datapath)
                    .await
                {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(entries) => {
                        problems.extend(
                            entries
                                .into_iter()
                                .map(|e| format!("network `{name}`: {e}")),
                        );
                        continue;
                    }
                }
            }
            // Anything else: the network alone is restarted.
            if let Err(e) = self.remove_network(name).await {
                problems.push(e.to_string());
            }
            self.add_network(config, mark, &mut problems).await;
        }
        for name in &plan.added {
            if let Some((config, mark)) = wanted.iter().find(|(w, _)| &w.name == name).cloned() {
                self.add_network(config, mark, &mut problems).await;
            }
        }
        // The order of the file, for status and stats.
        let order: Vec<&str> = wanted.iter().map(|(w, _)| w.name.as_str()).collect();
        self.networks.sort_by_key(|n| {
            order
                .iter()
                .position(|o| *o == n.name())
                .unwrap_or(usize::MAX)
        });
        if !plan.added.is_empty() || !plan.removed.is_empty() || !plan.changed.is_empty() {
            self.reopen_foreign_chains();
        }
        for c in &conflicts {
            warn!("reload: {c}");
        }
        info!(added = ?plan.added, removed = ?plan.removed, changed = ?plan.changed, unchanged = plan.unchanged.len(), "configuration reloaded");
        problems.extend(conflicts);
        Ok(Reply::Reloaded {
            summary: ReloadSummary {
                added: plan.added,
                removed: plan.removed,
                changed: plan.changed,
                unchanged: plan.unchanged,
                problems,
            },
        })
    }

    /// Refuses what the running datapaths cannot carry: a network that
    /// needs eBPF when the programs are not loaded, and same-subnet
    /// networks of which one would run on nft.
    fn check_backends(&self, wanted: &[(Network, Option<u32>)]) -> Result<(), String> {
        if self.datapath.has_fast_path() {
            // `auto` networks run on the programs, and networks that chose
            // nft were checked with the file.
            return Ok(());
        }
        if let Some((w, _)) = wanted
            .iter()
            .find(|(w, _)| w.datapath == DatapathChoice::Ebpf)
        {
            return Err(format!(
                "network `{}` asks for `datapath: ebpf`, but this dutnet runs without the eBPF programs (they did not load at start); restart dutnet to load them, or use `datapath: auto`",
                w.name
            ));
        }
        let refs: Vec<&Network> = wanted.iter().map(|(w, _)| w).collect();
        select::check_fallback_subnets(&refs).map_err(|e| e.to_string())
    }

    /// Takes network `name` down and undoes what was done for it alone.
    async fn remove_network(&mut self, name: &str) -> Result<(), DaemonError> {
        let Some(index) = self.networks.iter().position(|n| n.name() == name) else {
            return Ok(());
        };
        let mut net = self.networks.remove(index);
        net.deconfigure(&mut self.datapath).await;
        self.datapath.remove_network(&net.config.interface)?;
        let entries = self.exporter.journal.take_network(name)?;
        let undone = restore::undo(&entries, &self.exporter.netlink).await;
        if !undone.is_empty() {
            return Err(DaemonError::Undo(undone));
        }
        info!(network = %name, "network removed");
        Ok(())
    }

    /// Adds network `config` and brings it up (or leaves it waiting or
    /// failed, as at start).
    async fn add_network(
        &mut self,
        config: Network,
        mark: Option<u32>,
        problems: &mut Vec<String>,
    ) {
        let name = config.name.clone();
        let on_ebpf = config.datapath != DatapathChoice::Nft;
        let view = match super::supervisor::fallback_view(&config, &self.exporter.netlink).await {
            Ok(view) => view,
            Err(e) => {
                problems.push(e.to_string());
                return;
            }
        };
        if let Err(e) = self.datapath.add_network(view, on_ebpf) {
            problems.push(format!("network `{name}`: {e}"));
            return;
        }
        let mut net = NetworkContext::new(config, mark, self.lease_changes.clone());
        if let Err(e) = net
            .reconfigure(&mut self.exporter, &mut self.datapath, &self.paths)
            .await
        {
            problems.push(e.to_string());
        }
        self.networks.push(net);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(name: &str, subnet: &str) -> Network {
        let yaml = format!(
            "networks:\n  - name: {name}\n    interface: dn-{name}\n    subnet: {subnet}\n"
        );
        config::parse_str(&yaml).unwrap().networks.remove(0)
    }

    #[test]
    fn a_plan_sorts_networks_by_what_changed() {
        let a = network("a", "192.168.100.0/24");
        let b = network("b", "192.168.101.0/24");
        let c = network("c", "192.168.102.0/24");
        let mut b2 = b.clone();
        b2.dns_servers.clear();
        let d = network("d", "192.168.103.0/24");
        let plan = plan(
            &[(&a, None), (&b, None), (&c, None)],
            &[
                (a.clone(), None),
                (b2, None),
                (d, None),
                (c.clone(), Some(7)),
            ],
        );
        assert_eq!(plan.unchanged, ["a"]);
        // A new reply mark restarts the network too.
        assert_eq!(plan.changed, ["b", "c"]);
        assert_eq!(plan.added, ["d"]);
        assert!(plan.removed.is_empty());
        let plan = super::plan(&[(&a, None), (&b, None)], &[(a.clone(), None)]);
        assert_eq!(plan.removed, ["b"]);
    }
}
