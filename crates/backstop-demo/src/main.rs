//! `backstop-demo`: the sample service as its own small binary (`backstop demo-app` is the same
//! thing inside the main binary).

use std::process::ExitCode;

use clap::Parser;

/// Sample HTTP service whose error ratio and latency are set by flags or DEMO_* variables.
#[derive(Parser)]
#[command(name = "backstop-demo")]
struct Cli {
    #[command(flatten)]
    args: backstop_demo::DemoArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match backstop_demo::run(cli.args, backstop_demo::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("backstop-demo: {e}");
            ExitCode::FAILURE
        }
    }
}
