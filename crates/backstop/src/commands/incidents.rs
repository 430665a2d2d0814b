//! `backstop incident …`: the war room from the command line.

use std::io::{self, Write};

use anyhow::Result;
use backstop_api::incidents::{AssignRole, IncidentDetail, IncidentText, OpenIncident, SetStatus};
use backstop_core::format_ms;
use backstop_core::incident::Incident;

use crate::client::{ApiArgs, Query, encode};
use crate::output::Render;

const INCIDENT_HELP: &str = "Incidents: opened automatically when a rollout fails with a major \
or critical severity (its recovery's steps go in the timeline), or by hand. A SEV1 or SEV2 \
incident freezes non-critical deployments into its environment until it is mitigated \
(status monitoring; a recovery that restored traffic sets it). Status updates are due every \
15 min (SEV1), 30 min (SEV2), 1 h (SEV3), 4 h (SEV4); the daemon reminds through the service's \
webhooks when one is overdue.

Examples:
  backstop incident list
  backstop incident show inc-0193…                       # the timeline: people and machine
  backstop incident role inc-0193… commander token:alice
  backstop incident note inc-0193… 'db CPU at 100% since 12:02'
  backstop incident update inc-0193… 'rolled back; watching error rates'
  backstop incident status inc-0193… resolved --note 'error rate back to baseline for 30 min'
  backstop incident open --service checkout --env prod --severity SEV2 --title 'payments failing'";

#[derive(clap::Subcommand)]
#[command(long_about = INCIDENT_HELP)]
pub enum IncidentCmd {
    /// Open incidents (with --all, resolved ones too).
    List {
        /// Also resolved incidents.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// One incident and its timeline: what people did and what the machine did, in order.
    Show {
        /// The incident's id (`backstop incident list` shows them).
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Open an incident by hand.
    Open {
        /// The service, as named in the config.
        #[arg(long)]
        service: String,
        /// The environment, as named in the service's config.
        #[arg(long)]
        env: String,
        /// SEV1 (worst) to SEV5.
        #[arg(long)]
        severity: String,
        /// What is wrong, in a line.
        #[arg(long)]
        title: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Move the status forward: identified, monitoring, resolved.
    Status {
        /// The incident's id (`backstop incident list` shows them).
        id: String,
        /// The new status: investigating, identified, monitoring or resolved.
        status: String,
        /// What changed, in words (kept in the incident's log).
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Hand a role (commander, operations, communications, scribe) to someone.
    Role {
        /// The incident's id (`backstop incident list` shows them).
        id: String,
        /// The role: commander, operations or communications.
        role: String,
        /// Who takes the role (a name or handle).
        person: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Add a note to the incident's log.
    Note {
        /// The incident's id (`backstop incident list` shows them).
        id: String,
        /// The note, in words.
        text: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Give a status update (the next is due one cadence later).
    Update {
        /// The incident's id (`backstop incident list` shows them).
        id: String,
        /// The status update for stakeholders, in words.
        text: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

pub async fn incident(cmd: IncidentCmd) -> Result<i32> {
    let path = |id: &str, what: &str| format!("/api/v1/incidents/{}/{what}", encode(id));
    match cmd {
        IncidentCmd::List { all, api } => {
            let q = Query::new("/api/v1/incidents").param("all", all);
            api.get_and_print::<Vec<Incident>>(q.as_str()).await?;
        }
        IncidentCmd::Show { id, api } => {
            api.get_and_print::<IncidentDetail>(&format!("/api/v1/incidents/{}", encode(&id)))
                .await?;
        }
        IncidentCmd::Open {
            service,
            env,
            severity,
            title,
            api,
        } => {
            let body = OpenIncident {
                service,
                env,
                severity,
                title,
            };
            api.post_and_print::<Incident>("/api/v1/incidents", &body)
                .await?;
        }
        IncidentCmd::Status {
            id,
            status,
            note,
            api,
        } => {
            api.post_and_print::<Incident>(&path(&id, "status"), &SetStatus { status, note })
                .await?;
        }
        IncidentCmd::Role {
            id,
            role,
            person,
            api,
        } => {
            api.post_and_print::<Incident>(&path(&id, "roles"), &AssignRole { role, person })
                .await?;
        }
        IncidentCmd::Note { id, text, api } => {
            api.post_and_print::<Incident>(&path(&id, "notes"), &IncidentText { text })
                .await?;
        }
        IncidentCmd::Update { id, text, api } => {
            api.post_and_print::<Incident>(&path(&id, "updates"), &IncidentText { text })
                .await?;
        }
    }
    Ok(0)
}

impl Render for Incident {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(
            w,
            "{}  {}  {:<13} {}/{}  {}",
            self.id, self.severity, self.status, self.service, self.env, self.title
        )?;
        let roles = self
            .roles
            .iter()
            .map(|(r, p)| format!("{r}: {p}"))
            .collect::<Vec<_>>()
            .join(", ");
        let due = self.update_due_ms.map_or(String::new(), |d| {
            format!("; next update due {}", format_ms(d))
        });
        writeln!(
            w,
            "    opened {} by {}{}{due}",
            format_ms(self.opened_at_ms),
            self.opened_by,
            if roles.is_empty() {
                String::new()
            } else {
                format!("; {roles}")
            }
        )
    }
}

impl Render for Vec<Incident> {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        if self.is_empty() {
            return writeln!(w, "no open incident");
        }
        for i in self {
            i.text(w)?;
        }
        Ok(())
    }
}

/// The timeline as people read it: offsets from the opening, who, what.
impl Render for IncidentDetail {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        self.incident.text(w)?;
        writeln!(w, "timeline (from the opening):")?;
        let start = self.incident.opened_at_ms;
        for t in &self.timeline {
            let offset = (t.at_ms - start) as f64 / 1000.0;
            writeln!(
                w,
                "  {:>+9.1}s  {:<8} {:<22} {}{}",
                offset,
                t.source,
                t.kind,
                t.text,
                if t.actor == "controller" {
                    String::new()
                } else {
                    format!("  ({})", t.actor)
                }
            )?;
        }
        Ok(())
    }
}
