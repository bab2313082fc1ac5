//! Codec throughput beside amq-protocol (filled in below).
fn main() {}
