//! The command line: `terminus demo` and `terminus serve --config FILE`.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Terminus: a GraphQL-over-WebSocket gateway in which every operation ends.
#[derive(Debug, Parser)]
#[command(name = "terminus", version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway with an embedded demo gRPC upstream on loopback and
    /// the demo schema (hello, ticks).
    Demo {
        /// Address of the gateway's HTTP/WebSocket listener.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Also serve the schema's SQL fields from this MySQL database
        /// (mysql://user:password@host:port/database).
        #[arg(long)]
        mysql: Option<String>,
    },
    /// Run only the demo gRPC upstream (service terminus.demo.v1.Demo), for
    /// `serve` with examples/terminus.toml.
    DemoUpstream {
        /// Address of the gRPC (HTTP/2) listener.
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: SocketAddr,
    },
    /// Run the gateway from a TOML config file.
    Serve {
        /// The config file (see examples/terminus.toml and docs/config.md).
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::path::Path;

    #[test]
    fn cli_is_consistent_and_parses_both_commands() {
        Cli::command().debug_assert();
        let demo = Cli::try_parse_from(["terminus", "demo", "--listen", "127.0.0.1:0"]).unwrap();
        assert!(
            matches!(demo.command, Command::Demo { listen, mysql: None } if listen.port() == 0)
        );
        let serve = Cli::try_parse_from(["terminus", "serve", "--config", "t.toml"]).unwrap();
        assert!(
            matches!(serve.command, Command::Serve { config } if config == Path::new("t.toml"))
        );
        assert!(Cli::try_parse_from(["terminus", "serve"]).is_err());
    }
}
