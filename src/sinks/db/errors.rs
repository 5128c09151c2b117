//! What a failed write means for the batch: the writer's error classifier.
//!
//! Pure: reads the error's SQLSTATE (and whether there is one) and nothing else. Runs on
//! the writer thread. The writer acts on the class: reconnect and replay, retry later,
//! split the batch to find the rows the server refuses, or hold everything in the spool
//! until an operator mends the database.

use super::DbError;

/// What kind of failure a write met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The connection is gone or the server is going away (no SQLSTATE, class 08,
    /// 57P01..57P03): reconnect with backoff, spool meanwhile, replay.
    Connection,
    /// The statement lost a race or ran out of time (class 40 serialization or
    /// deadlock, 55P03 lock not available, 57014 statement timeout, class 53
    /// insufficient resources, class 58 system error): spool and retry with backoff.
    Transient,
    /// Some rows of the batch are bad (class 22 data exception, 23 integrity
    /// violation): the batch is split until the rows are found; the rest is stored.
    BadRows,
    /// The server refuses the statement whatever the rows (class 42 syntax, permission
    /// or undefined column, and every class not named above): retrying soon fails the
    /// same way, so batches wait in the spool and the retry runs at the slowest pace.
    Refused,
}

impl ErrorClass {
    /// The class of a five-character SQLSTATE. Never panics: a code shorter than its
    /// class, or not ASCII, is [`ErrorClass::Refused`] (no reason to retry it fast).
    pub fn of_sqlstate(code: &str) -> ErrorClass {
        if code.len() != 5 || !code.is_ascii() {
            return ErrorClass::Refused;
        }
        match code {
            "55P03" | "57014" => return ErrorClass::Transient,
            "57P01" | "57P02" | "57P03" => return ErrorClass::Connection,
            _ => {}
        }
        match &code[..2] {
            "08" => ErrorClass::Connection,
            "40" | "53" | "58" => ErrorClass::Transient,
            "22" | "23" => ErrorClass::BadRows,
            _ => ErrorClass::Refused,
        }
    }

    /// The class of a write's error; an error without SQLSTATE (I/O, a closed
    /// connection, a timeout of the socket) is a lost connection.
    pub fn of(e: &DbError) -> ErrorClass {
        match sqlstate(e) {
            Some(code) => ErrorClass::of_sqlstate(code),
            None => ErrorClass::Connection,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Connection => "connection",
            ErrorClass::Transient => "transient",
            ErrorClass::BadRows => "bad_rows",
            ErrorClass::Refused => "refused",
        }
    }
}

/// The server's SQLSTATE for `e`, if the server answered with an error.
pub fn sqlstate(e: &DbError) -> Option<&str> {
    match e {
        DbError::Postgres(pg) => pg.as_db_error().map(|db| db.code().code()),
        _ => None,
    }
}

/// The server's message for `e` (without the client's prefix), or the error itself.
pub fn reason(e: &DbError) -> String {
    match e {
        DbError::Postgres(pg) => match pg.as_db_error() {
            Some(db) => match db.detail() {
                Some(detail) => format!("{}: {detail}", db.message()),
                None => db.message().to_string(),
            },
            None => pg.to_string(),
        },
        other => other.to_string(),
    }
}

/// `e` as the status and the log show it: with the server's SQLSTATE and message when
/// it answered (the client's own text is only "db error").
pub fn describe(e: &DbError) -> String {
    match sqlstate(e) {
        Some(code) => format!("database error {code}: {}", reason(e)),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorClass::{self, *};

    #[test]
    fn sqlstates_fall_in_their_classes() {
        let table: &[(&str, ErrorClass)] = &[
            ("08000", Connection),
            ("08006", Connection),
            ("08P01", Connection),
            ("57P01", Connection),
            ("57P02", Connection),
            ("57P03", Connection),
            ("40001", Transient),
            ("40P01", Transient),
            ("55P03", Transient),
            ("57014", Transient),
            ("53300", Transient),
            ("53100", Transient),
            ("58030", Transient),
            ("22003", BadRows),
            ("22P02", BadRows),
            ("23505", BadRows),
            ("23514", BadRows),
            ("23502", BadRows),
            ("42501", Refused),
            ("42703", Refused),
            ("42P01", Refused),
            ("42601", Refused),
            ("55000", Refused),
            ("57000", Refused),
            ("XX000", Refused),
        ];
        for (code, class) in table {
            assert_eq!(ErrorClass::of_sqlstate(code), *class, "{code}");
        }
    }

    #[test]
    fn short_or_odd_sqlstates_do_not_panic() {
        for code in [
            "", "2", "23", "235", "2351", "235140", "é", "2é", "2é45", "é2345", "\u{0}",
        ] {
            assert_eq!(ErrorClass::of_sqlstate(code), Refused, "{code:?}");
        }
    }

    #[test]
    fn an_error_without_sqlstate_is_a_lost_connection() {
        let e = super::DbError::Migrate("x".into());
        assert_eq!(ErrorClass::of(&e), Connection);
        assert_eq!(super::sqlstate(&e), None);
    }
}
