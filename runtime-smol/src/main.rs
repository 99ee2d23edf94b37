//! The `terminus` binary.

fn main() {
    eprintln!(
        "terminus {}: the gateway is being assembled",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
