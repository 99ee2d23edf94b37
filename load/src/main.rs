//! The `terminus-load` binary: parses the command line, runs, prints the
//! table, writes the JSON and the chart; exits 1 with `--fail-on-leak` when
//! the run did not pass, 2 when it could not run.

use clap::Parser;
use terminus_load::{run, Args};

fn main() {
    let args = Args::parse();
    let report = match run(&args) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("terminus-load: {error}");
            std::process::exit(2);
        }
    };
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).expect("the report serialises");
        if let Err(error) = std::fs::write(path, json + "\n") {
            eprintln!("terminus-load: writing {}: {error}", path.display());
            std::process::exit(2);
        }
    }
    if let Some(path) = &args.svg {
        if let Err(error) = std::fs::write(path, report.svg(&args.ops_series)) {
            eprintln!("terminus-load: writing {}: {error}", path.display());
            std::process::exit(2);
        }
    }
    if args.fail_on_leak && !report.passed {
        eprintln!("terminus-load: FAILED (see the table above)");
        std::process::exit(1);
    }
}
