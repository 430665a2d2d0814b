//! `backstop alerts list|show|acknowledge`: alerts from monitoring and what Backstop did.

use std::io::{self, Write};

use anyhow::Result;
use backstop_api::alerts::AcknowledgeAlert;
use backstop_core::alert::AlertRecord;
use backstop_core::format_ms;

use crate::client::{ApiArgs, Query, encode};
use crate::output::Render;

const ALERTS_HELP: &str = "\
Alerts from your own monitoring, as triggers. Point an Alertmanager receiver at Backstop with a
token of role releaser:

  receivers:
    - name: backstop
      webhook_configs:
        - url: http://backstop:7878/api/v1/alerts/alertmanager
          send_resolved: true
          http_config: {authorization: {credentials_file: /etc/alertmanager/backstop.token}}

An alert whose labels `service` and `env` name a release that is new (a rollout under way, or
promoted within the service's `alerts.watch`, default 30m) runs the service's severity policy,
by the alert's `severity` label (critical; major/error; anything else minor): roll back, hold
for an acknowledgement (`backstop alerts acknowledge`) and roll back when the time is up, or
notify. Each firing acts once however often Alertmanager sends it again.";

#[derive(clap::Subcommand)]
#[command(long_about = ALERTS_HELP)]
pub enum AlertsCmd {
    /// The latest alerts received, newest first, with what was done about each.
    List {
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// One alert: its labels, the release it was linked to, what was done and why.
    Show {
        /// The alert's id (`alt-…`).
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Take a held alert over before its deadline: its release is not rolled back (audited).
    Acknowledge {
        /// The alert's id (`alt-…`).
        id: String,
        /// Why, for the audit log.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

pub async fn alerts(cmd: AlertsCmd) -> Result<i32> {
    match cmd {
        AlertsCmd::List { limit, api } => {
            let path = Query::new("/api/v1/alerts").param("limit", limit.to_string());
            api.get_and_print::<Vec<AlertRecord>>(path.as_str()).await?;
        }
        AlertsCmd::Show { id, api } => {
            api.get_and_print::<AlertRecord>(&format!("/api/v1/alerts/{}", encode(&id)))
                .await?;
        }
        AlertsCmd::Acknowledge { id, reason, api } => {
            let path = format!("/api/v1/alerts/{}/acknowledge", encode(&id));
            api.post_and_print::<AlertRecord>(&path, &AcknowledgeAlert { reason })
                .await?;
        }
    }
    Ok(0)
}

impl Render for AlertRecord {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(
            w,
            "{} {} ({}, {}): {}",
            self.id, self.name, self.severity, self.status, self.action
        )?;
        if let (Some(s), Some(e)) = (&self.service, &self.env) {
            writeln!(w, "  service: {s}/{e}")?;
        }
        if let Some(r) = &self.release_id {
            writeln!(
                w,
                "  release: {r} (rollout {})",
                self.rollout_id.as_deref().unwrap_or("-")
            )?;
        }
        writeln!(w, "  why:     {}", self.detail)?;
        if let Some(rec) = &self.recovery_id {
            writeln!(w, "  recovery: {rec}")?;
        }
        if let Some(d) = self.deadline_ms {
            writeln!(w, "  deadline: {}", format_ms(d))?;
        }
        writeln!(w, "  received: {}", format_ms(self.received_at_ms))
    }
}

impl Render for Vec<AlertRecord> {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        let rows: Vec<Vec<String>> = self
            .iter()
            .map(|a| {
                vec![
                    a.id.clone(),
                    a.name.clone(),
                    a.severity.to_string(),
                    a.status.to_string(),
                    a.release_id.clone().unwrap_or_else(|| "-".into()),
                    a.action.to_string(),
                    format_ms(a.received_at_ms),
                ]
            })
            .collect();
        crate::output::table(
            w,
            &[
                "ALERT", "NAME", "SEVERITY", "STATUS", "RELEASE", "ACTION", "RECEIVED",
            ],
            &rows,
        )
    }
}
