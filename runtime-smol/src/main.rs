//! The `terminus` binary: `terminus demo`, `terminus serve --config FILE` and
//! `terminus schema --proto FILE`.

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
    let run = match cli.command {
        Command::Schema {
            protos,
            includes,
            upstream,
        } => {
            return match terminus::grpc::sdl::generate_from_files(&protos, &includes, &upstream) {
                Ok(sdl) => {
                    print!("{sdl}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("terminus: {error}");
                    ExitCode::from(2)
                }
            };
        }
        other => other,
    };
    let result = smol::block_on(async {
        match run {
            Command::Demo { listen, mysql } => terminus::run::demo(listen, mysql).await,
            Command::Serve { config } => terminus::run::serve(&config).await,
            Command::DemoUpstream { listen } => terminus::run::demo_upstream(listen).await,
            Command::Schema { .. } => Err(terminus::run::RunError::from("schema runs above")),
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
