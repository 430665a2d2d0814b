//! `backstop release create|list|show|readmit|ship|ships`: register and inspect releases,
//! readmit one after a false alarm, ship one through its service's environment waves.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use backstop_api::releases::CreateRelease;
use backstop_core::format_ms;
use backstop_core::model::{Release, SecretSource};
use serde::Serialize;

use crate::client::{ApiArgs, Query};
use crate::output::Render;

#[derive(clap::Subcommand)]
pub enum ReleaseCmd {
    /// Register a release: its artifact is hashed (sha256) and kept with it.
    Create {
        /// The service, as named in the config.
        service: String,
        /// The release's version, e.g. `v42` (unique per service).
        #[arg(long)]
        version: String,
        /// An executable file: hashed by content; `{artifact}` in run.command becomes its path.
        #[arg(long, conflicts_with = "command", required_unless_present = "command")]
        file: Option<PathBuf>,
        /// A command line: hashed as text; `{artifact}` in run.command becomes this command.
        #[arg(long)]
        command: Option<String>,
        /// Environment for this release, KEY=VALUE (repeatable), added to run.env. Stored and
        /// shown as given: pass secrets with --secret.
        #[arg(long = "env", value_parser = parse_key_value)]
        env: Vec<(String, String)>,
        /// A secret variable by reference, KEY=env:VARIABLE (the daemon's environment) or
        /// KEY=file:/absolute/path (on the daemon's host), repeatable: read when an instance
        /// starts, never stored, shown or logged.
        #[arg(long = "secret", value_parser = parse_secret)]
        secrets: Vec<(String, SecretSource)>,
        /// The migration versions this release runs on, MIN..MAX or one version (e.g.
        /// `0003..0005`). A rollback to it then checks the database's applied migrations first:
        /// nothing to do inside the range; proven downs run when the database is past it; the
        /// rollback is refused, with the options, when the way back is not proven safe.
        #[arg(long, value_parser = parse_schema_range)]
        schema: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List releases.
    List {
        /// The service, as named in the config.
        #[arg(long)]
        service: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Release groups: several services' releases shipped as one unit and rolled back
    /// together (`backstop rollout start --group`).
    #[command(subcommand)]
    Group(crate::commands::groups::GroupCmd),
    /// Readmit a release rolled back by a false alarm: clears its bad mark (audited; needs the
    /// releaser role in every environment) so the same artifact can be rolled out again, and
    /// labels the rollout that rolled it back `false-alarm` for `backstop calibrate`.
    Readmit {
        /// The release, as `service@version` (e.g. `shop@v42`).
        id: String,
        /// Why the rollback was a false alarm (kept in the audit and the verdict's label).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Ship a release through the service's environment waves (`waves:` in backstop.yaml), in
    /// order: each wave's environments roll out together (canary and judge as usual); once all
    /// are promoted, the wave bakes (`bake: 30m`), judged against each environment's pre-deploy
    /// error ratio, before the next wave starts. A failed canary or bake rolls that wave back
    /// (earlier waves too when they say `on_later_failure: roll_back`) and the ship stops; later
    /// waves never start. A freeze or an open breaker holds the next wave until it ends.
    #[command(after_help = "\
Example:
  waves: [{envs: [staging], bake: 30m}, {envs: [prod-eu, prod-us]}]
  backstop release ship shop --version v42 --wait

With --wait: exit 0 shipped through every wave, 1 stopped (the failing wave rolled back) or
halted (a way back was refused; the options are printed).")]
    Ship {
        /// The service, as named in the config.
        service: String,
        /// A registered release of the service, e.g. `v42`.
        #[arg(long)]
        version: String,
        /// Why (kept in the audit and the rollouts' reasons).
        #[arg(long)]
        reason: Option<String>,
        /// Follow the ship until it ends, a line per change (exit 0 shipped, 1 stopped).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        how: crate::commands::rollouts::FollowArgs,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Ships: those still moving (every one with --all), or one by id with its waves, bakes and
    /// why it stopped or waits.
    Ships {
        /// One ship's id (`shp-…`).
        id: Option<String>,
        /// Only this service's ships.
        #[arg(long)]
        service: Option<String>,
        /// Every ship, also those that ended.
        #[arg(long)]
        all: bool,
        /// With an id: follow it until it ends (exit 0 shipped, 1 stopped or halted).
        #[arg(long, requires = "id")]
        watch: bool,
        #[command(flatten)]
        how: crate::commands::rollouts::FollowArgs,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Stop a ship (audited) and wait until the controller has: waves that have not started
    /// never will. A wave under way is left to its rollouts (`backstop rollout abort` them if
    /// they should not finish); nothing is rolled back. Exit 0 once stopped.
    StopShip {
        /// The ship's id (`shp-…`).
        id: String,
        /// Why (kept in the audit and the ship).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        how: crate::commands::rollouts::FollowArgs,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show one release (`service@version`).
    Show {
        /// The release, as `service@version` (e.g. `shop@v42`).
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

fn parse_schema_range(s: &str) -> Result<String, String> {
    backstop_core::schema::SchemaRange::parse(s).map(|r| r.to_string())
}

fn parse_secret(s: &str) -> Result<(String, SecretSource), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=env:VARIABLE or KEY=file:/path, got {s:?}"))?;
    Ok((k.to_string(), v.parse()?))
}

pub(crate) fn parse_key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))?;
    Ok((k.to_string(), v.to_string()))
}

pub async fn release(cmd: ReleaseCmd) -> Result<i32> {
    match cmd {
        ReleaseCmd::Create {
            service,
            version,
            file,
            command,
            env,
            secrets,
            schema,
            api,
        } => {
            let file = file
                .map(|f| std::path::absolute(&f).with_context(|| format!("--file {}", f.display())))
                .transpose()?;
            let body = CreateRelease {
                service,
                version,
                file: file.map(|f| f.display().to_string()),
                command,
                env: env.into_iter().collect(),
                secrets: secrets.into_iter().collect(),
                schema,
            };
            let r: Release = api.client()?.post("/api/v1/releases", &body).await?;
            api.print(&Registered(r));
        }
        ReleaseCmd::List { service, api } => {
            let path = Query::new("/api/v1/releases").param_if("service", service);
            api.get_and_print::<Vec<Release>>(path.as_str()).await?;
        }
        ReleaseCmd::Group(cmd) => return crate::commands::groups::group(cmd).await,
        ReleaseCmd::Readmit { id, reason, api } => {
            let body = backstop_api::releases::ReadmitRelease { reason };
            let r: Release = api
                .client()?
                .post(&format!("/api/v1/releases/{id}/readmit"), &body)
                .await?;
            api.print(&Readmitted(r));
        }
        ReleaseCmd::Ship {
            service,
            version,
            reason,
            wait,
            how,
            api,
        } => return crate::commands::ships::ship(&api, service, version, reason, wait, how).await,
        ReleaseCmd::Ships {
            id,
            service,
            all,
            watch,
            how,
            api,
        } => return crate::commands::ships::ships(&api, id, service, all, watch, how).await,
        ReleaseCmd::StopShip {
            id,
            reason,
            how,
            api,
        } => return crate::commands::ships::stop(&api, &id, reason, how).await,
        ReleaseCmd::Show { id, api } => {
            api.get_and_print::<Release>(&format!("/api/v1/releases/{id}"))
                .await?;
        }
    }
    Ok(0)
}

/// A release just readmitted.
#[derive(Serialize)]
#[serde(transparent)]
struct Readmitted(Release);

impl Render for Readmitted {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(
            w,
            "readmitted {}: it may be rolled out again; its rollback is labelled a false alarm",
            self.0.id
        )
    }
}

/// A release just registered.
#[derive(Serialize)]
#[serde(transparent)]
struct Registered(Release);

impl Render for Registered {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(w, "registered {} (sha256 {})", self.0.id, self.0.sha256)
    }
}

impl Render for Vec<Release> {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        let rows: Vec<Vec<String>> = self
            .iter()
            .map(|r| {
                vec![
                    r.id.clone(),
                    r.status.as_str().to_owned(),
                    r.sha256[..12.min(r.sha256.len())].to_owned(),
                    format_ms(r.created_at_ms),
                ]
            })
            .collect();
        crate::output::table(w, &["RELEASE", "STATUS", "SHA256", "CREATED"], &rows)
    }
}

impl Render for Release {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(
            w,
            "{}\n  artifact: {}\n  sha256:   {}\n  status:   {}",
            self.id,
            self.artifact.describe(),
            self.sha256,
            self.status.as_str()
        )?;
        if let Some(reason) = &self.bad_reason {
            writeln!(w, "  bad:      {reason}")?;
        }
        Ok(())
    }
}
