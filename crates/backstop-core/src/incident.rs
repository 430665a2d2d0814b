//! Incidents, the war room of a bad release (practice 5.3): a severity, a status that moves
//! forward with timestamps, roles handed from person to person, and a history of what people
//! said and did, merged with what the machine did into one timeline.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::named::string_enum;

string_enum! {
    /// SEV1 is the worst. SEV1 and SEV2 are major: non-critical deployments into the
    /// environment are frozen while they are investigated.
    pub enum Sev {
        Sev1 = "SEV1",
        Sev2 = "SEV2",
        Sev3 = "SEV3",
        Sev4 = "SEV4",
        Sev5 = "SEV5",
    }
}

string_enum! {
    pub enum IncidentStatus {
        Investigating = "investigating",
        /// The cause is known.
        Identified = "identified",
        /// Mitigated (e.g. traffic is back on the last known good); watching.
        Monitoring = "monitoring",
        Resolved = "resolved",
    }
}

string_enum! {
    /// The roles of incident command, each held by one person at a time.
    pub enum IncidentRole {
        Commander = "commander",
        Operations = "operations",
        Communications = "communications",
        Scribe = "scribe",
    }
}

impl Sev {
    /// Major incidents freeze the environment while investigated.
    #[must_use]
    pub fn is_major(self) -> bool {
        matches!(self, Sev::Sev1 | Sev::Sev2)
    }

    /// How often a status update is due while the incident is open (`None`: no cadence).
    #[must_use]
    pub fn update_every_ms(self) -> Option<Millis> {
        const MINUTE: Millis = 60_000;
        match self {
            Sev::Sev1 => Some(15 * MINUTE),
            Sev::Sev2 => Some(30 * MINUTE),
            Sev::Sev3 => Some(60 * MINUTE),
            Sev::Sev4 => Some(240 * MINUTE),
            Sev::Sev5 => None,
        }
    }
}

impl IncidentStatus {
    fn rank(self) -> u8 {
        match self {
            IncidentStatus::Investigating => 0,
            IncidentStatus::Identified => 1,
            IncidentStatus::Monitoring => 2,
            IncidentStatus::Resolved => 3,
        }
    }
}

string_enum! {
    /// What an entry of an incident's history records.
    pub enum EntryKind {
        Opened = "opened",
        Status = "status",
        Role = "role",
        Note = "note",
        /// A status update to the people following the incident (resets the cadence).
        Update = "update",
        /// An update was due and not given: the daemon reminded.
        Reminder = "reminder",
        Severity = "severity",
    }
}

/// One thing people (or the daemon, for the incident) did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Entry {
    pub at_ms: Millis,
    pub actor: String,
    #[schema(value_type = String)]
    pub kind: EntryKind,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Incident {
    pub id: String,
    pub title: String,
    #[schema(value_type = String)]
    pub severity: Sev,
    #[schema(value_type = String)]
    pub status: IncidentStatus,
    pub service: String,
    pub env: String,
    pub opened_at_ms: Millis,
    pub opened_by: String,
    /// The rollout and recovery that opened it, for one opened by a recovery.
    pub rollout_id: Option<String>,
    pub recovery_id: Option<String>,
    /// Who holds each role now (the history has every hand-off).
    #[schema(value_type = Object)]
    pub roles: BTreeMap<String, String>,
    /// When each status was reached.
    #[schema(value_type = Object)]
    pub status_at_ms: BTreeMap<String, Millis>,
    pub history: Vec<Entry>,
    /// How often a status update is due (the severity's default, or the config's).
    #[serde(default)]
    pub update_every_ms: Option<Millis>,
    /// The next status update is due then (`None` once resolved, or without a cadence).
    pub update_due_ms: Option<Millis>,
    /// The due time the daemon last reminded about (once per due time).
    pub reminded_for_ms: Option<Millis>,
}

impl Incident {
    /// A new incident, `investigating`, opened at `now` by `actor`.
    #[must_use]
    pub fn open(
        id: String,
        title: String,
        severity: Sev,
        service: &str,
        env: &str,
        actor: &str,
        now: Millis,
    ) -> Incident {
        let opened = format!("{severity} opened: {title}");
        let mut i = Incident {
            id,
            title,
            severity,
            status: IncidentStatus::Investigating,
            service: service.into(),
            env: env.into(),
            opened_at_ms: now,
            opened_by: actor.into(),
            rollout_id: None,
            recovery_id: None,
            roles: BTreeMap::new(),
            status_at_ms: BTreeMap::from([(IncidentStatus::Investigating.as_str().into(), now)]),
            history: vec![],
            update_every_ms: severity.update_every_ms(),
            update_due_ms: severity.update_every_ms().map(|e| now + e),
            reminded_for_ms: None,
        };
        i.log(now, actor, EntryKind::Opened, opened);
        i
    }

    fn log(&mut self, at_ms: Millis, actor: &str, kind: EntryKind, text: String) {
        self.history.push(Entry {
            at_ms,
            actor: actor.into(),
            kind,
            text,
        });
    }

    /// Moves the status forward (never back; `resolved` is final).
    ///
    /// # Errors
    /// A status that is not after the current one.
    pub fn set_status(
        &mut self,
        to: IncidentStatus,
        actor: &str,
        note: &str,
        now: Millis,
    ) -> Result<(), String> {
        if to.rank() <= self.status.rank() {
            return Err(format!(
                "incident {} is {}; its status only moves forward (investigating, identified, monitoring, resolved)",
                self.id, self.status
            ));
        }
        self.status = to;
        self.status_at_ms.insert(to.as_str().into(), now);
        if to == IncidentStatus::Resolved {
            self.update_due_ms = None;
        }
        let text = if note.trim().is_empty() {
            format!("status {to}")
        } else {
            format!("status {to}: {note}")
        };
        self.log(now, actor, EntryKind::Status, text);
        Ok(())
    }

    /// Hands `role` to `person`.
    pub fn assign(&mut self, role: IncidentRole, person: &str, actor: &str, now: Millis) {
        let before = self.roles.insert(role.as_str().into(), person.into());
        let text = match before {
            Some(prev) if prev != person => format!("{role} handed from {prev} to {person}"),
            _ => format!("{role}: {person}"),
        };
        self.log(now, actor, EntryKind::Role, text);
    }

    pub fn note(&mut self, text: &str, actor: &str, now: Millis) {
        self.log(now, actor, EntryKind::Note, text.into());
    }

    /// A status update: the next one is due one cadence later.
    pub fn update(&mut self, text: &str, actor: &str, now: Millis) {
        self.log(now, actor, EntryKind::Update, text.into());
        if self.status != IncidentStatus::Resolved {
            self.update_due_ms = self.update_every_ms.map(|e| now + e);
        }
    }

    /// Status updates every `every_ms` from `now` on (the config's cadence for its severity).
    pub fn set_cadence(&mut self, every_ms: Millis, now: Millis) {
        self.update_every_ms = Some(every_ms);
        if self.status != IncidentStatus::Resolved {
            self.update_due_ms = Some(now + every_ms);
        }
    }

    /// Whether an update is overdue at `now` and not reminded about yet.
    #[must_use]
    pub fn reminder_due(&self, now: Millis) -> Option<Millis> {
        let due = self.update_due_ms?;
        (self.status != IncidentStatus::Resolved && due <= now && self.reminded_for_ms != Some(due))
            .then_some(due)
    }

    pub fn remind(&mut self, due: Millis, now: Millis) {
        self.reminded_for_ms = Some(due);
        self.log(
            now,
            "controller",
            EntryKind::Reminder,
            format!("a status update was due {} s ago", (now - due) / 1000),
        );
    }

    /// Whether it freezes non-critical deployments into its environment now: a major
    /// incident that is not yet mitigated.
    #[must_use]
    pub fn freezes(&self) -> bool {
        self.severity.is_major()
            && matches!(
                self.status,
                IncidentStatus::Investigating | IncidentStatus::Identified
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident() -> Incident {
        Incident::open(
            "inc-1".into(),
            "5xx".into(),
            Sev::Sev2,
            "shop",
            "prod",
            "controller",
            0,
        )
    }

    #[test]
    fn status_moves_forward_only_and_resolving_stops_the_cadence() {
        let mut i = incident();
        assert!(i.freezes());
        assert_eq!(i.update_due_ms, Some(30 * 60_000));
        i.set_status(IncidentStatus::Monitoring, "a", "traffic back", 10)
            .unwrap();
        assert!(!i.freezes());
        assert!(
            i.set_status(IncidentStatus::Identified, "a", "", 11)
                .is_err()
        );
        i.set_status(IncidentStatus::Resolved, "a", "", 12).unwrap();
        assert_eq!(i.update_due_ms, None);
        assert_eq!(i.status_at_ms["monitoring"], 10);
        assert!(i.set_status(IncidentStatus::Resolved, "a", "", 13).is_err());
    }

    #[test]
    fn roles_are_handed_off_with_history_and_reminders_come_once_per_due_time() {
        let mut i = incident();
        i.assign(IncidentRole::Commander, "token:alice", "token:alice", 1);
        i.assign(IncidentRole::Commander, "token:bob", "token:alice", 2);
        assert_eq!(i.roles["commander"], "token:bob");
        assert!(
            i.history
                .iter()
                .any(|e| e.text == "commander handed from token:alice to token:bob")
        );
        let due = i.update_due_ms.unwrap();
        assert_eq!(i.reminder_due(due - 1), None);
        assert_eq!(i.reminder_due(due), Some(due));
        i.remind(due, due + 5);
        assert_eq!(i.reminder_due(due + 10), None);
        i.update("rolled back, watching", "token:bob", due + 20);
        assert_eq!(i.update_due_ms, Some(due + 20 + 30 * 60_000));
    }
}
