//! The `bao-kms-provider` binary.

fn main() {
    println!("bao-kms-provider {}", env!("CARGO_PKG_VERSION"));
}
