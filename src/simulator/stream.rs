//! Stream names: parsing `<symbol>@<kind>` into a [`StreamKind`] and rendering the
//! canonical name back.
//!
//! Runs on: the simulator core (pure functions, no I/O). In: a stream name as a client
//! wrote it in a URL or a SUBSCRIBE request. Out: the symbol and the kind, or why the
//! name is not a Binance spot market stream.

use crate::market::{Interval, Symbol};

/// Every stream kind the simulator serves for one symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamKind {
    Trade,
    AggTrade,
    BookTicker,
    Kline(Interval),
    /// Diff depth: `@depth` (1000 ms) or `@depth@100ms` (`fast`).
    Depth {
        fast: bool,
    },
    /// Partial book depth: `@depth<levels>` or `@depth<levels>@100ms`.
    PartialDepth {
        levels: u8,
        fast: bool,
    },
}

/// Partial depth levels Binance allows.
pub const PARTIAL_DEPTH_LEVELS: [u8; 3] = [5, 10, 20];

impl StreamKind {
    /// Number of distinct kinds per symbol: trade, aggTrade, bookTicker, 16 kline
    /// intervals, 2 diff depth speeds and 3 × 2 partial depths.
    pub const COUNT: usize = 3 + Interval::ALL.len() + 2 + 6;

    /// A dense index in `0..COUNT`, so subscriptions live in a flat table.
    pub fn index(self) -> usize {
        match self {
            StreamKind::Trade => 0,
            StreamKind::AggTrade => 1,
            StreamKind::BookTicker => 2,
            StreamKind::Kline(i) => 3 + i as usize,
            StreamKind::Depth { fast } => 3 + Interval::ALL.len() + usize::from(fast),
            StreamKind::PartialDepth { levels, fast } => {
                let level_index = PARTIAL_DEPTH_LEVELS
                    .iter()
                    .position(|&l| l == levels)
                    .unwrap_or(0);
                3 + Interval::ALL.len() + 2 + level_index * 2 + usize::from(fast)
            }
        }
    }

    /// The inverse of [`StreamKind::index`]; `None` outside `0..COUNT`.
    pub fn from_index(index: usize) -> Option<StreamKind> {
        let intervals = Interval::ALL.len();
        Some(match index {
            0 => StreamKind::Trade,
            1 => StreamKind::AggTrade,
            2 => StreamKind::BookTicker,
            i if i < 3 + intervals => StreamKind::Kline(Interval::ALL[i - 3]),
            i if i < 3 + intervals + 2 => StreamKind::Depth {
                fast: i - 3 - intervals == 1,
            },
            i if i < StreamKind::COUNT => {
                let rest = i - 3 - intervals - 2;
                StreamKind::PartialDepth {
                    levels: PARTIAL_DEPTH_LEVELS[rest / 2],
                    fast: rest % 2 == 1,
                }
            }
            _ => return None,
        })
    }

    /// The part after `@`, as Binance spells it.
    pub fn suffix(self) -> String {
        match self {
            StreamKind::Trade => "trade".to_string(),
            StreamKind::AggTrade => "aggTrade".to_string(),
            StreamKind::BookTicker => "bookTicker".to_string(),
            StreamKind::Kline(i) => format!("kline_{}", i.as_str()),
            StreamKind::Depth { fast: false } => "depth".to_string(),
            StreamKind::Depth { fast: true } => "depth@100ms".to_string(),
            StreamKind::PartialDepth { levels, fast } => {
                format!("depth{levels}{}", if fast { "@100ms" } else { "" })
            }
        }
    }

    fn parse_suffix(text: &str) -> Option<StreamKind> {
        match text {
            "trade" => return Some(StreamKind::Trade),
            "aggTrade" => return Some(StreamKind::AggTrade),
            "bookTicker" => return Some(StreamKind::BookTicker),
            "depth" => return Some(StreamKind::Depth { fast: false }),
            "depth@100ms" => return Some(StreamKind::Depth { fast: true }),
            _ => {}
        }
        if let Some(interval) = text.strip_prefix("kline_") {
            return Interval::parse(interval).ok().map(StreamKind::Kline);
        }
        let rest = text.strip_prefix("depth")?;
        let (levels, fast) = match rest.strip_suffix("@100ms") {
            Some(levels) => (levels, true),
            None => (rest, false),
        };
        let levels: u8 = levels.parse().ok()?;
        PARTIAL_DEPTH_LEVELS
            .contains(&levels)
            .then_some(StreamKind::PartialDepth { levels, fast })
    }
}

/// Why a stream name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamNameError {
    #[error("stream name has no `@`")]
    NoAt,
    #[error("invalid symbol in stream name")]
    BadSymbol,
    #[error("unknown stream type")]
    UnknownKind,
}

/// Splits `btcusdt@kline_1m` into its symbol and kind. The symbol is accepted in either
/// case (and canonicalised to lower case by [`canonical_name`]); the kind is
/// case-sensitive, as on Binance (`aggTrade`, `bookTicker`).
pub fn parse_stream(name: &str) -> Result<(Symbol, StreamKind), StreamNameError> {
    let (symbol, kind) = name.split_once('@').ok_or(StreamNameError::NoAt)?;
    let symbol = Symbol::new(symbol).map_err(|_| StreamNameError::BadSymbol)?;
    let kind = StreamKind::parse_suffix(kind).ok_or(StreamNameError::UnknownKind)?;
    Ok((symbol, kind))
}

/// The canonical name Binance puts in the combined envelope: lower-case symbol.
pub fn canonical_name(symbol: Symbol, kind: StreamKind) -> String {
    format!("{}@{}", symbol.lower(), kind.suffix())
}

/// Checks that a name is a syntactically valid stream name for replay mode, where any
/// symbol is allowed; returns the canonical form.
pub fn canonical_replay_name(name: &str) -> Result<String, StreamNameError> {
    let (symbol, kind) = parse_stream(name)?;
    Ok(canonical_name(symbol, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_round_trips_for_every_kind() {
        for index in 0..StreamKind::COUNT {
            let kind = StreamKind::from_index(index).unwrap();
            assert_eq!(kind.index(), index, "{kind:?}");
            let name = format!("btcusdt@{}", kind.suffix());
            assert_eq!(parse_stream(&name).unwrap().1, kind, "{name}");
        }
        assert_eq!(StreamKind::from_index(StreamKind::COUNT), None);
    }

    #[test]
    fn parses_binance_names() {
        let (s, k) = parse_stream("BTCUSDT@kline_1M").unwrap();
        assert_eq!(s.as_str(), "BTCUSDT");
        assert_eq!(k, StreamKind::Kline(Interval::Mo1));
        assert_eq!(canonical_name(s, k), "btcusdt@kline_1M");
        assert_eq!(
            parse_stream("ethusdt@depth20@100ms").unwrap().1,
            StreamKind::PartialDepth {
                levels: 20,
                fast: true
            }
        );
        assert_eq!(parse_stream("btcusdt"), Err(StreamNameError::NoAt));
        assert_eq!(
            parse_stream("btcusdt@aggtrade"),
            Err(StreamNameError::UnknownKind)
        );
        assert_eq!(
            parse_stream("btcusdt@depth7"),
            Err(StreamNameError::UnknownKind)
        );
        assert_eq!(
            parse_stream("btcusdt@kline_2m"),
            Err(StreamNameError::UnknownKind)
        );
        assert_eq!(
            parse_stream("btc-usdt@trade"),
            Err(StreamNameError::BadSymbol)
        );
    }
}
