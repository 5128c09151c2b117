//! Unknown keys of a configuration file: the error names the key, the nearest known key
//! when one is close enough to be a typo, and every key allowed where it stands.

use super::fields::Field;
use super::ConfigError;

/// The error for `path` (a dotted key the file names), where `allowed` are the keys its
/// table holds. The hint is the closest of `allowed` by edit distance (case ignored) when
/// it is within a third of the key's length; else the setting elsewhere whose key or
/// environment variable the key spells, e.g. `batch_size` written under `[feed]`.
pub(super) fn unknown_key(path: &str, file: &str, allowed: &[&str]) -> ConfigError {
    let (table, leaf) = path.rsplit_once('.').unwrap_or(("", path));
    let hint = nearest(leaf, allowed)
        .map(|key| format!("`{key}`"))
        .or_else(|| elsewhere(table, leaf))
        .map(|place| format!(" (did you mean {place}?)"))
        .unwrap_or_default();
    ConfigError::UnknownKey {
        key: path.to_owned(),
        file: file.to_owned(),
        hint,
        allowed: allowed.join(", "),
    }
}

/// The candidate closest to `key` when it is close: at most a third of the key's
/// length in edits (at least one), case ignored. Also the command line's tip for a
/// mistyped command.
pub fn nearest<'a>(key: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let key = key.to_ascii_lowercase();
    let limit = (key.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (edit_distance(&key, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// A setting of another table whose key is `leaf`, or whose environment variable it
/// names (`BATCH_SIZE = 5`), as "`key` at the top level" or "`key` in [table]".
fn elsewhere(table: &str, leaf: &str) -> Option<String> {
    let field = Field::ALL.iter().find(|f| {
        (f.leaf() == leaf && f.table() != table)
            || f.env_name().is_some_and(|e| e.eq_ignore_ascii_case(leaf))
    })?;
    Some(match field.table() {
        "" => format!("`{}` at the top level, before any [table]", field.leaf()),
        t => format!("`{}` in [{t}]", field.leaf()),
    })
}

/// Levenshtein distance: the fewest single-character insertions, deletions and
/// substitutions that turn `a` into `b`.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("batchsize", "batch_size"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(
            edit_distance("stream_per_connection", "max_streams_per_connection"),
            5
        );
    }

    #[test]
    fn only_close_keys_are_suggested() {
        let keys = ["batch_size", "batch_timeout_s", "symbols"];
        assert_eq!(nearest("batchsize", &keys), Some("batch_size"));
        assert_eq!(nearest("BATCH_SIZE", &keys), Some("batch_size"));
        assert_eq!(nearest("symbol", &keys), Some("symbols"));
        assert_eq!(nearest("colour", &keys), None);
        assert_eq!(nearest("xy", &["ab"]), None);
    }

    fn message(path: &str, allowed: &[&str]) -> String {
        unknown_key(path, "c.toml", allowed).to_string()
    }

    #[test]
    fn the_error_names_the_key_the_fix_and_the_allowed_keys() {
        let feed = ["max_streams_per_connection", "max_outgoing_msgs_per_s"];
        assert_eq!(
            message("feed.stream_per_connection", &feed),
            "unknown key feed.stream_per_connection in c.toml (did you mean \
             `max_streams_per_connection`?); allowed here: max_streams_per_connection, \
             max_outgoing_msgs_per_s"
        );
        // A key of another table, or an environment variable, points at its place.
        assert!(message("feed.batch_size", &feed)
            .contains("(did you mean `batch_size` at the top level, before any [table]?)"));
        assert!(message("DATABASE_SPOOL_DIR", &["symbols"])
            .contains("(did you mean `spool_dir` in [database]?)"));
        assert!(message("feed.colour", &feed).starts_with("unknown key feed.colour in c.toml;"));
    }
}
