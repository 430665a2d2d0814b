//! `cargo run -p backstop-judge --example analyze -- [--judge J] FILE`: the same as
//! `backstop analyze`, for working on the judges without the binary.

use clap::Parser;

#[derive(Parser)]
#[command(
    about = "Replay a backstop-scenario/v1 file through a canary judge (same as `backstop analyze`)"
)]
struct Cli {
    #[command(flatten)]
    args: backstop_judge::cli::AnalyzeArgs,
}

fn main() {
    let cli = Cli::parse();
    std::process::exit(backstop_judge::cli::run_analyze(&cli.args));
}
