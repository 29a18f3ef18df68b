//! The command line: one file per verb; each only parses and calls the library.
mod add_address;
mod add_dns;
mod attach;
mod capture;
mod completions;
mod config;
mod control;
mod dns_entries;
mod down;
mod flows;
mod get_ip;
mod leases;
mod load;
mod logging;
mod nat_rules;
mod ntp_status;
mod reload;
mod remove_address;
mod remove_dns;
mod stats;
mod status;

use std::{io::Write as _, process::ExitCode};

use clap::{CommandFactory as _, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "dutnet",
    version,
    about = "An isolated network behind each DUT NIC"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Bring the networks of FILE up and keep them up (foreground; restores
    /// the host on SIGINT/SIGTERM).
    Load(load::Args),
    /// Stop the running dutnet, or undo what a killed one left behind.
    Down(down::Args),
    /// Make the running dutnet read its configuration file again and apply
    /// the difference (as SIGHUP does); a bad file changes nothing.
    Reload(reload::Args),
    /// Show the running daemon's per-interface packet and byte counters
    /// (exit code 5 when none runs; `--offline` reads the pins instead).
    Stats(stats::Args),
    /// Show each network: interface, addresses, upstream, NAT, DHCP, DNS.
    Status(status::Args),
    /// List the DHCP leases.
    Leases(leases::Args),
    /// Show the local NTP server of each network (`local_ntp`) and the
    /// exporter's clock state.
    NtpStatus(ntp_status::Args),
    /// Print the address leased to a DUT's MAC (exit code 3 if none).
    GetIp(get_ip::Args),
    /// Add a DUT address entry (static lease, host name, 1:1 public IP) to
    /// the running network; kept across restarts until `dutnet down`.
    AddAddress(add_address::Args),
    /// Remove a DUT address entry from the running network until `dutnet down`.
    RemoveAddress(remove_address::Args),
    /// Show what NAT does now: masquerade address, port ranges, 1:1 mappings, flows.
    NatRules(nat_rules::Args),
    /// List the connections NAT translates now (`conntrack -L` for the
    /// eBPF fast path): DUT, translated and remote address, state, idle time.
    Flows(flows::Args),
    /// Capture a network's packets (on its DUT NIC, or `--upstream` after
    /// NAT) as pcap (`-w FILE`, `-w -`) or one line per packet.
    #[command(visible_alias = "tcpdump")]
    Capture(capture::Args),
    /// List the names the networks' DNS servers answer.
    DnsEntries(dns_entries::Args),
    /// Add a custom DNS record to the running network; kept until `dutnet down`.
    AddDns(add_dns::Args),
    /// Remove a custom DNS record from the running network until `dutnet down`.
    RemoveDns(remove_dns::Args),
    /// Check a configuration file and show the normalized networks.
    Config(config::Args),
    /// Attach the datapath's counters to interfaces until interrupted
    /// (development aid; `dutnet load` does this for configured networks).
    #[command(hide = true)]
    Attach(attach::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(hide = true)]
    Completions(completions::CompletionArgs),
    /// Print the man page (roff) to standard output.
    #[command(hide = true)]
    Man,
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    logging::init();
    let result = match cli.command {
        Command::Load(args) => load::run(&args),
        Command::Down(args) => down::run(&args),
        Command::Reload(args) => reload::run(&args),
        Command::Stats(args) => stats::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Leases(args) => leases::run(&args),
        Command::NtpStatus(args) => ntp_status::run(&args),
        Command::GetIp(args) => get_ip::run(&args),
        Command::AddAddress(args) => add_address::run(&args),
        Command::RemoveAddress(args) => remove_address::run(&args),
        Command::NatRules(args) => nat_rules::run(&args),
        Command::Flows(args) => flows::run(&args),
        Command::Capture(args) => capture::run(&args),
        Command::DnsEntries(args) => dns_entries::run(&args),
        Command::AddDns(args) => add_dns::run(&args),
        Command::RemoveDns(args) => remove_dns::run(&args),
        Command::Config(args) => config::run(&args),
        Command::Attach(args) => attach::run(&args),
        Command::Completions(args) => completions::completions(&args, Cli::command()),
        Command::Man => completions::man(Cli::command()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Not eprintln!: it panics when stderr is a closed pipe.
            let _ = writeln!(std::io::stderr(), "dutnet: {e:#}");
            control::exit_code(&e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_and_the_man_page_cover_the_verbs() {
        let mut script = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut Cli::command(),
            "dutnet",
            &mut script,
        );
        let script = String::from_utf8(script).unwrap();
        for verb in [
            "load",
            "down",
            "stats",
            "add-address",
            "remove-dns",
            "get-ip",
            "flows",
            "capture",
        ] {
            assert!(script.contains(verb), "bash completion lacks {verb}");
        }
        let mut page = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut page)
            .unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(
            page.contains(".SH NAME") && page.contains("SUBCOMMANDS"),
            "{page}"
        );
    }
}
