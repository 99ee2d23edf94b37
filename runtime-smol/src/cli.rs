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
        /// Also serve the demo message board (messages, postMessage, the
        /// live messageBoard) from this MySQL / MariaDB database
        /// (mysql://user:password@host:port/database), creating its table
        /// terminus_demo_messages if missing. Off by default.
        #[arg(long)]
        mysql: Option<String>,
        /// Threads running the executor (as `[runtime] threads` in a
        /// config, docs/config.md); default 1.
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Run only the demo gRPC upstream (service terminus.demo.v1.Demo), for
    /// `serve` with examples/terminus.toml.
    DemoUpstream {
        /// Address of the gRPC (HTTP/2) listener.
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: SocketAddr,
        /// Threads running the executor (as `[runtime] threads` in a
        /// config, docs/config.md); default 1.
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Run the gateway from a TOML config file.
    Serve {
        /// The config file (see examples/terminus.toml and docs/config.md).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print a GraphQL schema with a @grpc field for every method of the
    /// services in the .proto files (unary reading methods on Query, other
    /// unary methods on Mutation, server streams on Subscription; see
    /// docs/schema.md), ready for `terminus serve`.
    Schema {
        /// A .proto file whose services to map (repeatable).
        #[arg(long = "proto", required = true)]
        protos: Vec<PathBuf>,
        /// An import root (repeatable); by default the folder of each file.
        #[arg(long = "include", short = 'I')]
        includes: Vec<PathBuf>,
        /// The upstream name written in @grpc(upstream:), as in the config's
        /// [grpc.NAME].
        #[arg(long, default_value = "main")]
        upstream: String,
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
            matches!(demo.command, Command::Demo { listen, mysql: None, threads: None } if listen.port() == 0)
        );
        let demo = Cli::try_parse_from(["terminus", "demo", "--threads", "3"]).unwrap();
        assert!(matches!(
            demo.command,
            Command::Demo {
                threads: Some(3),
                ..
            }
        ));
        let upstream =
            Cli::try_parse_from(["terminus", "demo-upstream", "--threads", "2"]).unwrap();
        assert!(matches!(
            upstream.command,
            Command::DemoUpstream {
                threads: Some(2),
                ..
            }
        ));
        assert!(Cli::try_parse_from(["terminus", "demo", "--threads", "x"]).is_err());
        let serve = Cli::try_parse_from(["terminus", "serve", "--config", "t.toml"]).unwrap();
        assert!(
            matches!(serve.command, Command::Serve { config } if config == Path::new("t.toml"))
        );
        assert!(Cli::try_parse_from(["terminus", "serve"]).is_err());
        let schema = Cli::try_parse_from([
            "terminus", "schema", "--proto", "a.proto", "--proto", "b.proto", "-I", "p",
        ])
        .unwrap();
        assert!(matches!(
            schema.command,
            Command::Schema { protos, includes, upstream }
                if protos.len() == 2 && includes == [PathBuf::from("p")] && upstream == "main"
        ));
        assert!(Cli::try_parse_from(["terminus", "schema"]).is_err());
    }
}
