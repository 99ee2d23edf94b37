//! The `terminus` binary: `terminus demo` and `terminus serve --config FILE`.

use clap::Parser;
use std::process::ExitCode;
use terminus::cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = smol::block_on(async {
        match cli.command {
            Command::Demo { listen, mysql } => terminus::run::demo(listen, mysql).await,
            Command::Serve { config } => terminus::run::serve(&config).await,
            Command::DemoUpstream { listen } => terminus::run::demo_upstream(listen).await,
        }
    });
    match result {
        Ok(report) if report.leaked_operations == 0 => {
            tracing::info!(leaked_operations = 0, "terminus stopped");
            ExitCode::SUCCESS
        }
        Ok(report) => {
            tracing::error!(
                leaked_operations = report.leaked_operations,
                "terminus stopped with leaked operations"
            );
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("terminus: {error}");
            ExitCode::from(2)
        }
    }
}
