//! `terminus-test-certs DIR`: writes the test PKI of `terminus_tests::certs`
//! into DIR (for the interop suite, tests/interop/test/tls-jwt.test.js).

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: terminus-test-certs DIR");
        std::process::exit(2);
    };
    let pki = terminus_tests::certs::generate(std::path::Path::new(&dir));
    println!("{}", pki.dir.display());
}
