//! `dutnet reload`: the running dutnet reads its file again (as on SIGHUP).
use anyhow::Result;
use dutnet::control::{Reply, Request};

use super::control::{Common, ask, unexpected};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: Common,
}

pub fn run(args: &Args) -> Result<()> {
    let summary = match ask(&args.common, &Request::Reload)? {
        None => return Ok(()),
        Some(Reply::Reloaded { summary }) => summary,
        Some(other) => return Err(unexpected(&other)),
    };
    let list = |names: &[String]| {
        if names.is_empty() {
            "-".to_owned()
        } else {
            names.join(", ")
        }
    };
    println!("added      {}", list(&summary.added));
    println!("removed    {}", list(&summary.removed));
    println!("changed    {}", list(&summary.changed));
    println!("unchanged  {}", summary.unchanged.len());
    for problem in &summary.problems {
        println!("problem    {problem}");
    }
    Ok(())
}
