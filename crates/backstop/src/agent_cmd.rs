//! `backstop agent`: one host's data plane (its built-in proxies and instances), driven by the
//! replicas, and the token they call it with.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::output::{OutputArgs, Render};

pub const AGENT_LONG_ABOUT: &str = "\
One host's data plane. The agent hosts the built-in proxies of the environments placed on its \
host (`agent: NAME` on an environment) and starts, stops and checks that host's instances, for \
whichever replica holds the work. When every replica is gone or cut off, the proxies keep \
serving the last routes and the instances keep running (fail static).

Replicas call it with a token (one per agent) that the agent keeps only as a sha256; every \
request that changes routes or instances carries its lease's fencing epoch, and an epoch older \
than one already seen is refused.

On each host:
  backstop agent token --state-dir /var/lib/backstop-agent      # prints the token once
  backstop agent serve --name web1 --listen 10.0.0.11:7400 --state-dir /var/lib/backstop-agent

In backstop.yaml, for the replicas:
  agents:
    - name: web1
      address: 10.0.0.11:7400
      token_env: BACKSTOP_AGENT_WEB1_TOKEN   # the replicas' environment holds the token
  services:
    - name: shop
      environments:
        - name: prod
          agent: web1
          listen: 0.0.0.0:8080

The channel is plain TCP: keep agents and replicas on a private network (or a tunnel). \
Environments without `agent` run on the daemon's own host, in an agent the daemon starts itself \
(and a restarted daemon adopts): nothing to set up.";

#[derive(clap::Subcommand)]
pub enum AgentCmd {
    /// Run the agent of this host until SIGTERM.
    Serve(ServeArgs),
    /// Make this host's agent token (shown once; an older one stops working).
    Token(TokenArgs),
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The agent's name, as `agents[].name` in the replicas' config.
    #[arg(long)]
    name: String,
    /// Address the replicas reach it on.
    #[arg(long, default_value = "127.0.0.1:7400")]
    listen: SocketAddr,
    /// Its state folder: the token's hash, its proxies' last routes, artifacts, instance logs.
    #[arg(
        long,
        env = "BACKSTOP_AGENT_STATE_DIR",
        default_value = ".backstop-agent"
    )]
    state_dir: PathBuf,
    /// Log format: `pretty` on a terminal, `json` for collectors.
    #[arg(long, default_value = "json")]
    log_format: String,
}

#[derive(clap::Args)]
pub struct TokenArgs {
    /// The agent's state folder.
    #[arg(
        long,
        env = "BACKSTOP_AGENT_STATE_DIR",
        default_value = ".backstop-agent"
    )]
    state_dir: PathBuf,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(serde::Serialize)]
struct NewToken {
    token: String,
    state_dir: PathBuf,
}

impl Render for NewToken {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(w, "{}", self.token)?;
        writeln!(
            w,
            "# Shown once: put it in the replicas' environment (the variable `agents[].token_env` names). Its sha256 is in {}.",
            self.state_dir
                .join(backstop_drivers::agent::TOKEN_HASH_FILE)
                .display()
        )
    }
}

pub async fn agent(cmd: AgentCmd) -> Result<i32> {
    match cmd {
        AgentCmd::Token(args) => {
            let token = backstop_drivers::agent::new_token(&args.state_dir).with_context(|| {
                format!("writing the token's hash in {}", args.state_dir.display())
            })?;
            args.out.output.print(&NewToken {
                token,
                state_dir: args.state_dir,
            });
            Ok(0)
        }
        AgentCmd::Serve(args) => {
            crate::init_logs(&args.log_format, "info");
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {} (see --listen)", args.listen))?;
            let stop = tokio_util::sync::CancellationToken::new();
            let on_signal = stop.clone();
            tokio::spawn(async move {
                crate::shutdown_signal().await;
                on_signal.cancel();
            });
            tracing::info!(agent = args.name, listen = %args.listen, "Agent serving.");
            backstop_drivers::agent::serve_agent(
                listener,
                backstop_drivers::agent::AgentOptions {
                    name: args.name,
                    state_dir: args.state_dir,
                },
                stop,
            )
            .await
            .context("agent")?;
            Ok(0)
        }
    }
}
