//! Shared inputs for the benchmarks: the byte streams and messages that every codec is measured on.
