//! `cargo run --release -p backstop-judge --example bench_canary -- [--quick] [--seed N] ...`:
//! the same as `backstop bench canary`, for working on the judges without the binary.

use clap::Parser;

#[derive(Parser)]
#[command(about = "Canary judge benchmark (same as `backstop bench canary`)")]
struct Cli {
    #[command(flatten)]
    args: backstop_judge::cli::BenchCanaryArgs,
}

fn main() {
    let cli = Cli::parse();
    std::process::exit(backstop_judge::cli::run_bench_canary(&cli.args));
}
