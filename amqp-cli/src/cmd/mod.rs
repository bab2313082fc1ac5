//! One module per subcommand: its arguments (clap derive) and its `run`. Each returns a
//! `CliError` for `main.rs` to word; none prints an error itself.

pub mod consume;
pub mod declare;
pub mod decode;
pub mod get;
pub mod perf;
pub mod publish;
