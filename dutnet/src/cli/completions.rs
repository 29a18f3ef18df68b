//! `dutnet completions SHELL` and `dutnet man`: generated from the clap
//! definition, so they never drift from the real options.
use anyhow::Result;

#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    shell: clap_complete::Shell,
}

pub fn completions(args: &CompletionArgs, mut command: clap::Command) -> Result<()> {
    clap_complete::generate(args.shell, &mut command, "dutnet", &mut std::io::stdout());
    Ok(())
}

pub fn man(command: clap::Command) -> Result<()> {
    clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
    Ok(())
}
