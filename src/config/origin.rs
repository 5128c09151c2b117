//! Where each effective value came from, for `alphapulse config print --origin`: the
//! built-in default, the configuration file, the `.env` file or the environment.

use std::collections::HashSet;

use super::fields::Field;
use super::FileKeys;

/// The source of every setting of one loaded configuration (see
/// [`super::load_with_origins`]).
#[derive(Debug, Default)]
pub struct Origins {
    /// The configuration file, as named on the command line.
    pub(super) file: Option<String>,
    /// What the file set.
    pub(super) file_keys: FileKeys,
    /// The settings the environment (`.env` included) set.
    pub(super) from_env: HashSet<Field>,
    /// The variables whose value came from `.env`, not the process environment.
    pub(super) from_dotenv: HashSet<String>,
}

impl Origins {
    /// `default`, `from file (c.toml)`, `from .env (BATCH_SIZE)` or
    /// `from env (BATCH_SIZE)`.
    pub(super) fn of_field(&self, field: Field) -> String {
        match field.env_name() {
            Some(var) if self.from_env.contains(&field) => {
                let source = if self.from_dotenv.contains(var) {
                    ".env"
                } else {
                    "env"
                };
                format!("from {source} ({var})")
            }
            _ if self.file_keys.fields.contains(&field) => self.file_note(),
            _ => "default".to_owned(),
        }
    }

    /// The same for a `[signals]` key by its dotted name: a per-timeframe key the file
    /// does not set holds the `[signals]` value, so it has that key's origin.
    pub(super) fn of_signal(&self, name: &str) -> String {
        let set = |n: &str| self.file_keys.signals.contains(n);
        let inherited = name
            .strip_prefix("signals.timeframes.")
            .and_then(|rest| rest.split_once('.'))
            .map(|(_, key)| format!("signals.{key}"));
        if set(name) || inherited.is_some_and(|n| set(&n)) {
            self.file_note()
        } else {
            "default".to_owned()
        }
    }

    fn file_note(&self) -> String {
        let file = self.file.as_deref().unwrap_or("the configuration");
        // A comment ends at the line's end: a path cannot break out of it.
        format!("from file ({})", file.replace(['\n', '\r'], " "))
    }
}
