//! `backstop token create|list|revoke`: API tokens for people, each with a role.

use std::io::{self, Write};

use anyhow::Result;
use backstop_api::tokens::{CreateToken, CreatedToken};
use backstop_core::access::{Role, TokenRecord};
use backstop_core::format_ms;

use crate::client::{ApiArgs, encode};
use crate::output::Render;

const CREATE_HELP: &str = "Make an API token for a person or a pipeline. The token is printed \
once; the daemon keeps only its sha256. The audit records what it does as token:NAME.

Roles, each holding everything below it:
  viewer              read everything
  deployer            + register releases, start rollouts, snapshot config
  releaser            + promote, abort, roll back, resume recoveries, restore config, drills
  incident-commander  + freeze deployments, reset circuit breakers
  admin               + make and revoke tokens

With --env the role holds in that environment only (the token reads everywhere else).

Examples:
  backstop token create --name alice --role releaser --env prod --expires 30d
  backstop token create --name ci-pipeline --role deployer --env staging -o json";

#[derive(clap::Subcommand)]
pub enum TokenCmd {
    /// Make a token (shown once) with a role, maybe limited to one environment and in time.
    #[command(long_about = CREATE_HELP)]
    Create {
        /// Who holds it: letters, digits, '.', '_', '-', '@'. Never reused, even once revoked.
        #[arg(long)]
        name: String,
        /// viewer, deployer, releaser, incident-commander or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Hold the role only in this environment.
        #[arg(long)]
        env: Option<String>,
        /// Stop working after this long (e.g. 30d, 12h); default: until revoked.
        #[arg(long)]
        expires: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Every token: name, role, environment, expiry, revocation (never the token itself).
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Stop a token from working at once (audited; its name stays taken).
    Revoke {
        /// The token's name (`backstop token list` shows them).
        name: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse()
}

pub async fn token(cmd: TokenCmd) -> Result<i32> {
    match cmd {
        TokenCmd::Create {
            name,
            role,
            env,
            expires,
            api,
        } => {
            let body = CreateToken {
                name,
                role,
                env,
                expires,
            };
            api.post_and_print::<CreatedToken>("/api/v1/tokens", &body)
                .await?;
        }
        TokenCmd::List { api } => {
            api.get_and_print::<Vec<TokenRecord>>("/api/v1/tokens")
                .await?;
        }
        TokenCmd::Revoke { name, api } => {
            let path = format!("/api/v1/tokens/{}/revoke", encode(&name));
            api.post_and_print::<TokenRecord>(&path, &serde_json::json!({}))
                .await?;
        }
    }
    Ok(0)
}

fn scope(env: Option<&str>) -> String {
    env.map_or_else(|| "everywhere".into(), |e| format!("in {e}"))
}

impl Render for CreatedToken {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(
            w,
            "token {} ({} {}), expires {}:",
            self.name,
            self.role,
            scope(self.env.as_deref()),
            self.expires_at.as_deref().unwrap_or("never")
        )?;
        writeln!(w, "{}", self.token)?;
        writeln!(
            w,
            "It is shown once: give it to its holder (BACKSTOP_TOKEN or --token)."
        )
    }
}

impl Render for Vec<TokenRecord> {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        if self.is_empty() {
            return writeln!(
                w,
                "no token besides the state folder's admin token (backstop token create)"
            );
        }
        let rows: Vec<Vec<String>> = self.iter().map(token_row).collect();
        crate::output::table(w, &["NAME", "ROLE", "SCOPE", "STATE", "MADE", "BY"], &rows)
    }
}

/// A token as a row: name, role, scope, state, when made, by whom.
fn token_row(t: &TokenRecord) -> Vec<String> {
    let state = match (t.revoked_at_ms, t.expires_at_ms) {
        (Some(at), _) => format!(
            "REVOKED {} by {}",
            format_ms(at),
            t.revoked_by.as_deref().unwrap_or("?")
        ),
        (None, Some(at)) => format!("expires {}", format_ms(at)),
        (None, None) => "no expiry".into(),
    };
    vec![
        t.name.clone(),
        t.role.to_string(),
        scope(t.env.as_deref()),
        state,
        format_ms(t.created_at_ms),
        t.created_by.clone(),
    ]
}

impl Render for TokenRecord {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        let row = token_row(self);
        writeln!(
            w,
            "{} {} {} {}  (made {} by {})",
            row[0], row[1], row[2], row[3], row[4], row[5]
        )
    }
}
